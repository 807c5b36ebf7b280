//! The maps the programs count in, and the tables built from them.
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use netmon_common::{
    drops,
    events::GONE_NAMESPACE_RING_BYTES,
    handshakes::{self, HandshakeHistogram},
    iterators::TcpSocketTally,
    peers::{self, MAX_RETRIED_SYNS, PeerCounts, RetriedSyn, WalkMemo},
    processes::{self, MAX_PROCESS_KEYS, ProcessName, SocketIo},
    samples::{DROP_SAMPLE_RING_BYTES, SAMPLE_BUDGET_SLOTS, SampleTally},
    slots::SlotTag,
    socket_memo::{SOCKET_MEMOS_PER_CPU, SocketMemo},
    tcp_events,
    traffic::{self, InterfaceTraffic},
    transitions,
};

use crate::slots::{CpuRegions, Slots, Table};

/// Declares each slot table's tags (memory-mapped by the agent, which reads them without a
/// system call a slot) and, in the bounded-walk build, its claims (preallocated, one entry a
/// slot, so never full); and the bounded walk's lookup of both by table number.
macro_rules! slot_tables {
    ($($table:path => $tags:ident, $claims:ident;)*) => {
        $(
            #[map]
            pub static $tags: Array<SlotTag> = Array::with_max_entries($table.slots, BPF_F_MMAPABLE);
            #[cfg(feature = "bounded-walk")]
            #[map]
            pub static $claims: HashMap<u32, u32> = HashMap::with_max_entries($table.slots, 0);
        )*

        /// The tags and claims of the table numbered `number`.
        #[cfg(feature = "bounded-walk")]
        #[inline(always)]
        pub fn walked_table(
            number: u64,
        ) -> Option<(&'static Array<SlotTag>, &'static HashMap<u32, u32>)> {
            $(
                if number == u64::from($table.number) {
                    return Some((&$tags, &$claims));
                }
            )*
            None
        }
    };
}

slot_tables! {
    traffic::TABLE => TRAFFIC_TAGS, TRAFFIC_CLAIMS;
    drops::TABLE => DROP_TAGS, DROP_CLAIMS;
    transitions::TABLE => TRANSITION_TAGS, TRANSITION_CLAIMS;
    handshakes::TABLE => HANDSHAKE_TAGS, HANDSHAKE_CLAIMS;
    processes::TABLE => PROCESS_TAGS, PROCESS_CLAIMS;
    tcp_events::TABLE => TCP_EVENT_TAGS, TCP_EVENT_CLAIMS;
    peers::TABLE => PEER_TAGS, PEER_CLAIMS;
}

#[map]
pub static TRAFFIC: PerCpuArray<InterfaceTraffic> =
    PerCpuArray::with_max_entries(traffic::TABLE.slots, 0);

#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drops::TABLE.slots, 0);

#[map]
pub static TCP_TRANSITIONS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(transitions::TABLE.slots, 0);

#[map]
pub static TCP_EVENTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(tcp_events::TABLE.slots, 0);

/// Shared by all CPUs and added to atomically: a handshake completes once per connection, and
/// a copy per CPU of every histogram would cost more memory than the counts are worth.
#[map]
pub static HANDSHAKES: Array<HandshakeHistogram> =
    Array::with_max_entries(handshakes::TABLE.slots, 0);

/// Shared by all CPUs and added to atomically, as the handshakes: once per connection.
#[map]
pub static PEERS: Array<PeerCounts> = Array::with_max_entries(peers::TABLE.slots, 0);
/// The socket iterator's last slot of each role, client and server.
#[map]
pub static PEER_WALK_MEMO: Array<WalkMemo> = Array::with_max_entries(2, 0);
/// When the first SYN of each connect whose SYN was retried left, in the socket's clock
/// (microseconds).
#[map]
pub static RETRIED_SYNS: HashMap<RetriedSyn, u64> = HashMap::with_max_entries(MAX_RETRIED_SYNS, 0);

/// A region of [`MAX_PROCESS_KEYS`] counts for each CPU (see `slots::CpuRegions`), which the
/// agent sizes, maps and reads without a system call.
#[map]
pub static PROCESS_IO: Array<SocketIo> = Array::with_max_entries(MAX_PROCESS_KEYS, BPF_F_MMAPABLE);
/// The socket hooks' memos (see `netmon-common`), two for each CPU: the agent sets the size.
/// Mapped by the agent, which reads their counts and advances their epochs; a mapped array's
/// values start on a page, so that each memo's lines are its own.
#[map]
pub static SOCKET_MEMOS: Array<SocketMemo> =
    Array::with_max_entries(SOCKET_MEMOS_PER_CPU, BPF_F_MMAPABLE);
/// The name of each slot's process, written when it claims the slot: a process that has
/// exited by the next poll is still named.
#[map]
pub static PROCESS_NAMES: Array<ProcessName> = Array::with_max_entries(MAX_PROCESS_KEYS, 0);

/// Samples of real drops, read by the agent at each poll.
#[map]
pub static DROP_SAMPLES: RingBuf = RingBuf::with_byte_size(DROP_SAMPLE_RING_BYTES, 0);
/// Inodes of the network namespaces torn down, read by the agent at each poll.
#[map]
pub static GONE_NAMESPACES: RingBuf = RingBuf::with_byte_size(GONE_NAMESPACE_RING_BYTES, 0);
/// Per CPU: samples sent, and samples the agent allows by now (see `netmon-common`).
#[map]
pub static DROP_SAMPLE_BUDGET: PerCpuArray<SampleTally> =
    PerCpuArray::with_max_entries(SAMPLE_BUDGET_SLOTS, 0);
/// What the TCP socket iterator counts in a walk (see `netmon-common`).
#[map]
pub static SOCKET_TALLY: Array<TcpSocketTally> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn traffic() -> Table<&'static PerCpuArray<InterfaceTraffic>> {
    Table {
        slots: Slots::of(&traffic::TABLE, &TRAFFIC_TAGS),
        counts: &TRAFFIC,
    }
}

#[inline(always)]
pub fn drops() -> Table<&'static PerCpuArray<u64>> {
    Table {
        slots: Slots::of(&drops::TABLE, &DROP_TAGS),
        counts: &DROPS,
    }
}

#[inline(always)]
pub fn transitions() -> Table<&'static PerCpuArray<u64>> {
    Table {
        slots: Slots::of(&transitions::TABLE, &TRANSITION_TAGS),
        counts: &TCP_TRANSITIONS,
    }
}

#[inline(always)]
pub fn tcp_events() -> Table<&'static PerCpuArray<u64>> {
    Table {
        slots: Slots::of(&tcp_events::TABLE, &TCP_EVENT_TAGS),
        counts: &TCP_EVENTS,
    }
}

#[inline(always)]
pub fn processes() -> Table<CpuRegions<SocketIo>> {
    Table {
        slots: Slots::of(&processes::TABLE, &PROCESS_TAGS),
        counts: CpuRegions {
            array: &PROCESS_IO,
            slots: MAX_PROCESS_KEYS,
        },
    }
}

/// The handshake histograms' slots; the histograms are in [`HANDSHAKES`].
#[inline(always)]
pub fn handshake_slots() -> Slots {
    Slots::of(&handshakes::TABLE, &HANDSHAKE_TAGS)
}

/// The peer counts' slots; the counts are in [`PEERS`].
#[inline(always)]
pub fn peer_slots() -> Slots {
    Slots::of(&peers::TABLE, &PEER_TAGS)
}
