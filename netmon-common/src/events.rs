//! Single counters of the programs' own failures, and the ring of namespace teardowns.

/// Bytes of the ring that tells the agent which namespaces were torn down: about 500 a poll
/// (a record of 4 bytes takes 16 with its header).
pub const GONE_NAMESPACE_RING_BYTES: u32 = 8 * 1024;

/// The maps: the per-CPU array of counters, and the ring of teardown notices.
pub const COUNTERS: &str = "EVENTS";
pub const GONE_NAMESPACES: &str = "GONE_NAMESPACES";
pub const MAPS: [&str; 2] = [COUNTERS, GONE_NAMESPACES];

/// Indices of the `EVENTS` per-CPU array: single counters of the programs' own failures.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An interface entry could not be stored: the traffic map is full.
    TrafficMapFull = 0,
    /// A drop entry could not be stored: the drop map is full.
    DropMapFull = 1,
    /// A handshake histogram could not be stored: the handshake table is full.
    HandshakeMapFull = 2,
    /// A kernel read failed (a pointer the program followed was not readable).
    ReadFailed = 3,
    /// A transition or TCP event could not be stored: the transition map is full.
    TransitionMapFull = 4,
    /// A process's socket I/O could not be stored: the process table is full.
    ProcessMapFull = 5,
    /// A namespace's teardown could not be told: the ring of them is full.
    NamespaceNoticeLost = 6,
}

/// Entries of the `EVENTS` array.
pub const EVENT_SLOTS: u32 = 7;
