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
pub mod peers;
pub mod processes;
pub mod samples;
pub mod slots;
pub mod socket_memo;
pub mod tcp_events;
pub mod traffic;
pub mod transitions;

/// The slot tables, each at the place its [`slots::SlotTableSpec::number`] names.
pub const SLOT_TABLES: [&slots::SlotTableSpec; 7] = [
    &traffic::TABLE,
    &drops::TABLE,
    &transitions::TABLE,
    &handshakes::TABLE,
    &processes::TABLE,
    &tcp_events::TABLE,
    &peers::TABLE,
];

/// The maps of the object that are no slot table's, by the label metrics and benchmarks give
/// them.
const OTHER_MAPS: [(&str, &[&str]); 3] = [
    ("drop_samples", &samples::MAPS),
    ("events", &events::MAPS),
    ("tcp_sockets", &[iterators::SOCKET_TALLY]),
];

/// The maps of each table in the object, by the label metrics and benchmarks give the table.
pub fn table_maps() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    let slot_tables = SLOT_TABLES.iter().map(|table| (table.label, table.maps));
    slot_tables.chain(OTHER_MAPS)
}

/// Arrays that hold a region of values for each possible CPU, sized by the agent before it
/// loads them: their names, and the values in a CPU's region.
pub const CPU_REGION_MAPS: [(&str, u32); 2] = [
    (processes::COUNTS, processes::MAX_PROCESS_KEYS),
    (socket_memo::SOCKET_MEMOS, socket_memo::SOCKET_MEMOS_PER_CPU),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_tables_sit_at_their_numbers_with_their_own_maps() {
        for (place, table) in SLOT_TABLES.iter().enumerate() {
            assert_eq!(table.number as usize, place, "{}", table.label);
            assert!(table.slots.is_power_of_two(), "{}", table.label);
            for map in [table.tags, table.counts, table.claims] {
                assert!(table.maps.contains(&map), "{}: {map}", table.label);
            }
        }
        let maps = || table_maps().flat_map(|(_, maps)| maps.iter());
        for map in maps() {
            let tables = maps().filter(|other| *other == map).count();
            assert_eq!(tables, 1, "{map} belongs to one table");
        }
    }
}
