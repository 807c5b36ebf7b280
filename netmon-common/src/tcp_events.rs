//! TCP events (retransmits, resets sent and received) by namespace. They are counted in the
//! transition table's slots, under identities no transition has (address family 0), so that
//! the rare events cost no table of their own.
use crate::slots::{CLAIMED, SlotKey, SlotTag};

/// The `family` byte of a transition slot's identity that marks a TCP event (no address
/// family is 0).
pub(crate) const TCP_EVENT_FAMILY: u8 = 0;

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

/// What a TCP event slot counts: one event in one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TcpEventKey {
    /// Namespace inode of the socket; 0 when it could not be read.
    pub netns: u32,
    pub event: TcpEvent,
}

impl TcpEventKey {
    /// The key as a slot identity: a transition identity with family [`TCP_EVENT_FAMILY`]
    /// and the event where a transition has its old state.
    #[inline(always)]
    pub fn slot_id(&self) -> u64 {
        ((self.netns as u64) << 32)
            | CLAIMED
            | ((TCP_EVENT_FAMILY as u64) << 16)
            | ((self.event as u64) << 8)
    }
}

/// A TCP event slot: the transition table's slots whose family is [`TCP_EVENT_FAMILY`].
impl SlotKey for TcpEventKey {
    fn from_tag(tag: &SlotTag) -> Option<Self> {
        let id = tag.id;
        if (id >> 16) as u8 != TCP_EVENT_FAMILY {
            return None;
        }
        let event = TcpEvent::ALL
            .into_iter()
            .find(|event| *event as u8 == (id >> 8) as u8)?;
        Some(Self {
            netns: (id >> 32) as u32,
            event,
        })
    }
}
