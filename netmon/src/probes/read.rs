//! Reading the tables counted by namespace, and freeing the slots the namespace judge found
//! gone.
use std::collections::BTreeMap;

use aya::{
    Ebpf, Pod,
    maps::{MapData, PerCpuArray, PerCpuValues},
};
use netmon_common::{
    drops::{self, DropKey},
    events::{self, EVENT_SLOTS, Event},
    handshakes::{self, HandshakeHistogram, HandshakeKey},
    slots::{NamespacedSlot, SlotKey, SlotTag},
    tcp_events::TcpEventKey,
    traffic::{self, InterfaceKey, InterfaceTraffic},
    transitions::{self, TransitionKey},
};

use crate::{
    model::{
        ProgramCounters,
        kernel_tables::{Departures, NamespacedCount, TableKey, TableRead, TableValue},
    },
    probes::{
        Probes,
        slots::{self, map},
    },
};

impl Probes {
    /// Reads every table counted by namespace, summing the per-CPU values (and the slots an
    /// identity may hold more than one of), and the programs' own counters.
    pub fn read(&self) -> anyhow::Result<(TableRead, ProgramCounters)> {
        let Some((ebpf, tags)) = &self.ebpf else {
            return Ok(Default::default());
        };
        let traffic_rows = slots::read::<InterfaceTraffic>(ebpf, &tags.traffic, traffic::COUNTS)?;
        let drop_rows = slots::read::<u64>(ebpf, &tags.drops, drops::COUNTS)?;
        let transition_rows = slots::read::<u64>(ebpf, &tags.transitions, transitions::COUNTS)?;
        let handshake_rows =
            slots::read_shared::<HandshakeHistogram>(ebpf, &tags.handshakes, handshakes::COUNTS)?;
        let tables = TableRead {
            traffic: counted(per_cpu(&traffic_rows)),
            drops: counted(per_cpu(&drop_rows)),
            // TCP events count in the transition table's slots, under keys of their own.
            transitions: counted(per_cpu(&transition_rows)),
            tcp_events: counted(per_cpu(&transition_rows)),
            handshakes: counted(
                handshake_rows
                    .iter()
                    .map(|(tag, value)| (tag, std::slice::from_ref(value))),
            ),
        };
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
        Ok(ProgramCounters {
            traffic_map_full: totals[Event::TrafficMapFull as usize],
            drop_map_full: totals[Event::DropMapFull as usize],
            handshake_map_full: totals[Event::HandshakeMapFull as usize],
            transition_map_full: totals[Event::TransitionMapFull as usize],
            process_map_full: totals[Event::ProcessMapFull as usize],
            namespace_notices_lost: totals[Event::NamespaceNoticeLost as usize],
            read_failures: totals[Event::ReadFailed as usize],
            map_bytes: self.map_bytes.clone(),
        })
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
        let cpus = tags.cpus;
        let passes = [
            (
                "traffic",
                slots::free_where::<InterfaceTraffic>(
                    ebpf,
                    &tags.traffic,
                    traffic::COUNTS,
                    cpus,
                    &|tag| frees::<InterfaceKey>(departures, tag),
                )?,
            ),
            (
                "drops",
                slots::free_where::<u64>(ebpf, &tags.drops, drops::COUNTS, cpus, &|tag| {
                    frees::<DropKey>(departures, tag)
                })?,
            ),
            (
                "transitions",
                slots::free_where::<u64>(
                    ebpf,
                    &tags.transitions,
                    transitions::COUNTS,
                    cpus,
                    &|tag| {
                        frees::<TransitionKey>(departures, tag)
                            || frees::<TcpEventKey>(departures, tag)
                    },
                )?,
            ),
            (
                "handshakes",
                slots::free_shared_where::<HandshakeHistogram>(
                    ebpf,
                    &tags.handshakes,
                    handshakes::COUNTS,
                    &|tag| frees::<HandshakeKey>(departures, tag),
                )?,
            ),
        ];
        let removed = passes.iter().map(|(_, (removed, _))| removed).sum();
        let entries = passes
            .iter()
            .map(|(map, (_, left))| (*map, *left))
            .collect();
        Ok((removed, entries))
    }
}

/// The rows of a table by key and namespace cookie, the values of each summed over CPUs and
/// over the slots one identity holds; rows of other keys (a shared table) are left out.
fn counted<'a, K: SlotKey + TableKey, V: TableValue + 'a>(
    rows: impl Iterator<Item = (&'a SlotTag, &'a [V])>,
) -> Vec<NamespacedCount<K, V>> {
    let mut sums: BTreeMap<(K, u64), V> = BTreeMap::new();
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
fn frees<K: SlotKey + TableKey>(departures: &Departures, tag: &SlotTag) -> bool {
    NamespacedSlot::<K>::from_tag(tag).is_some_and(|slot| departures.frees(&slot))
}
