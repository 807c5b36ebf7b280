//! The agent's configuration: embedded defaults, a TOML file, and command-line overrides.
//!
//! The file's keys are flat (`file.rs` reads them); here they are grouped by what a reload
//! may change. `server` and `probes` only a restart applies (`restart.rs`); the other groups
//! a reload puts in force at the next poll. `explain.rs` says what is in force, `validate.rs`
//! refuses what cannot work, `source.rs` adds the command line's overrides, and
//! `poll_settings.rs` is what the poll takes of it.
use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::{
    model::peer_names::PeerFolding,
    probes::{ProbeSettings, SampleBudget},
};

mod diagnosis;
mod explain;
mod file;
mod poll_settings;
mod restart;
mod source;
mod validate;

pub use diagnosis::{DiagnosisSettings, ExpectedPort, Thresholds};
pub use file::{
    DEFAULT_HISTORY_LENGTH, DEFAULT_LISTEN, DEFAULT_POLL_INTERVAL, DEFAULT_RATE_WINDOW,
    parse_duration,
};
pub use poll_settings::{HostSettings, InterfaceFilter};
pub use source::{ConfigSource, Overrides};

/// The configuration in force, grouped by what a reload may change.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where and how the HTTP server answers. Only a restart applies it.
    pub server: ServerSettings,
    /// Which kernel programs are loaded and how they attach. Only a restart applies it.
    pub probes: ProbeSettings,
    /// How often the poll runs, and over what the rates and the diagnosis look.
    pub poll: PollSettings,
    /// Which interfaces are reported, and the capacities of links that report none.
    pub interfaces: InterfaceSettings,
    /// How many drops are sampled, and how many samples are kept.
    pub samples: DropSamples,
    /// Socket I/O by process: how many processes get series of their own.
    pub processes: Processes,
    /// TCP peers: how many get series of their own, and what they are called.
    pub peers: PeerFolding,
    /// What the diagnosis reports.
    pub diagnosis: DiagnosisSettings,
}

impl Default for Config {
    /// What an empty file gives.
    fn default() -> Self {
        file::ConfigFile::default().into()
    }
}

/// The HTTP server's socket and its TLS and basic auth.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// The exporter-toolkit web-config.yml file, if any.
    pub web_config: Option<PathBuf>,
}

/// The poll's pace and what is kept of it.
#[derive(Clone, Debug, PartialEq)]
pub struct PollSettings {
    /// Time between two polls.
    pub interval: Duration,
    /// Snapshots kept in the History.
    pub history_length: usize,
    /// Window over which rates, aggregates and the diagnosis are computed.
    pub rate_window: Duration,
}

/// The interfaces the operator wants reported, and what the kernel does not know of them.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceSettings {
    pub filter: InterfaceFilter,
    /// Capacity in Mbit/s per interface name.
    pub link_capacity_mbps: BTreeMap<String, u64>,
}

/// Socket I/O by process (`/api/v1/processes`, `netmon_process_network_*`); the file's
/// `[processes]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Processes {
    /// Processes with series of their own, the busiest; the rest are summed in
    /// `process="other"`.
    pub top: usize,
    /// Whether `/api/v1/processes` shows command lines (off by default: arguments can carry
    /// secrets).
    pub command_line: bool,
}

impl Default for Processes {
    fn default() -> Self {
        Self {
            top: 20,
            command_line: false,
        }
    }
}

/// Samples of dropped packets (`/api/v1/drops/recent`); the file's `[drop_samples]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropSamples {
    /// Samples each CPU may send a second, on average; 0 samples nothing (drops are then
    /// all counted as suppressed).
    pub per_cpu_rate: f64,
    /// Samples each CPU may send at once after a quiet time.
    pub per_cpu_burst: u64,
    /// Samples kept, and aggregates of them by (reason, location, flow).
    pub keep: usize,
}

impl Default for DropSamples {
    fn default() -> Self {
        Self {
            per_cpu_rate: 100.0,
            per_cpu_burst: 200,
            keep: 256,
        }
    }
}

impl DropSamples {
    /// What the kernel programs may send: the poll refills each CPU's budget with it.
    pub fn budget(&self) -> SampleBudget {
        SampleBudget {
            rate: self.per_cpu_rate,
            burst: self.per_cpu_burst,
        }
    }
}

#[cfg(test)]
mod tests;
