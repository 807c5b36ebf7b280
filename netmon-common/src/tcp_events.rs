//! The TCP event table: retransmits, and resets sent and received, by namespace.
use crate::slots::{CLAIMED, CountsKept, SlotKey, SlotTableSpec, SlotTag};

/// Capacity of the TCP event table: (namespace, event), three slots a namespace.
pub const MAX_TCP_EVENT_KEYS: u32 = 1024;

/// The table's maps: tags, per-CPU counts, and the claims of the bounded-walk build.
pub const TAGS: &str = "TCP_EVENT_TAGS";
pub const COUNTS: &str = "TCP_EVENTS";
pub const CLAIMS: &str = "TCP_EVENT_CLAIMS";
pub const TABLE: SlotTableSpec = SlotTableSpec {
    number: 5,
    label: "tcp_events",
    slots: MAX_TCP_EVENT_KEYS,
    tags: TAGS,
    counts: COUNTS,
    claims: CLAIMS,
    kept: CountsKept::PerCpu,
    maps: &[TAGS, COUNTS, CLAIMS],
};

/// What the TCP event hooks count.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TcpEvent {
    Retransmit = 1,
    ResetSent = 2,
    ResetReceived = 3,
}

impl TcpEvent {
    pub const ALL: [TcpEvent; 3] = [Self::Retransmit, Self::ResetSent, Self::ResetReceived];
}

/// What a TCP event slot counts: one event in one namespace. With the namespace's cookie
/// (the slot's `extra`) it is the slot's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TcpEventKey {
    /// Namespace inode of the socket; 0 when it could not be read.
    pub netns: u32,
    pub event: TcpEvent,
}

impl TcpEventKey {
    /// The key as a slot identity.
    #[inline(always)]
    pub fn slot_id(&self) -> u64 {
        ((self.netns as u64) << 32) | CLAIMED | self.event as u64
    }
}

/// A TCP event slot counts the event its `id` names.
impl SlotKey for TcpEventKey {
    const TABLE: &'static SlotTableSpec = &TABLE;
    type Value = u64;

    fn from_tag(tag: &SlotTag) -> Option<Self> {
        let event = TcpEvent::ALL
            .into_iter()
            .find(|event| *event as u8 == tag.id as u8)?;
        Some(Self {
            netns: (tag.id >> 32) as u32,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_event_slots_round_trip() {
        for event in TcpEvent::ALL {
            let key = TcpEventKey {
                netns: 4_026_532_000,
                event,
            };
            let tag = SlotTag {
                id: key.slot_id(),
                ..SlotTag::default()
            };
            assert_eq!(TcpEventKey::from_tag(&tag), Some(key));
        }
    }
}
