//! Reading the tables counted by namespace, and freeing the slots the namespace judge found
//! gone.
use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, AsRawFd as _},
};

use anyhow::bail;
use aya::{
    Ebpf, Pod,
    maps::{MapData, PerCpuArray, PerCpuValues},
};
use netmon_common::{
    SLOT_TABLES,
    events::{self, EVENT_SLOTS, Event, map_full},
    slots::{CountsKept, NamespacedSlot, SlotTag},
};

use crate::{
    model::{
        ProgramCounters,
        kernel_tables::{
            Departures, NamespacedCount, Rows, TableKey, TableRead, TableValue, TableVisitor,
        },
    },
    probes::{
        Probes,
        slots::{self, Tags, map},
        tables::{TableTags, fdinfo},
    },
};

impl Probes {
    /// Reads every table counted by namespace, summing the per-CPU values (and the slots an
    /// identity may hold more than one of), and the programs' own counters.
    pub fn read(&self) -> anyhow::Result<(TableRead, ProgramCounters)> {
        let Some((ebpf, tags)) = &self.ebpf else {
            return Ok(Default::default());
        };
        let mut reader = Reader {
            ebpf,
            tags,
            failed: None,
        };
        let mut tables = TableRead::default();
        tables.visit(&mut reader);
        if let Some(err) = reader.failed {
            return Err(err);
        }
        Ok((tables, self.program_counters(ebpf)?))
    }

    /// The programs' counters of their own failures, and the tables' kernel memory.
    fn program_counters(&self, ebpf: &Ebpf) -> anyhow::Result<ProgramCounters> {
        let counters: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map(ebpf, events::COUNTERS)?)?;
        let mut totals = [0u64; EVENT_SLOTS as usize];
        for (slot, total) in totals.iter_mut().enumerate() {
            *total = counters.get(&(slot as u32), 0)?.iter().sum();
        }
        let map_full = SLOT_TABLES
            .iter()
            .map(|table| (table.label, totals[map_full(table.number) as usize]))
            .collect();
        Ok(ProgramCounters {
            map_full,
            missed: self.missed(ebpf),
            namespace_notices_lost: totals[Event::NamespaceNoticeLost as usize],
            read_failures: totals[Event::ReadFailed as usize],
            map_bytes: self.map_bytes.clone(),
        })
    }

    /// Events each attached hook's program did not see: the kernel skips a program that is
    /// already running on the CPU (a softirq that interrupts it on the same hook), and counts
    /// the skip (`recursion_misses` in the program's fdinfo, Linux 5.12 and later; absent
    /// before, where nothing is counted).
    fn missed(&self, ebpf: &Ebpf) -> Vec<(&'static str, u64)> {
        let attached = self
            .status
            .iter()
            .filter_map(|s| Some((s.probe, s.method?)));
        attached
            .filter_map(|(hook, method)| {
                let program = ebpf.program(&hook.program(method)?)?;
                let fd = program.fd().ok()?.as_fd().as_raw_fd();
                Some((hook.as_str(), fdinfo(fd, "recursion_misses:")?))
            })
            .collect()
    }

    /// Frees the slots `departures` names, in one pass over each table's tags. Returns how
    /// many went, and how many slots each table uses afterwards.
    pub fn forget(
        &mut self,
        departures: &Departures,
    ) -> anyhow::Result<(usize, Vec<(&'static str, usize)>)> {
        let Some((ebpf, tags)) = &mut self.ebpf else {
            return Ok((0, Vec::new()));
        };
        let mut freer = Freer {
            ebpf,
            tags,
            departures,
            passes: Vec::new(),
            failed: None,
        };
        TableRead::each_table(&mut freer);
        if let Some(err) = freer.failed {
            return Err(err);
        }
        let removed = freer.passes.iter().map(|(_, (removed, _))| removed).sum();
        let entries = freer
            .passes
            .iter()
            .map(|(map, (_, left))| (*map, *left))
            .collect();
        Ok((removed, entries))
    }
}

