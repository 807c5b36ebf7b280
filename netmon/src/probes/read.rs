//! Reading the tables into kernel counters, and freeing the slots of what is gone.
use std::collections::BTreeMap;

use aya::maps::{Array, MapData, PerCpuArray};
use netmon_common::{
    DropKey, EVENT_SLOTS, Event, HANDSHAKE_ACTIVE, HANDSHAKE_BUCKETS,
    HandshakeHistogram as KernelHistogram, HandshakeKey, InterfaceKey, InterfaceTraffic,
    ProcessIoKey, ProcessName, SlotTag, TCP_EVENT_FAMILY, TcpEvent, TransitionKey,
};

use crate::{
    model::{
        DropCount, HandshakeHistogram, KernelCounters, TcpEvents, TcpTransition, TrafficCount,
        processes::{IoCounts, ProcessId, ProcessIo},
    },
    names,
    probes::{
        Probes,
        slots::{self, map},
    },
};

impl Probes {
    /// Reads every table, summing the per-CPU values (and the slots an identity may hold
    /// more than one of).
    pub fn read(&self) -> anyhow::Result<KernelCounters> {
        let Some((ebpf, tags)) = &self.ebpf else {
            return Ok(KernelCounters::default());
        };
        let mut counters = KernelCounters::default();

        // By interface and namespace cookie (the slot's `extra`): the agent tells a namespace
        // from a dead one that had its inode.
        let mut traffic: BTreeMap<(InterfaceKey, u64), InterfaceTraffic> = BTreeMap::new();
        for (tag, per_cpu) in slots::read::<InterfaceTraffic>(ebpf, &tags.traffic, "TRAFFIC")? {
            // A claim not yet complete counts nothing so far.
            if !tag.is_complete() {
                continue;
            }
            let sum = traffic
                .entry((InterfaceKey::from_meta(tag.meta), tag.extra))
                .or_default();
            for value in per_cpu.iter() {
                sum.rx_packets += value.rx_packets;
                sum.rx_bytes += value.rx_bytes;
                sum.tx_packets += value.tx_packets;
                sum.tx_bytes += value.tx_bytes;
                sum.tx_failed += value.tx_failed;
            }
        }
        counters.traffic = traffic
            .into_iter()
            .map(|((key, cookie), sum)| TrafficCount {
                netns: key.netns,
                netns_cookie: cookie,
                ifindex: key.ifindex,
                interface: String::new(),
                rx_packets: sum.rx_packets,
                rx_bytes: sum.rx_bytes,
                tx_packets: sum.tx_packets,
                tx_bytes: sum.tx_bytes,
                tx_failed: sum.tx_failed,
            })
            .collect();

        let mut drops: BTreeMap<(DropKey, u64), u64> = BTreeMap::new();
        for (tag, per_cpu) in slots::read::<u64>(ebpf, &tags.drops, "DROPS")? {
            if tag.is_complete() {
                *drops
                    .entry((DropKey::from_slot(&tag), tag.extra))
                    .or_default() += per_cpu.iter().sum::<u64>();
            }
        }
        counters.drops = drops
            .into_iter()
            .map(|((key, cookie), count)| DropCount {
                key,
                netns: key.interface.netns,
                netns_cookie: cookie,
                ifindex: key.interface.ifindex,
                interface: String::new(),
                protocol: names::ethertype_name(key.protocol),
                reason: self.reasons.name(key.reason),
                count,
            })
            .collect();

        // By key and namespace cookie (the slot's `extra`), judged as the traffic's are.
        let mut transitions: BTreeMap<(TransitionKey, u64), u64> = BTreeMap::new();
        let mut events: BTreeMap<(u32, u64), TcpEvents> = BTreeMap::new();
        for (tag, per_cpu) in slots::read::<u64>(ebpf, &tags.transitions, "TCP_TRANSITIONS")? {
            let key = TransitionKey::from_slot_id(tag.id);
            let count = per_cpu.iter().sum::<u64>();
            if key.family != TCP_EVENT_FAMILY {
                *transitions.entry((key, tag.extra)).or_default() += count;
                continue;
            }
            let of = events
                .entry((key.netns, tag.extra))
                .or_insert_with(|| TcpEvents {
                    netns: key.netns,
                    netns_cookie: tag.extra,
                    ..Default::default()
                });
            match key.old_state {
                k if k == TcpEvent::Retransmit as u8 => of.retransmits += count,
                k if k == TcpEvent::ResetSent as u8 => of.resets_sent += count,
                k if k == TcpEvent::ResetReceived as u8 => of.resets_received += count,
                _ => {}
            }
        }
        counters.tcp_events = events.into_values().collect();
        counters.transitions = transitions
            .into_iter()
            .map(|((key, cookie), count)| TcpTransition {
                netns: key.netns,
                netns_cookie: cookie,
                family: family_name(key.family),
                from: names::tcp_state_name(key.old_state.into()),
                to: names::tcp_state_name(key.new_state.into()),
                count,
            })
            .collect();
        counters.transitions.sort_by(|a, b| {
            (a.netns, a.family, &a.from, &a.to).cmp(&(b.netns, b.family, &b.from, &b.to))
        });

        let mut handshakes: BTreeMap<(u32, u32, u64), HandshakeHistogram> = BTreeMap::new();
        for (tag, value) in
            slots::read_shared::<KernelHistogram>(ebpf, &tags.handshakes, "HANDSHAKES")?
        {
            let key = HandshakeKey::from_slot_id(tag.id);
            let histogram = handshakes
                .entry((key.netns, key.open, tag.extra))
                .or_insert_with(|| HandshakeHistogram {
                    netns: key.netns,
                    netns_cookie: tag.extra,
                    open: if key.open == HANDSHAKE_ACTIVE {
                        "active"
                    } else {
                        "passive"
                    },
                    buckets: vec![0; HANDSHAKE_BUCKETS],
                    sum_ns: 0,
                });
            for (total, count) in histogram.buckets.iter_mut().zip(value.buckets) {
                *total += count;
            }
            histogram.sum_ns += value.sum_ns;
        }
        counters.handshakes = handshakes.into_values().collect();

        let events: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map(ebpf, "EVENTS")?)?;
        let mut totals = [0u64; EVENT_SLOTS as usize];
        for (slot, total) in totals.iter_mut().enumerate() {
            *total = events.get(&(slot as u32), 0)?.iter().sum();
        }
        counters.traffic_map_full = totals[Event::TrafficMapFull as usize];
        counters.drop_map_full = totals[Event::DropMapFull as usize];
        counters.handshake_map_full = totals[Event::HandshakeMapFull as usize];
        counters.transition_map_full = totals[Event::TransitionMapFull as usize];
        counters.process_map_full = totals[Event::ProcessMapFull as usize];
        counters.namespace_notices_lost = totals[Event::NamespaceNoticeLost as usize];
        counters.read_failures = totals[Event::ReadFailed as usize];
        counters.map_bytes = self.map_bytes.clone();
        Ok(counters)
    }

    /// Frees the slots of interfaces and namespaces that no longer exist, in one pass over
    /// each table's tags; `interface_gone` is asked with a device slot's interface and
    /// namespace cookie, `netns_gone` with a TCP slot's namespace inode and cookie. Returns
    /// how many went, and how many slots each table uses afterwards.
    pub fn forget(
        &mut self,
        interface_gone: &dyn Fn(&InterfaceKey, u64) -> bool,
        netns_gone: &dyn Fn(u32, u64) -> bool,
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
                    "TRAFFIC",
                    cpus,
                    &|tag| interface_gone(&InterfaceKey::from_meta(tag.meta), tag.extra),
                )?,
            ),
            (
                "drops",
                slots::free_where::<u64>(ebpf, &tags.drops, "DROPS", cpus, &|tag| {
                    interface_gone(&InterfaceKey::from_meta(tag.meta), tag.extra)
                })?,
            ),
            (
                "transitions",
                slots::free_where::<u64>(
                    ebpf,
                    &tags.transitions,
                    "TCP_TRANSITIONS",
                    cpus,
                    &|tag| netns_gone(TransitionKey::from_slot_id(tag.id).netns, tag.extra),
                )?,
            ),
            (
                "handshakes",
                slots::free_shared_where::<KernelHistogram>(
                    ebpf,
                    &tags.handshakes,
                    "HANDSHAKES",
                    &|tag| netns_gone(HandshakeKey::from_slot_id(tag.id).netns, tag.extra),
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

impl Probes {
    /// Socket I/O by process and cgroup. The slots of processes that `exited(pid, start_ns)`
    /// says are gone are freed, and their last counts returned, marked as exited.
    pub fn socket_io(
        &mut self,
        exited: &dyn Fn(ProcessId) -> bool,
    ) -> anyhow::Result<Vec<ProcessIo>> {
        let Some((ebpf, tags)) = &mut self.ebpf else {
            return Ok(Vec::new());
        };
        let id = |tag: &SlotTag| ProcessId {
            pid: ProcessIoKey::from_slot_id(tag.id).tgid,
            start_ns: ProcessIoKey::start_boottime_ns(tag.extra2),
        };
        let name_of = |ebpf: &aya::Ebpf, index: u32| -> anyhow::Result<String> {
            let names: Array<&MapData, ProcessName> =
                Array::try_from(slots::map(ebpf, "PROCESS_NAMES")?)?;
            let name = names.get(&index, 0)?;
            let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            Ok(String::from_utf8_lossy(&name[..end]).into_owned())
        };
        // The names of the slots to free first: a freed slot may be claimed again at once.
        let gone = |tag: &SlotTag| tag.is_complete() && exited(id(tag));
        let mut named = BTreeMap::new();
        for (index, tag) in tags.processes.claimed() {
            if gone(&tag) {
                named.insert(index, name_of(ebpf, index)?);
            }
        }
        let taken = tags.process_io.take_where(&tags.processes, &gone)?;
        let live = tags.process_io.read(&tags.processes)?;
        for (index, tag, _) in &live {
            if tag.is_complete() {
                named.insert(*index, name_of(ebpf, *index)?);
            }
        }
        let last = taken.into_iter().map(|slot| (slot, true));
        Ok(last
            .chain(live.into_iter().map(|slot| (slot, false)))
            .filter(|((_, tag, _), _)| tag.is_complete())
            .map(|((index, tag, total), exited)| {
                let key = ProcessIoKey::from_slot_id(tag.id);
                let mut counts = IoCounts::default();
                counts.add(key.direction, key.protocol, total.bytes, total.calls);
                ProcessIo {
                    id: id(&tag),
                    name: named.get(&index).cloned().unwrap_or_default(),
                    cgroup_id: tag.extra,
                    netns: tag.meta as u32,
                    counts,
                    exited,
                }
            })
            .collect())
    }
}

fn family_name(family: u8) -> &'static str {
    if family == libc::AF_INET6 as u8 {
        names::FAMILY_INET6
    } else {
        names::FAMILY_INET
    }
}
