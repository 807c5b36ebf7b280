//! Queueing disciplines that drop: a queue full or over its rate limit, naming the
//! interface and the discipline, with the drops the kernel gave the reason `QDISC_DROP`.
use super::{Baselines, Finding, Severity, evidence, graded, reason_drops};
use crate::{
    config::Thresholds,
    model::{Snapshot, pressure::Qdisc},
};

pub(super) fn qdisc_drops(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    ((oldest, newest), baselines): ((&Snapshot, &Snapshot), &Baselines),
    window_seconds: f64,
) {
    for namespace in &newest.pressure.namespaces {
        let before = baselines.of_namespace(namespace.netns);
        for qdisc in &namespace.qdiscs {
            let same = |q: &&Qdisc| q.ifindex == qdisc.ifindex && q.handle == qdisc.handle;
            // A discipline added in the window drops from nothing.
            let earlier = before.map(|n| n.qdiscs.iter().find(same).map_or(0, |q| q.drops));
            let dropped = qdisc.drops.saturating_sub(earlier.unwrap_or(u64::MAX));
            let threshold = thresholds.qdisc_drops.max(1) as f64;
            let Some(severity) = graded(dropped as f64, threshold, 100.0 * threshold) else {
                continue;
            };
            let ends = (oldest, newest);
            let netns = Some(namespace.netns);
            let reason = reason_drops(ends, "QDISC_DROP", netns, Some(&qdisc.interface));
            let counts = (dropped, reason);
            findings.push(finding(
                namespace.netns,
                qdisc,
                counts,
                (severity, window_seconds),
            ));
        }
    }
}

/// The finding of `qdisc` in namespace `netns` that `dropped` packets in the window (the
/// kernel counted `reason` drops with the reason on its interface).
fn finding(
    netns: u32,
    qdisc: &Qdisc,
    (dropped, reason): (u64, u64),
    (severity, window_seconds): (Severity, f64),
) -> Finding {
    let name = format!("{} {} {}", qdisc.interface, qdisc.kind, qdisc.handle);
    Finding {
        id: "qdisc_drops",
        severity,
        subject: format!("netns {netns} {name}"),
        summary: format!(
            "netns {netns}: queueing discipline {name} dropped {dropped} packets in \
             {window_seconds:.0} s ({} over its limit, {} waiting now)",
            qdisc.overlimits, qdisc.backlog_packets
        ),
        window_seconds,
        evidence: vec![
            evidence("drops", dropped as f64, "packets"),
            evidence("overlimits", qdisc.overlimits as f64, "packets"),
            evidence("backlog", qdisc.backlog_packets as f64, "packets"),
            evidence("QDISC_DROP", reason as f64, "packets"),
        ],
        next_steps: vec![
            "The interface is asked to send more than the discipline lets through: look at \
             its rate and limit (tc -s qdisc show dev), the traffic's senders (/api/v1/processes), \
             or the link's capacity."
                .to_string(),
        ],
    }
}
