//! Types shared by the kernel programs and the agent: map keys, map values, sizes and indices,
//! one file a kernel table. Every type is `#[repr(C)]` with explicit padding so that both
//! sides agree byte for byte.
//!
//! Counters live in slot tables ([`slots`]): a shared array of [`slots::SlotTag`]s says what
//! each slot counts, and an array of the same length holds the counts (one per CPU where
//! events are frequent, one added to atomically where they are not). A program finds its slot
//! from a hash of the identity, looks at [`slots::SLOT_PROBES`] consecutive slots at most,
//! and claims a free one; the agent reads the tags (memory-mapped) through each table's typed
//! view ([`slots::SlotKey`]), sums the counts of the claimed slots, and frees the slots of
//! what is gone. A slot is used only when its whole identity matches, so a hash collision can
//! never merge two identities' counts.
#![no_std]

pub mod drops;
pub mod events;
pub mod handshakes;
pub mod iterators;
pub mod kernel_layout;
pub mod processes;
pub mod samples;
pub mod slots;
pub mod socket_memo;
pub mod tcp_events;
pub mod traffic;
pub mod transitions;

/// The maps of each table in the object, by the label metrics and benchmarks give the table.
pub const TABLE_MAPS: [(&str, &[&str]); 8] = [
    ("traffic", &traffic::MAPS),
    ("drops", &drops::MAPS),
    // TCP events share the transitions' maps (see `tcp_events`).
    ("transitions", &transitions::MAPS),
    ("handshakes", &handshakes::MAPS),
    ("processes", &processes::MAPS),
    ("drop_samples", &samples::MAPS),
    ("events", &events::MAPS),
    ("tcp_sockets", &[iterators::SOCKET_TALLY]),
];

/// Arrays that hold a region of values for each possible CPU, sized by the agent before it
/// loads them: their names, and the values in a CPU's region.
pub const CPU_REGION_MAPS: [(&str, u32); 2] = [
    (processes::COUNTS, processes::MAX_PROCESS_KEYS),
    (socket_memo::SOCKET_MEMOS, socket_memo::SOCKET_MEMOS_PER_CPU),
];
