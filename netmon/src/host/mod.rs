//! What the kernel already knows about this host: interfaces and their counters.
pub mod interfaces;
pub mod netlink;
pub mod netns;
