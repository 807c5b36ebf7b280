//! Listeners whose accept queues overflow: connections the kernel completed that the
//! application did not accept in time are dropped (`ListenOverflows`). By namespace, naming
//! the listeners at their limit and their processes, with the drops the kernel gave the
//! reason `TCP_LISTEN_OVERFLOW`.
use super::{Baselines, Finding, Severity, evidence, reason_drops};
use crate::{
    config::Thresholds,
    model::{
        Snapshot,
        pressure::{ListenQueue, NamespacePressure},
    },
};

const OVERFLOWS: &str = "TcpExt_ListenOverflows";
const DROP_REASON: &str = "TCP_LISTEN_OVERFLOW";

pub(super) fn accept_queues(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    ((oldest, newest), baselines): ((&Snapshot, &Snapshot), &Baselines),
    window_seconds: f64,
) {
    for namespace in &newest.pressure.namespaces {
        let overflows = |n: &NamespacePressure| n.counters.get(OVERFLOWS).copied().unwrap_or(0);
        let before = baselines.of_namespace(namespace.netns);
        let overflowed = overflows(namespace).saturating_sub(before.map_or(u64::MAX, overflows));
        if overflowed < thresholds.listen_overflows.max(1) {
            continue;
        }
        let full: Vec<&ListenQueue> = namespace.listeners.iter().filter(|l| l.is_full()).collect();
        let ends = (oldest, newest);
        let dropped = reason_drops(ends, DROP_REASON, Some(namespace.netns), None);
        findings.push(finding(
            namespace.netns,
            (overflowed, dropped),
            &full,
            window_seconds,
        ));
    }
}

/// The finding of namespace `netns` whose listeners `overflowed` (and the kernel counted
/// `dropped` drops with the reason), `full` the listeners at their limit now.
fn finding(
    netns: u32,
    (overflowed, dropped): (u64, u64),
    full: &[&ListenQueue],
    window_seconds: f64,
) -> Finding {
    let named: Vec<String> = full.iter().map(|l| listener(l)).collect();
    let cause = if named.is_empty() {
        String::new()
    } else {
        format!(": full accept queue of {}", named.join("; "))
    };
    let mut evidence = vec![
        evidence("listen_overflows", overflowed as f64, "drops"),
        evidence(DROP_REASON, dropped as f64, "packets"),
    ];
    for queue in full {
        let name = format!("{}:{}", queue.address, queue.port);
        evidence.push(super::evidence(
            format!("{name} queue"),
            queue.length as f64,
            "connections",
        ));
        evidence.push(super::evidence(
            format!("{name} limit"),
            queue.limit as f64,
            "connections",
        ));
    }
    Finding {
        id: "accept_queue_overflow",
        severity: if full.is_empty() {
            Severity::Warning
        } else {
            Severity::Critical
        },
        subject: format!("netns {netns}"),
        summary: format!(
            "netns {netns}: {overflowed} drops at full accept queues in {window_seconds:.0} \
             s{cause}"
        ),
        window_seconds,
        evidence,
        next_steps: vec![
            "The application accepts connections slower than they come: look at what blocks \
             its accept loop (threads, CPU, a slow dependency), or raise its listen backlog \
             (and net.core.somaxconn, which caps it)."
                .to_string(),
        ],
    }
}

/// A listener as a finding names it: its address, its queue against its limit, and the
/// processes that hold it where they were found.
fn listener(queue: &ListenQueue) -> String {
    let processes: Vec<String> = queue
        .processes
        .iter()
        .map(|p| format!("{} (pid {})", p.name, p.pid))
        .collect();
    let held = if processes.is_empty() {
        String::new()
    } else {
        format!(", held by {}", processes.join(", "))
    };
    format!(
        "{}:{} ({} of {}){held}",
        queue.address, queue.port, queue.length, queue.limit
    )
}
