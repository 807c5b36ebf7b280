//! Single counters of the programs' own failures, and the ring of namespace teardowns.

/// Bytes of the ring that tells the agent which namespaces were torn down: about 500 a poll
/// (a record of 4 bytes takes 16 with its header).
pub const GONE_NAMESPACE_RING_BYTES: u32 = 8 * 1024;

/// The maps: the per-CPU array of counters, and the ring of teardown notices.
pub const COUNTERS: &str = "EVENTS";
pub const GONE_NAMESPACES: &str = "GONE_NAMESPACES";
pub const MAPS: [&str; 2] = [COUNTERS, GONE_NAMESPACES];

/// Indices of the `EVENTS` per-CPU array: single counters of the programs' own failures.
/// After them, one counter for each slot table ([`map_full`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A kernel read failed (a pointer the program followed was not readable).
    ReadFailed = 0,
    /// A namespace's teardown could not be told: the ring of them is full.
    NamespaceNoticeLost = 1,
}

/// The index of the counter of what slot table `number` could not store: it had no free
/// slot for a new identity.
pub const fn map_full(number: u32) -> u32 {
    2 + number
}

/// Entries of the `EVENTS` array.
pub const EVENT_SLOTS: u32 = map_full(crate::SLOT_TABLES.len() as u32);
