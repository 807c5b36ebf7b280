//! Table 7: the kernel memory netmon's maps take here, and what their definitions take on
//! larger hosts.
use std::{fmt::Write as _, thread};

use netmon_common::{CPU_REGION_MAPS, table_maps};
use netmon_tests::{Agent, sh};

/// Bytes a map takes with `cpus` CPUs, from its definition: an array holds its values (a
/// memory-mappable one in whole pages), a per-CPU array a copy per CPU (each value rounded up
/// to 8 bytes) and a pointer per entry; an array of per-CPU regions a region per CPU; a hash
/// its elements and buckets.
fn map_bytes_for(map: &serde_json::Value, cpus: u64) -> u64 {
    let entries = match CPU_REGION_MAPS
        .iter()
        .find(|(region, _)| is_named(map, region))
    {
        Some((_, per_cpu)) => u64::from(*per_cpu) * cpus,
        None => map["max_entries"].as_u64().unwrap_or(0),
    };
    let value = map["bytes_value"].as_u64().unwrap_or(0).div_ceil(8) * 8;
    let key = map["bytes_key"].as_u64().unwrap_or(0).div_ceil(8) * 8;
    match map["type"].as_str() {
        Some("percpu_array") => entries * (value * cpus + 8),
        // Preallocated elements (a 48-byte header, the key and the value) and a bucket of 16
        // bytes for each power of two up to the entries, whatever the CPUs.
        Some("hash" | "lru_hash") => {
            entries * (48 + key + value) + entries.next_power_of_two() * 16
        }
        // The data pages, and about four pages of header and positions, whatever the CPUs.
        Some("ringbuf") => entries + 4 * 4096,
        _ => (entries * value).div_ceil(4096) * 4096,
    }
}

/// Bytes of `maps` as the kernel charges them here, and as they would take with 2, 16 and
/// 128 CPUs.
fn table_bytes(maps: &[&serde_json::Value]) -> [u64; 4] {
    [
        maps.iter()
            .map(|m| m["bytes_memlock"].as_u64().unwrap_or(0))
            .sum(),
        maps.iter().map(|m| map_bytes_for(m, 2)).sum(),
        maps.iter().map(|m| map_bytes_for(m, 16)).sum(),
        maps.iter().map(|m| map_bytes_for(m, 128)).sum::<u64>(),
    ]
}

/// Whether the kernel's map `map` is the object's map `name`, which the kernel keeps to its
/// first 15 bytes (`BPF_OBJ_NAME_LEN`).
fn is_named(map: &serde_json::Value, name: &str) -> bool {
    map["name"].as_str() == Some(&name[..name.len().min(15)])
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub(crate) fn kernel_memory() -> String {
    let agent = Agent::start(&[]);
    let maps: Vec<serde_json::Value> =
        serde_json::from_str(&sh("bpftool", &["map", "show", "--json"])).unwrap_or_default();
    drop(agent);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mut out = format!(
        "## 7. Kernel memory\n\nnetmon's maps with the default configuration: what the kernel \
         charges here ({cpus} CPUs, `bpftool map show`, bytes_memlock) and what the same \
         definitions take on larger hosts.\n\n\
         | table | here (MiB) | 2 CPUs (MiB) | 16 CPUs (MiB) | 128 CPUs (MiB) |\n|---|---|---|---|---|\n"
    );
    let mut totals = [0u64; 4];
    for (table, names) in table_maps() {
        let ours: Vec<&serde_json::Value> = maps
            .iter()
            .filter(|m| names.iter().any(|name| is_named(m, name)))
            .collect();
        let row = table_bytes(&ours);
        for (total, value) in totals.iter_mut().zip(row) {
            *total += value;
        }
        let _ = writeln!(
            out,
            "| {table} | {:.2} | {:.2} | {:.2} | {:.2} |",
            mib(row[0]),
            mib(row[1]),
            mib(row[2]),
            mib(row[3])
        );
    }
    let _ = writeln!(
        out,
        "| **all** | **{:.2}** | {:.2} | {:.2} | **{:.2}** |\n\nTargets: at most 4 MiB here \
         ({}), at most 32 MiB for 128 CPUs ({}).\n",
        mib(totals[0]),
        mib(totals[1]),
        mib(totals[2]),
        mib(totals[3]),
        if mib(totals[0]) <= 4.0 {
            "met"
        } else {
            "missed"
        },
        if mib(totals[3]) <= 32.0 {
            "met"
        } else {
            "missed"
        },
    );
    out
}