/// Reads each table into its rows; the first failure stops the reading.
struct Reader<'a> {
    ebpf: &'a Ebpf,
    tags: &'a TableTags,
    failed: Option<anyhow::Error>,
}

impl TableVisitor for Reader<'_> {
    fn table<K: TableKey>(&mut self, rows: &mut Rows<K>) {
        if self.failed.is_some() {
            return;
        }
        match read_rows::<K>(self.ebpf, self.tags.of(K::TABLE)) {
            Ok(read) => *rows = read,
            Err(err) => self.failed = Some(err),
        }
    }
}

/// The rows of the table of keys `K`, whose tags are `tags`.
fn read_rows<K: TableKey>(ebpf: &Ebpf, tags: &Tags) -> anyhow::Result<Rows<K>> {
    let table = K::TABLE;
    Ok(match table.kept {
        CountsKept::PerCpu => counted(per_cpu(&slots::read::<K::Value>(ebpf, tags, table.counts)?)),
        CountsKept::Shared => {
            let rows = slots::read_shared::<K::Value>(ebpf, tags, table.counts)?;
            counted(
                rows.iter()
                    .map(|(tag, value)| (tag, std::slice::from_ref(value))),
            )
        }
        CountsKept::CpuRegions => bail!("{} is read with its own reader", table.label),
    })
}

/// Frees each table's slots the departures name; the first failure stops the freeing.
struct Freer<'a> {
    ebpf: &'a mut Ebpf,
    tags: &'a TableTags,
    departures: &'a Departures,
    /// Each table's label, slots freed and slots left in use.
    passes: Vec<(&'static str, (usize, usize))>,
    failed: Option<anyhow::Error>,
}

impl TableVisitor for Freer<'_> {
    fn table<K: TableKey>(&mut self, _: &mut Rows<K>) {
        if self.failed.is_some() {
            return;
        }
        let table = K::TABLE;
        let (tags, departures) = (self.tags.of(table), self.departures);
        let gone = |tag: &SlotTag| frees::<K>(departures, tag);
        let pass = match table.kept {
            CountsKept::PerCpu => {
                slots::free_where::<K::Value>(self.ebpf, tags, table.counts, self.tags.cpus, &gone)
            }
            CountsKept::Shared => {
                slots::free_shared_where::<K::Value>(self.ebpf, tags, table.counts, &gone)
            }
            CountsKept::CpuRegions => Err(anyhow::anyhow!(
                "{} is freed with its own reader",
                table.label
            )),
        };
        match pass {
            Ok(pass) => self.passes.push((table.label, pass)),
            Err(err) => self.failed = Some(err),
        }
    }
}

/// The rows of a table by key and namespace cookie, the values of each summed over CPUs and
/// over the slots one identity holds.
fn counted<'a, K: TableKey>(rows: impl Iterator<Item = (&'a SlotTag, &'a [K::Value])>) -> Rows<K> {
    let mut sums: BTreeMap<(K, u64), K::Value> = BTreeMap::new();
    for (tag, values) in rows {
        let Some(slot) = NamespacedSlot::<K>::from_tag(tag) else {
            continue;
        };
        let sum = sums.entry((slot.key, slot.netns_cookie)).or_default();
        for value in values {
            sum.absorb(value);
        }
    }
    sums.into_iter()
        .map(|((key, netns_cookie), value)| NamespacedCount {
            key,
            netns_cookie,
            value,
        })
        .collect()
}

/// Rows of a per-CPU table as (tag, one value a CPU).
fn per_cpu<V: Pod>(rows: &[(SlotTag, PerCpuValues<V>)]) -> impl Iterator<Item = (&SlotTag, &[V])> {
    rows.iter().map(|(tag, values)| (tag, &values[..]))
}

/// Whether the slot with `tag`, read as a slot of keys `K`, is one `departures` frees.
fn frees<K: TableKey>(departures: &Departures, tag: &SlotTag) -> bool {
    NamespacedSlot::<K>::from_tag(tag).is_some_and(|slot| departures.frees(&slot))
}
