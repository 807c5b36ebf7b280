//! Who uses the network: socket I/O by process and by cgroup, and the ledger that keeps their
//! counters exact and bounded from one poll to the next. No I/O here.
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// Directions and protocols of socket I/O, in the order of [`IoCounts`]' entries.
pub const DIRECTIONS: [&str; 2] = ["tx", "rx"];
pub const PROTOCOLS: [&str; 3] = ["tcp", "udp", "other"];
const COMBINATIONS: usize = DIRECTIONS.len() * PROTOCOLS.len();

/// Bytes moved and calls that moved any, by direction and protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounts {
    bytes: [u64; COMBINATIONS],
    calls: [u64; COMBINATIONS],
}

impl IoCounts {
    fn index(direction: u8, protocol: u8) -> usize {
        (direction as usize % DIRECTIONS.len()) * PROTOCOLS.len()
            + (protocol as usize).min(PROTOCOLS.len() - 1)
    }

    /// Adds `bytes` in `calls` calls; `direction` and `protocol` are the kernel's indices
    /// (`IO_TX`/`IO_RX`, `IO_TCP`/`IO_UDP`/`IO_OTHER`).
    pub fn add(&mut self, direction: u8, protocol: u8, bytes: u64, calls: u64) {
        let index = Self::index(direction, protocol);
        self.bytes[index] += bytes;
        self.calls[index] += calls;
    }

    pub fn add_all(&mut self, other: &IoCounts) {
        for index in 0..COMBINATIONS {
            self.bytes[index] += other.bytes[index];
            self.calls[index] += other.calls[index];
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.bytes.iter().sum()
    }

    /// (direction, protocol, bytes, calls) of every combination that moved data.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &'static str, u64, u64)> + '_ {
        self.moved().map(|index| {
            let (direction, protocol) = Self::names(index);
            (direction, protocol, self.bytes[index], self.calls[index])
        })
    }

    /// The entries with their rates of bytes per second since `earlier`, `seconds` ago.
    pub fn with_rates(&self, earlier: Option<&IoCounts>, seconds: f64) -> Vec<IoEntry> {
        self.moved()
            .map(|index| {
                let (direction, protocol) = Self::names(index);
                IoEntry {
                    direction,
                    protocol,
                    bytes: self.bytes[index],
                    calls: self.calls[index],
                    bytes_per_second: earlier.filter(|_| seconds > 0.0).map(|earlier| {
                        self.bytes[index].saturating_sub(earlier.bytes[index]) as f64 / seconds
                    }),
                }
            })
            .collect()
    }

    /// Indices of the combinations that moved data.
    fn moved(&self) -> impl Iterator<Item = usize> + '_ {
        (0..COMBINATIONS).filter(|index| self.calls[*index] > 0)
    }

    fn names(index: usize) -> (&'static str, &'static str) {
        (
            DIRECTIONS[index / PROTOCOLS.len()],
            PROTOCOLS[index % PROTOCOLS.len()],
        )
    }
}

/// One direction and protocol of a process's or cgroup's socket I/O.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IoEntry {
    pub direction: &'static str,
    pub protocol: &'static str,
    pub bytes: u64,
    pub calls: u64,
    /// Since the previous poll; `None` on the first poll that saw it.
    pub bytes_per_second: Option<f64>,
}

/// A process, as the kernel tells it apart: its id and when it started (ids are given again).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId {
    pub pid: u32,
    /// `start_boottime` in ns since boot.
    pub start_ns: u64,
}

/// A process's socket I/O in one cgroup, as one poll read it from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessIo {
    pub id: ProcessId,
    /// The name the kernel keeps (`comm`).
    pub name: String,
    /// cgroup v2 id (the inode number of its directory).
    pub cgroup_id: u64,
    /// Namespace inode of the first socket it used.
    pub netns: u32,
    pub counts: IoCounts,
    /// Whether the process has exited: these are its last counts, and it is forgotten.
    pub exited: bool,
}

/// Socket I/O of the host's processes as the outputs show it: the busiest processes each on
/// their own, the rest together, and every cgroup.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessTraffic {
    /// Processes with series of their own, busiest first.
    pub processes: Vec<ProcessEntry>,
    /// Everything else: processes without series of their own (and those that have exited),
    /// so that the sum over all series is the host's total.
    #[serde(skip)]
    pub other: IoCounts,
    /// Processes running now whose I/O is in `other`.
    pub other_processes: usize,
    pub cgroups: Vec<CgroupEntry>,
}

