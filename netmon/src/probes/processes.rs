//! Socket I/O by process: the socket I/O table read into counts by process, and the slots of
//! processes that have exited freed with their last counts.
use std::collections::BTreeMap;

use aya::maps::{Array, MapData};
use netmon_common::{
    processes::{self, ProcessName, ProcessSlot},
    slots::SlotTag,
};

use crate::{
    model::processes::{IoCounts, ProcessId, ProcessIo},
    probes::{Probes, slots},
};

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
        // The names of the slots to free first: a freed slot may be claimed again at once.
        let gone = |tag: &SlotTag| ProcessSlot::from_tag(tag).is_some_and(|s| exited(id(&s)));
        let mut named = BTreeMap::new();
        for (index, tag) in tags.processes().claimed() {
            if gone(&tag) {
                named.insert(index, name_of(ebpf, index)?);
            }
        }
        let taken = tags.process_io.take_where(tags.processes(), &gone)?;
        let live = tags.process_io.read(tags.processes())?;
        for (index, tag, _) in &live {
            if tag.is_complete() {
                named.insert(*index, name_of(ebpf, *index)?);
            }
        }
        let last = taken.into_iter().map(|slot| (slot, true));
        Ok(last
            .chain(live.into_iter().map(|slot| (slot, false)))
            .filter_map(|((index, tag, total), exited)| {
                let slot = ProcessSlot::from_tag(&tag)?;
                let mut counts = IoCounts::default();
                counts.add(
                    slot.key.direction,
                    slot.key.protocol,
                    total.bytes,
                    total.calls,
                );
                Some(ProcessIo {
                    id: id(&slot),
                    name: named.get(&index).cloned().unwrap_or_default(),
                    cgroup_id: slot.cgroup_id,
                    netns: slot.netns,
                    counts,
                    exited,
                })
            })
            .collect())
    }
}

fn id(slot: &ProcessSlot) -> ProcessId {
    ProcessId {
        pid: slot.key.tgid,
        start_ns: slot.start_boottime_ns,
    }
}

/// The name of the process that claimed slot `index`.
fn name_of(ebpf: &aya::Ebpf, index: u32) -> anyhow::Result<String> {
    let names: Array<&MapData, ProcessName> = Array::try_from(slots::map(ebpf, processes::NAMES)?)?;
    let name = names.get(&index, 0)?;
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}
