//! The socket I/O table: bytes and calls by (process, cgroup, protocol, direction), counted
//! by the socket hooks; and the names of the processes that claimed its slots.
use crate::slots::{CLAIMED, CountsKept, SlotTableSpec, SlotTag};

/// Capacity of the socket I/O table: (process, cgroup, protocol, direction). The agent frees
/// the slots of processes that have exited at every poll.
pub const MAX_PROCESS_KEYS: u32 = 1024;

/// The table's maps: tags, per-CPU regions of counts, the claims of the bounded-walk build,
/// the processes' names by slot, and the socket hooks' memos (`socket_memo`).
pub const TAGS: &str = "PROCESS_TAGS";
pub const COUNTS: &str = "PROCESS_IO";
pub const CLAIMS: &str = "PROCESS_CLAIMS";
pub const NAMES: &str = "PROCESS_NAMES";
pub const TABLE: SlotTableSpec = SlotTableSpec {
    number: 4,
    label: "processes",
    slots: MAX_PROCESS_KEYS,
    tags: TAGS,
    counts: COUNTS,
    claims: CLAIMS,
    kept: CountsKept::CpuRegions,
    maps: &[
        TAGS,
        COUNTS,
        CLAIMS,
        NAMES,
        crate::socket_memo::SOCKET_MEMOS,
    ],
};

/// Directions of socket I/O: data a process sent, and data it received.
pub const IO_TX: u8 = 0;
pub const IO_RX: u8 = 1;
/// Protocols of socket I/O, by the socket's IP protocol.
pub const IO_TCP: u8 = 0;
pub const IO_UDP: u8 = 1;
pub const IO_OTHER: u8 = 2;

/// What a slot of the socket I/O table counts: one process's calls that moved data in one
/// direction over sockets of one protocol. With the process's cgroup v2 id (the slot's
/// `extra`) and its start time (in `extra2`), it is the slot's identity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessIoKey {
    /// The process (thread group) id.
    pub tgid: u32,
    /// [`IO_TCP`], [`IO_UDP`] or [`IO_OTHER`].
    pub protocol: u8,
    /// [`IO_TX`] or [`IO_RX`].
    pub direction: u8,
}

impl ProcessIoKey {
    /// The key as a slot identity.
    #[inline(always)]
    pub fn slot_id(&self) -> u64 {
        ((self.tgid as u64) << 32) | CLAIMED | ((self.protocol as u64) << 8) | self.direction as u64
    }

    /// The third word of a slot: the process's start (`start_boottime` of its leader, in ns
    /// since boot, as `/proc/<pid>/stat` counts it in clock ticks), so that a process id the
    /// kernel gives again never adds to the counts of the process that had it before.
    #[inline(always)]
    pub fn extra2(start_boottime_ns: u64) -> u64 {
        start_boottime_ns | PROCESS_CLAIMED
    }
}

/// Set in the third word of a process slot so that it is never 0 (a claim is complete once
/// it is written); boot times in ns stay far below it.
const PROCESS_CLAIMED: u64 = 1 << 63;

/// Value of the socket I/O table (one per CPU and slot): bytes moved (the calls' return
/// values) and calls that moved any.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketIo {
    pub bytes: u64,
    pub calls: u64,
}

/// claims a slot.
pub type ProcessName = [u8; 16];

/// What a complete slot of the socket I/O table counts, read from its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessSlot {
    pub key: ProcessIoKey,
    /// The process's cgroup v2 id (the tag's `extra`).
    pub cgroup_id: u64,
    /// When the process started, in ns since boot (the tag's `extra2`, see
    /// [`ProcessIoKey::extra2`]).
    pub start_boottime_ns: u64,
    /// The inode of the network namespace the process was in at the claim (the tag's `meta`).
    pub netns: u32,
}

impl ProcessSlot {
    pub fn from_tag(tag: &SlotTag) -> Option<Self> {
        let id = tag.id;
        tag.is_complete().then_some(Self {
            key: ProcessIoKey {
                tgid: (id >> 32) as u32,
                protocol: (id >> 8) as u8,
                direction: id as u8,
            },
            cgroup_id: tag.extra,
            start_boottime_ns: tag.extra2 & !PROCESS_CLAIMED,
            netns: tag.meta as u32,
        })
    }
}

// SAFETY: `#[repr(C)]`, only integers, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for SocketIo {}
