//! The slot tables as loaded: their sizes, and their tags mapped into the agent.
use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::{Ebpf, maps::Map};
use netmon_common::{
    TABLE_MAPS,
    drops::{self, MAX_DROP_KEYS},
    handshakes::{self, MAX_HANDSHAKE_KEYS},
    processes::{self, MAX_PROCESS_KEYS},
    slots::SlotMasks,
    traffic,
    transitions::{self, MAX_TRANSITION_KEYS},
};

use crate::probes::{ProbeSettings, process_io::ProcessCounts, slots::Tags};

/// Slots of each table, as loaded (powers of two).
#[derive(Clone, Copy, Debug)]
pub(super) struct TableSizes {
    pub(super) traffic: u32,
    pub(super) drops: u32,
    pub(super) transitions: u32,
    pub(super) handshakes: u32,
    pub(super) processes: u32,
}

impl TableSizes {
    pub(super) fn new(settings: &ProbeSettings) -> Self {
        Self {
            traffic: settings.max_tracked_interfaces.max(1).next_power_of_two(),
            drops: MAX_DROP_KEYS,
            transitions: MAX_TRANSITION_KEYS,
            handshakes: MAX_HANDSHAKE_KEYS,
            processes: MAX_PROCESS_KEYS,
        }
    }

    pub(super) fn masks(self) -> SlotMasks {
        SlotMasks {
            traffic: self.traffic - 1,
            drops: self.drops - 1,
            transitions: self.transitions - 1,
            handshakes: self.handshakes - 1,
            processes: self.processes - 1,
        }
    }
}

/// The tag arrays of the tables the agent reads, and the socket I/O counts with the socket
/// hooks' memos, memory-mapped.
pub(super) struct TableTags {
    pub(super) traffic: Tags,
    pub(super) drops: Tags,
    pub(super) transitions: Tags,
    pub(super) handshakes: Tags,
    pub(super) processes: Tags,
    pub(super) process_io: ProcessCounts,
    /// The possible CPUs, which the per-CPU maps hold a value for each of.
    pub(super) cpus: u32,
}

impl TableTags {
    pub(super) fn map(ebpf: &Ebpf, sizes: TableSizes, cpus: u32) -> anyhow::Result<Self> {
        Ok(Self {
            traffic: Tags::map(ebpf, traffic::TAGS, traffic::CLAIMS, sizes.traffic)?,
            drops: Tags::map(ebpf, drops::TAGS, drops::CLAIMS, sizes.drops)?,
            transitions: Tags::map(
                ebpf,
                transitions::TAGS,
                transitions::CLAIMS,
                sizes.transitions,
            )?,
            handshakes: Tags::map(ebpf, handshakes::TAGS, handshakes::CLAIMS, sizes.handshakes)?,
            processes: Tags::map(ebpf, processes::TAGS, processes::CLAIMS, sizes.processes)?,
            process_io: ProcessCounts::map(ebpf, cpus)?,
            cpus,
        })
    }
}

/// Kernel memory of each table's maps, as the kernel charges it (`memlock` in the map
/// descriptor's fdinfo); fixed once the maps exist, as every map is a preallocated array,
/// ring or (the claims of the programs for kernels without `bpf_loop`) hash map.
pub(super) fn map_bytes(ebpf: &Ebpf) -> Vec<(&'static str, u64)> {
    TABLE_MAPS
        .iter()
        .map(|(table, maps)| {
            let bytes = maps
                .iter()
                .filter_map(|name| match ebpf.map(name)? {
                    Map::Array(data)
                    | Map::PerCpuArray(data)
                    | Map::RingBuf(data)
                    | Map::HashMap(data) => memlock(data.fd().as_fd().as_raw_fd()),
                    _ => None,
                })
                .sum();
            (*table, bytes)
        })
        .collect()
}

fn memlock(fd: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("memlock:"))?
        .trim()
        .parse()
        .ok()
}