/// A process with series of its own.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessEntry {
    pub pid: u32,
    pub name: String,
    /// The cgroup it moved most data from, as `/proc/<pid>/cgroup` writes it.
    pub cgroup: String,
    pub cgroup_id: u64,
    /// The systemd unit or container its cgroup belongs to, where the path tells.
    pub service: Option<String>,
    pub netns: u32,
    /// Filled by the collector from `/proc`.
    pub user: Option<String>,
    /// Filled only where the configuration allows it.
    pub command_line: Option<String>,
    #[serde(skip)]
    pub counts: IoCounts,
    pub io: Vec<IoEntry>,
}

/// One cgroup's socket I/O, its exited processes' included.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CgroupEntry {
    pub id: u64,
    pub path: String,
    #[serde(skip)]
    pub counts: IoCounts,
    pub io: Vec<IoEntry>,
}

/// The systemd unit or container a cgroup path belongs to: its last component that names a
/// service, a scope or a container (`docker-<id>.scope` gives the container id's first 12
/// characters).
pub fn service_of(path: &str) -> Option<String> {
    path.rsplit('/').find_map(|part| {
        let unit = part
            .strip_suffix(".service")
            .or_else(|| part.strip_suffix(".scope"))?;
        for runtime in ["docker-", "cri-containerd-", "crio-", "libpod-"] {
            if let Some(id) = unit.strip_prefix(runtime) {
                return Some(id.chars().take(12).collect());
            }
        }
        Some(part.to_string())
    })
}

/// Keeps the counters of processes and cgroups exact and monotonic while processes come and
/// go and only `top` of them have series of their own. A process that has moved data gets a
/// series when there is room, or, when it moved some since the last poll, in place of a
/// process with a series that moved nothing; it keeps it while it is busy. `other` is everything else, and never goes down: what left
/// the kernel's table is kept here, and a process that gets a series leaves in `other` what
/// `other` had already shown of it.
#[derive(Debug, Default)]
pub struct ProcessLedger {
    /// Processes with series, and what `other` had shown of them when they got it.
    selected: BTreeMap<ProcessId, IoCounts>,
    /// Exited processes' last counts.
    retired: IoCounts,
    retired_by_cgroup: BTreeMap<u64, IoCounts>,
    /// Each live process's counts at the previous poll, and that poll's time.
    previous: BTreeMap<ProcessId, IoCounts>,
    previous_cgroups: BTreeMap<u64, IoCounts>,
    previous_seconds: f64,
}

impl ProcessLedger {
    /// Takes one poll's reading (`now` in seconds on a monotonic clock); `cgroup_path` names
    /// a cgroup id, `None` when the cgroup is gone.
    pub fn update(
        &mut self,
        reading: Vec<ProcessIo>,
        top: usize,
        now: f64,
        cgroup_path: &dyn Fn(u64) -> Option<String>,
    ) -> ProcessTraffic {
        let seconds = now - self.previous_seconds;
        let mut live: BTreeMap<ProcessId, LiveProcess> = BTreeMap::new();
        let mut cgroups: BTreeMap<u64, IoCounts> = self.retired_by_cgroup.clone();
        for io in reading {
            cgroups.entry(io.cgroup_id).or_default().add_all(&io.counts);
            if io.exited {
                self.retired.add_all(&io.counts);
                self.retired_by_cgroup
                    .entry(io.cgroup_id)
                    .or_default()
                    .add_all(&io.counts);
                continue;
            }
            let process = live.entry(io.id).or_insert_with(|| LiveProcess {
                name: io.name.clone(),
                netns: io.netns,
                counts: IoCounts::default(),
                by_cgroup: BTreeMap::new(),
            });
            process.counts.add_all(&io.counts);
            *process.by_cgroup.entry(io.cgroup_id).or_default() += io.counts.total_bytes();
        }
        // Exited processes' entries are final: a process whose every slot is gone is no
        // longer live, and one with a series gives it up.
        self.selected.retain(|id, _| live.contains_key(id));
        self.select(&live, top);

        let mut traffic = ProcessTraffic {
            other: self.retired,
            ..ProcessTraffic::default()
        };
        for (id, process) in &live {
            match self.selected.get(id) {
                Some(baseline) => traffic.other.add_all(baseline),
                None => {
                    traffic.other.add_all(&process.counts);
                    traffic.other_processes += 1;
                }
            }
        }
        for id in self.selected.keys() {
            let Some(process) = live.get(id) else {
                continue;
            };
            let cgroup_id = process
                .by_cgroup
                .iter()
                .max_by_key(|(_, bytes)| **bytes)
                .map_or(0, |(id, _)| *id);
            let cgroup = cgroup_path(cgroup_id).unwrap_or_default();
            traffic.processes.push(ProcessEntry {
                pid: id.pid,
                name: process.name.clone(),
                service: service_of(&cgroup),
                cgroup,
                cgroup_id,
                netns: process.netns,
                user: None,
                command_line: None,
                counts: process.counts,
                io: process.counts.with_rates(self.previous.get(id), seconds),
            });
        }
        traffic
            .processes
            .sort_by_key(|p| std::cmp::Reverse(p.counts.total_bytes()));
        // A cgroup that is gone keeps no entry once none of its processes is in the table.
        let in_table: BTreeSet<u64> = live
            .values()
            .flat_map(|p| p.by_cgroup.keys().copied())
            .collect();
        for (id, counts) in cgroups {
            match cgroup_path(id) {
                Some(path) => traffic.cgroups.push(CgroupEntry {
                    id,
                    path,
                    counts,
                    io: counts.with_rates(self.previous_cgroups.get(&id), seconds),
                }),
                None if !in_table.contains(&id) => {
                    self.retired_by_cgroup.remove(&id);
                }
                None => {}
            }
        }
        self.previous = live.iter().map(|(id, p)| (*id, p.counts)).collect();
        self.previous_cgroups = traffic.cgroups.iter().map(|c| (c.id, c.counts)).collect();
        self.previous_seconds = now;
        traffic
    }

