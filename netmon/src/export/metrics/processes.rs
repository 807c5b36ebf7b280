//! Families of socket I/O by process and by cgroup (`Snapshot::processes`).
use prometheus::proto::{MetricFamily, MetricType};

use crate::{
    export::metrics::Family,
    model::{Snapshot, processes::IoCounts},
};

/// The name of the series that sums the processes without series of their own.
const OTHER: &str = "other";

pub(super) fn families(snapshot: &Snapshot, out: &mut Vec<MetricFamily>) {
    let traffic = &snapshot.processes;
    let mut bytes = Family::new(
        "netmon_process_network_bytes_total",
        "Bytes processes moved through IP sockets (the return values of their send and \
         receive calls), for the busiest processes (processes.top) by pid and name; \
         process=\"other\" sums the rest, exited processes included.",
        MetricType::COUNTER,
    );
    let mut calls = Family::new(
        "netmon_process_network_calls_total",
        "Send and receive calls on IP sockets that moved data, as netmon_process_network_bytes_total.",
        MetricType::COUNTER,
    );
    let mut sample = |labels: &[(&str, &str)], counts: &IoCounts| {
        for (direction, protocol, moved, made) in counts.entries() {
            let mut all = labels.to_vec();
            all.extend([("direction", direction), ("protocol", protocol)]);
            bytes.sample(&all, moved as f64);
            calls.sample(&all, made as f64);
        }
    };
    for process in &traffic.processes {
        let pid = process.pid.to_string();
        sample(
            &[("pid", &pid), ("process", &process.name)],
            &process.counts,
        );
    }
    sample(&[("process", OTHER)], &traffic.other);
    out.push(bytes.0);
    out.push(calls.0);

    let mut cgroups = Family::new(
        "netmon_cgroup_network_bytes_total",
        "Bytes the processes of a cgroup (v2, its path from the root) moved through IP sockets, \
         exited processes included.",
        MetricType::COUNTER,
    );
    for cgroup in &traffic.cgroups {
        for (direction, protocol, moved, _) in cgroup.counts.entries() {
            cgroups.sample(
                &[
                    ("cgroup", &cgroup.path),
                    ("direction", direction),
                    ("protocol", protocol),
                ],
                moved as f64,
            );
        }
    }
    out.push(cgroups.0);
}
