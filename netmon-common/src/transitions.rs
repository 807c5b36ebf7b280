//! The TCP transition table: state changes by (namespace, family, from, to).
use crate::slots::{CLAIMED, CountsKept, SlotKey, SlotTableSpec, SlotTag};

/// Capacity of the TCP transition table: (namespace, family, from, to).
pub const MAX_TRANSITION_KEYS: u32 = 4096;

/// The table's maps: tags, counts, and the claims of the bounded-walk build.
pub const TAGS: &str = "TRANSITION_TAGS";
pub const COUNTS: &str = "TCP_TRANSITIONS";
pub const CLAIMS: &str = "TRANSITION_CLAIMS";
pub const TABLE: SlotTableSpec = SlotTableSpec {
    number: 2,
    label: "transitions",
    slots: MAX_TRANSITION_KEYS,
    tags: TAGS,
    counts: COUNTS,
    claims: CLAIMS,
    kept: CountsKept::PerCpu,
    maps: &[TAGS, COUNTS, CLAIMS],
};

/// Key of the TCP transition map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransitionKey {
    /// Namespace inode of the socket; 0 when it could not be read.
    pub netns: u32,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u8,
    /// Kernel TCP state numbers (`TCP_ESTABLISHED` = 1 ...).
    pub old_state: u8,
    pub new_state: u8,
    pub _pad: u8,
}

impl TransitionKey {
    /// The key as a slot identity.
    #[inline(always)]
    pub fn slot_id(&self) -> u64 {
        ((self.netns as u64) << 32)
            | CLAIMED
            | ((self.family as u64) << 16)
            | ((self.old_state as u64) << 8)
            | self.new_state as u64
    }

    fn from_slot_id(id: u64) -> Self {
        Self {
            netns: (id >> 32) as u32,
            family: (id >> 16) as u8,
            old_state: (id >> 8) as u8,
            new_state: id as u8,
            _pad: 0,
        }
    }
}

/// A transition slot counts the transition its `id` names.
impl SlotKey for TransitionKey {
    const TABLE: &'static SlotTableSpec = &TABLE;
    type Value = u64;

    fn from_tag(tag: &SlotTag) -> Option<Self> {
        Some(Self::from_slot_id(tag.id))
    }
}

// SAFETY: `#[repr(C)]`, only integers, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for TransitionKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_slots_round_trip_and_are_never_free() {
        let transition = TransitionKey {
            netns: 4_026_532_000,
            family: 10,
            old_state: 2,
            new_state: 1,
            _pad: 0,
        };
        let tag = SlotTag {
            id: transition.slot_id(),
            ..SlotTag::default()
        };
        assert_eq!(TransitionKey::from_tag(&tag), Some(transition));
        assert_ne!(TransitionKey::default().slot_id(), 0);
    }
}