    /// Gives series to the busiest processes without one while there is room, and to those
    /// that moved data since the last poll in place of processes with series that did not.
    fn select(&mut self, live: &BTreeMap<ProcessId, LiveProcess>, top: usize) {
        let moved = |id: &ProcessId, process: &LiveProcess| {
            let before = self.previous.get(id).map_or(0, IoCounts::total_bytes);
            process.counts.total_bytes().saturating_sub(before)
        };
        let mut idle: Vec<ProcessId> = self
            .selected
            .keys()
            .filter(|id| live.get(id).is_some_and(|p| moved(id, p) == 0))
            .copied()
            .collect();
        // The busiest since the last poll first, then those that moved the most in all.
        let mut candidates: Vec<(u64, u64, ProcessId)> = live
            .iter()
            .filter(|(id, _)| !self.selected.contains_key(id))
            .map(|(id, process)| (moved(id, process), process.counts.total_bytes(), *id))
            .filter(|(_, total, _)| *total > 0)
            .collect();
        candidates.sort_by(|a, b| b.cmp(a));
        // A lowered limit: the idlest give their series up first.
        while self.selected.len() > top {
            let Some(id) = idle
                .pop()
                .or_else(|| self.selected.keys().next_back().copied())
            else {
                break;
            };
            self.selected.remove(&id);
        }
        for (moved, _, id) in candidates {
            if self.selected.len() >= top {
                // Only a busy process takes the place of an idle one.
                let Some(idle) = idle.pop().filter(|_| moved > 0) else {
                    break;
                };
                self.selected.remove(&idle);
            }
            // What `other` has shown of the process so far stays there.
            let shown = self.previous.get(&id).copied().unwrap_or_default();
            self.selected.insert(id, shown);
        }
    }
}

/// A process that has not exited, summed over its cgroups.
struct LiveProcess {
    name: String,
    netns: u32,
    counts: IoCounts,
    /// Bytes it moved from each cgroup.
    by_cgroup: BTreeMap<u64, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(pid: u32, cgroup_id: u64, tx_tcp: u64, exited: bool) -> ProcessIo {
        let mut counts = IoCounts::default();
        counts.add(0, 0, tx_tcp, 1);
        ProcessIo {
            id: ProcessId {
                pid,
                start_ns: u64::from(pid) * 1000,
            },
            name: format!("p{pid}"),
            cgroup_id,
            netns: 1,
            counts,
            exited,
        }
    }

    fn path(id: u64) -> Option<String> {
        Some(format!("/c{id}"))
    }

    fn other_bytes(t: &ProcessTraffic) -> u64 {
        t.other.total_bytes()
    }

