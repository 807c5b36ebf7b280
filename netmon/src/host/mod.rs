//! What the kernel already knows about this host: interfaces and their counters.
pub mod addresses;
pub mod interfaces;
pub mod kallsyms;
pub mod netlink;
pub mod netns;
pub mod processes;
pub mod sockets;
