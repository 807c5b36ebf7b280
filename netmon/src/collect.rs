//! The poll: one pass over every collector, producing a Snapshot.
use std::{
    collections::{BTreeMap, HashMap},
    os::unix::fs::MetadataExt as _,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    host::interfaces,
    model::{CollectorRun, Snapshot},
    probes::{AttachMethod, Hook, Probes},
};

/// Inode of the agent's own network namespace.
pub fn own_netns() -> u32 {
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino() as u32)
        .unwrap_or(0)
}

/// Owns the kernel programs and collects snapshots. Dropping it detaches the programs.
pub struct Poller {
    probes: Probes,
    own_netns: u32,
    started: Instant,
}

impl Poller {
    pub fn new(forced: &BTreeMap<Hook, AttachMethod>) -> Self {
        Self {
            probes: Probes::start(forced),
            own_netns: own_netns(),
            started: Instant::now(),
        }
    }

    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// Runs every collector once. A failing collector is reported in the snapshot and the
    /// others still run.
    pub fn poll(&mut self) -> Snapshot {
        let begin = Instant::now();
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut snapshot = Snapshot {
            timestamp_ms,
            monotonic_seconds: begin.duration_since(self.started).as_secs_f64(),
            probes: self.probes.status().to_vec(),
            ..Default::default()
        };

        if let Some(interfaces) = run(&mut snapshot.collectors, "interfaces", interfaces::read_all)
        {
            snapshot.interfaces = interfaces;
        }
        if let Some(kernel) = run(&mut snapshot.collectors, "probes", || self.probes.read()) {
            snapshot.kernel = kernel;
        }
        self.name_interfaces(&mut snapshot);
        snapshot.poll_duration_seconds = begin.elapsed().as_secs_f64();
        snapshot
    }

    /// Gives the kernel counters their interface names.
    fn name_interfaces(&self, snapshot: &mut Snapshot) {
        let names: HashMap<(u32, u32), &str> = snapshot
            .interfaces
            .iter()
            .map(|i| ((self.own_netns, i.ifindex), i.name.as_str()))
            .collect();
        let name = |netns, ifindex| names.get(&(netns, ifindex)).map(|n| n.to_string());
        for traffic in &mut snapshot.kernel.traffic {
            traffic.interface = name(traffic.netns, traffic.ifindex).unwrap_or_default();
        }
        for drop in &mut snapshot.kernel.drops {
            drop.interface = name(drop.netns, drop.ifindex).unwrap_or_default();
        }
    }
}

fn run<T>(
    runs: &mut Vec<CollectorRun>,
    collector: &'static str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> Option<T> {
    let begin = Instant::now();
    let result = f();
    let duration_seconds = begin.elapsed().as_secs_f64();
    match result {
        Ok(value) => {
            runs.push(CollectorRun {
                collector,
                success: true,
                duration_seconds,
                error: None,
            });
            Some(value)
        }
        Err(err) => {
            tracing::warn!(collector, "collector failed: {err:#}");
            runs.push(CollectorRun {
                collector,
                success: false,
                duration_seconds,
                error: Some(format!("{err:#}")),
            });
            None
        }
    }
}
