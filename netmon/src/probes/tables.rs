//! The slot tables as loaded: their sizes, and their tags mapped into the agent.
use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::{Ebpf, maps::Map};
use netmon_common::{
    SLOT_TABLES, processes,
    slots::{SlotMasks, SlotTableSpec},
    table_maps, traffic,
};

use crate::probes::{ProbeSettings, process_io::ProcessCounts, slots::Tags};

/// Slots of each table as loaded (powers of two), by table number.
#[derive(Clone, Copy, Debug)]
pub(super) struct TableSizes([u32; SLOT_TABLES.len()]);

impl TableSizes {
    /// Every table at its capacity but the traffic table, which the settings may shrink.
    pub(super) fn new(settings: &ProbeSettings) -> Self {
        let mut sizes = SLOT_TABLES.map(|table| table.slots);
        sizes[traffic::TABLE.number as usize] =
            settings.max_tracked_interfaces.max(1).next_power_of_two();
        Self(sizes)
    }

    pub(super) fn of(&self, table: &SlotTableSpec) -> u32 {
        self.0[table.number as usize]
    }

    pub(super) fn masks(self) -> SlotMasks {
        SlotMasks {
            masks: self.0.map(|slots| slots - 1),
        }
    }
}

/// The tag arrays of the tables the agent reads, and the socket I/O counts with the socket
/// hooks' memos, memory-mapped.
pub(super) struct TableTags {
    /// By table number.
    tags: Vec<Tags>,
    pub(super) process_io: ProcessCounts,
    /// The possible CPUs, which the per-CPU maps hold a value for each of.
    pub(super) cpus: u32,
}

impl TableTags {
    pub(super) fn map(ebpf: &Ebpf, sizes: TableSizes, cpus: u32) -> anyhow::Result<Self> {
        let tags = SLOT_TABLES
            .iter()
            .map(|table| Tags::map(ebpf, table.tags, table.claims, sizes.of(table)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            tags,
            process_io: ProcessCounts::map(ebpf, cpus)?,
            cpus,
        })
    }

    /// The tags of `table`.
    pub(super) fn of(&self, table: &SlotTableSpec) -> &Tags {
        &self.tags[table.number as usize]
    }

    /// The tags of the socket I/O table.
    pub(super) fn processes(&self) -> &Tags {
        self.of(&processes::TABLE)
    }
}

/// Kernel memory of each table's maps, as the kernel charges it (`memlock` in the map
/// descriptor's fdinfo); fixed once the maps exist, as every map is a preallocated array,
/// ring or (the claims of the programs for kernels without `bpf_loop`) hash map.
pub(super) fn map_bytes(ebpf: &Ebpf) -> Vec<(&'static str, u64)> {
    table_maps()
        .map(|(table, maps)| {
            let bytes = maps
                .iter()
                .filter_map(|name| match ebpf.map(name)? {
                    Map::Array(data)
                    | Map::PerCpuArray(data)
                    | Map::RingBuf(data)
                    | Map::HashMap(data) => fdinfo(data.fd().as_fd().as_raw_fd(), "memlock:"),
                    _ => None,
                })
                .sum();
            (table, bytes)
        })
        .collect()
}

/// A number the kernel shows of a BPF object in the descriptor's fdinfo (`memlock:` of a map,
/// `recursion_misses:` of a program).
pub(super) fn fdinfo(fd: i32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .trim()
        .parse()
        .ok()
}
