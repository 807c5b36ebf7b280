//! Helpers for netmon's privileged end-to-end tests: network namespaces and veth pairs made by
//! the test itself, the real agent binary, and the kernel's own counters to compare with.
//! Traffic only ever goes to loopback or between the test's own namespaces.
//!
//! One concern a module; the items are re-exported here so that tests name them all from the
//! crate's root.
mod agent;
mod cgroup;
mod config_file;
mod http;
mod machine;
mod metrics;
mod netns;
mod pki;
mod programs;
mod tcp_info;
mod veth;

pub use agent::{Agent, AgentBuilder, netmon_bin, probe_status};
pub use cgroup::Cgroup;
pub use config_file::ConfigFile;
pub use http::{Response, http_get, parse_response, request};
pub use machine::{free_port, require_root, sh, status_mib};
pub use metrics::Metrics;
pub use netns::{LinkStats, Netns, spawn_python};
pub use pki::Pki;
pub use programs::{loaded_netmon_programs, wait_for_unload};
pub use tcp_info::{closed_info, tcp_info};
pub use veth::{LinkedNamespaces, Veth, send_udp};