    #[test]
    fn the_busiest_get_series_and_the_rest_is_other() {
        let mut ledger = ProcessLedger::default();
        let t = ledger.update(
            vec![
                io(1, 10, 100, false),
                io(2, 10, 500, false),
                io(3, 20, 50, false),
            ],
            2,
            1.0,
            &path,
        );
        let pids: Vec<u32> = t.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![2, 1]);
        assert_eq!(other_bytes(&t), 50);
        assert_eq!(t.other_processes, 1);
        let cgroups: Vec<(String, u64)> = t
            .cgroups
            .iter()
            .map(|c| (c.path.clone(), c.counts.total_bytes()))
            .collect();
        assert_eq!(cgroups, vec![("/c10".into(), 600), ("/c20".into(), 50)]);
    }

    #[test]
    fn other_and_cgroups_never_go_down_as_processes_come_and_go() {
        let mut ledger = ProcessLedger::default();
        let mut last_other = 0;
        let mut last_cgroup = 0;
        // Each poll: process `round` is busy, the one before has exited with its last counts.
        for round in 1..50u32 {
            let mut reading = vec![io(round, 10, u64::from(round) * 10, false)];
            if round > 1 {
                reading.push(io(round - 1, 10, u64::from(round - 1) * 10 + 3, true));
            }
            let t = ledger.update(reading, 1, f64::from(round), &path);
            assert!(other_bytes(&t) >= last_other, "round {round}");
            let cgroup = t.cgroups[0].counts.total_bytes();
            assert!(cgroup >= last_cgroup, "round {round}");
            last_other = other_bytes(&t);
            last_cgroup = cgroup;
            // The cgroup is exact: every byte of every process, exited or not.
            let expected: u64 =
                (1..round).map(|r| u64::from(r) * 10 + 3).sum::<u64>() + u64::from(round) * 10;
            assert_eq!(cgroup, expected, "round {round}");
            assert!(t.processes.len() <= 1);
        }
    }

    #[test]
    fn an_idle_process_gives_its_series_to_a_busy_one_and_other_does_not_go_down() {
        let mut ledger = ProcessLedger::default();
        let t = ledger.update(vec![io(1, 10, 100, false)], 1, 1.0, &path);
        assert_eq!(t.processes[0].pid, 1);
        assert_eq!(other_bytes(&t), 0);
        // Process 1 idle, process 2 busy: 2 gets the series, 1's count goes to other.
        let t = ledger.update(
            vec![io(1, 10, 100, false), io(2, 10, 40, false)],
            1,
            2.0,
            &path,
        );
        assert_eq!(t.processes[0].pid, 2);
        assert_eq!(t.processes[0].counts.total_bytes(), 40);
        assert_eq!(other_bytes(&t), 100);
        // 2 keeps its series while busy. 1 is busy again, but 2 is not idle.
        let t = ledger.update(
            vec![io(1, 10, 130, false), io(2, 10, 90, false)],
            1,
            3.0,
            &path,
        );
        assert_eq!(t.processes[0].pid, 2);
        assert_eq!(other_bytes(&t), 130);
        let rate = t.processes[0].io[0].bytes_per_second;
        assert_eq!(rate, Some(50.0));
        // 2 idle, 1 busy: 1 gets the series back, and other keeps the 130 it showed of 1.
        let t = ledger.update(
            vec![io(1, 10, 150, false), io(2, 10, 90, false)],
            1,
            4.0,
            &path,
        );
        assert_eq!(t.processes[0].pid, 1);
        assert_eq!(other_bytes(&t), 130 + 90);
    }

    #[test]
    fn a_gone_cgroup_is_forgotten_once_nothing_counts_in_it() {
        let mut ledger = ProcessLedger::default();
        let gone = |id: u64| (id != 20).then(|| format!("/c{id}"));
        let t = ledger.update(vec![io(1, 20, 100, true)], 5, 1.0, &gone);
        assert!(t.cgroups.is_empty());
        assert!(ledger.retired_by_cgroup.is_empty());
        assert_eq!(other_bytes(&t), 100);
    }

    #[test]
    fn services_and_containers_are_named_from_the_path() {
        assert_eq!(
            service_of("/system.slice/ssh.service").as_deref(),
            Some("ssh.service")
        );
        assert_eq!(
            service_of("/system.slice/docker-0123456789abcdef.scope").as_deref(),
            Some("0123456789ab")
        );
        assert_eq!(
            service_of("/user.slice/user-1000.slice/session-3.scope/app").as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(service_of("/netmon-test"), None);
    }
}
