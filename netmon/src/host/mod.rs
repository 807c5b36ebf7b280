//! What the kernel already knows about this host: interfaces and their counters, sockets,
//! processes and cgroups.
pub mod addresses;
pub mod cgroups;
pub mod conntrack;
pub mod interfaces;
pub mod kallsyms;
pub mod netlink;
pub mod netns;
pub mod netstat;
pub mod peer_sockets;
pub mod pressure;
pub mod process_details;
pub mod qdiscs;
pub mod socket_owners;
pub mod sockets;
pub mod sockstat;
pub mod softnet;
