//! The maps the programs count in, and the tables built from them.
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};
use netmon_common::{
    drops::MAX_DROP_KEYS,
    events::{Event, GONE_NAMESPACE_RING_BYTES},
    handshakes::{HandshakeHistogram, MAX_HANDSHAKE_KEYS},
    iterators::TcpSocketTally,
    processes::{MAX_PROCESS_KEYS, ProcessName, SocketIo},
    samples::{DROP_SAMPLE_RING_BYTES, SAMPLE_BUDGET_SLOTS, SampleTally},
    slots::SlotMasks,
    socket_memo::{SOCKET_MEMOS_PER_CPU, SocketMemo},
    traffic::{InterfaceTraffic, MAX_INTERFACES},
    transitions::MAX_TRANSITION_KEYS,
};

use crate::slots::{CpuRegions, SlotTable, Slots, Table};

/// Sizes of the tables, set by the agent (which may shrink them) before loading.
#[unsafe(no_mangle)]
pub(crate) static SLOT_MASKS: SlotMasks = SlotMasks {
    traffic: MAX_INTERFACES - 1,
    drops: MAX_DROP_KEYS - 1,
    transitions: MAX_TRANSITION_KEYS - 1,
    handshakes: MAX_HANDSHAKE_KEYS - 1,
    processes: MAX_PROCESS_KEYS - 1,
};

macro_rules! slot_mask {
    ($field:ident) => {
        // SAFETY: a read of a static the loader initialised; see `kernel::constant`.
        unsafe { core::ptr::read_volatile(&raw const SLOT_MASKS.$field) }
    };
}

#[map]
pub static TRAFFIC: PerCpuArray<InterfaceTraffic> =
    PerCpuArray::with_max_entries(MAX_INTERFACES, 0);

#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_DROP_KEYS, 0);

#[map]
pub static TCP_TRANSITIONS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(MAX_TRANSITION_KEYS, 0);

/// Shared by all CPUs and added to atomically: a handshake completes once per connection, and
/// a copy per CPU of every histogram would cost more memory than the counts are worth.
#[map]
pub static HANDSHAKES: Array<HandshakeHistogram> = Array::with_max_entries(MAX_HANDSHAKE_KEYS, 0);

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
        slots: Slots::of(
            SlotTable::Traffic,
            slot_mask!(traffic),
            Event::TrafficMapFull,
        ),
        counts: &TRAFFIC,
    }
}

#[inline(always)]
pub fn drops() -> Table<&'static PerCpuArray<u64>> {
    Table {
        slots: Slots::of(SlotTable::Drops, slot_mask!(drops), Event::DropMapFull),
        counts: &DROPS,
    }
}

#[inline(always)]
pub fn transitions() -> Table<&'static PerCpuArray<u64>> {
    Table {
        slots: Slots::of(
            SlotTable::Transitions,
            slot_mask!(transitions),
            Event::TransitionMapFull,
        ),
        counts: &TCP_TRANSITIONS,
    }
}

#[inline(always)]
pub fn processes() -> Table<CpuRegions<SocketIo>> {
    Table {
        slots: Slots::of(
            SlotTable::Processes,
            slot_mask!(processes),
            Event::ProcessMapFull,
        ),
        counts: CpuRegions {
            array: &PROCESS_IO,
            slots: MAX_PROCESS_KEYS,
        },
    }
}

/// The handshake histograms' slots; the histograms are in [`HANDSHAKES`].
#[inline(always)]
pub fn handshake_slots() -> Slots {
    Slots::of(
        SlotTable::Handshakes,
        slot_mask!(handshakes),
        Event::HandshakeMapFull,
    )
}
