//! What the kernel already knows about this host: interfaces and their counters, sockets,
//! processes and cgroups.
pub mod addresses;
pub mod cgroups;
pub mod interfaces;
pub mod kallsyms;
pub mod netlink;
pub mod netns;
pub mod peer_sockets;
pub mod process_details;
pub mod socket_owners;
pub mod sockets;
