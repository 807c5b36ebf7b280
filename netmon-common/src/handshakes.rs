//! The handshake table: histograms of TCP handshake times by (namespace, open kind).
use crate::slots::{CLAIMED, CountsKept, SlotKey, SlotTableSpec, SlotTag};

/// Capacity of the handshake histogram table: (namespace, open kind).
pub const MAX_HANDSHAKE_KEYS: u32 = 1024;

/// The table's maps: tags, shared counts, and the claims of the bounded-walk build.
pub const TAGS: &str = "HANDSHAKE_TAGS";
pub const COUNTS: &str = "HANDSHAKES";
pub const CLAIMS: &str = "HANDSHAKE_CLAIMS";
pub const TABLE: SlotTableSpec = SlotTableSpec {
    number: 3,
    label: "handshakes",
    slots: MAX_HANDSHAKE_KEYS,
    tags: TAGS,
    counts: COUNTS,
    claims: CLAIMS,
    kept: CountsKept::Shared,
    maps: &[TAGS, COUNTS, CLAIMS],
};

/// Handshake histogram buckets: bucket `i` holds round trips in `[2^i, 2^(i+1))`
/// microseconds (bucket 0 also those under 1 us), the last bucket everything longer.
pub const HANDSHAKE_BUCKETS: usize = 32;
/// Active opens: `SYN_SENT` to `ESTABLISHED`.
pub const HANDSHAKE_ACTIVE: u32 = 0;
/// Passive opens: `SYN_RECV` to `ESTABLISHED`.
pub const HANDSHAKE_PASSIVE: u32 = 1;

/// Key of the handshake histogram map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandshakeKey {
    pub netns: u32,
    /// [`HANDSHAKE_ACTIVE`] or [`HANDSHAKE_PASSIVE`].
    pub open: u32,
}

impl HandshakeKey {
    /// The key as a slot identity.
    #[inline(always)]
    pub fn slot_id(&self) -> u64 {
        ((self.netns as u64) << 32) | CLAIMED | (self.open as u64 & 0xffff)
    }
}

/// Value of the handshake histogram map (shared by all CPUs, added to atomically).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeHistogram {
    pub buckets: [u64; HANDSHAKE_BUCKETS],
    /// Sum of all durations, in nanoseconds.
    pub sum_ns: u64,
}

impl Default for HandshakeHistogram {
    fn default() -> Self {
        Self {
            buckets: [0; HANDSHAKE_BUCKETS],
            sum_ns: 0,
        }
    }
}

/// A handshake slot counts the histogram its `id` names.
impl SlotKey for HandshakeKey {
    const TABLE: &'static SlotTableSpec = &TABLE;
    type Value = HandshakeHistogram;
    fn from_tag(tag: &SlotTag) -> Option<Self> {
        Some(Self {
            netns: (tag.id >> 32) as u32,
            open: (tag.id & 0xffff) as u32,
        })
    }
}

// SAFETY: `#[repr(C)]`, only integers, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for HandshakeKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for HandshakeHistogram {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_slots_round_trip() {
        let handshake = HandshakeKey {
            netns: 7,
            open: HANDSHAKE_PASSIVE,
        };
        let tag = SlotTag {
            id: handshake.slot_id(),
            ..SlotTag::default()
        };
        assert_eq!(HandshakeKey::from_tag(&tag), Some(handshake));
    }
}
