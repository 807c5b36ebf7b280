//! Connection tracking near its limit, or failing: past `nf_conntrack_max` new connections
//! are dropped (`drop`, `early_drop`, `insert_failed`), by namespace, with the drops the
//! kernel gave the reason `NETFILTER_DROP`.
use super::{Baselines, Finding, Severity, evidence, reason_drops};
use crate::{
    config::Thresholds,
    model::{Snapshot, pressure::Conntrack},
};

pub(super) fn conntrack(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    ((oldest, newest), baselines): ((&Snapshot, &Snapshot), &Baselines),
    window_seconds: f64,
) {
    for namespace in &newest.pressure.namespaces {
        let Some(now) = &namespace.conntrack else {
            continue;
        };
        let before = baselines.of_namespace(namespace.netns);
        let before = before.and_then(|n| n.conntrack.as_ref());
        let failures = |c: &Conntrack| c.insert_failed + c.drop + c.early_drop;
        let failed = failures(now).saturating_sub(before.map_or(u64::MAX, failures));
        let percent = 100.0 * now.entries as f64 / now.limit.max(1) as f64;
        if failed == 0 && percent < thresholds.conntrack_percent {
            continue;
        }
        let ends = (oldest, newest);
        let dropped = reason_drops(ends, "NETFILTER_DROP", Some(namespace.netns), None);
        let netns = namespace.netns;
        findings.push(Finding {
            id: "conntrack_full",
            severity: if failed > 0 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            subject: format!("netns {netns} conntrack"),
            summary: format!(
                "netns {netns}: connection tracking {percent:.0} % full ({} of {}), {failed} \
                 failed inserts and drops in {window_seconds:.0} s",
                now.entries, now.limit
            ),
            window_seconds,
            evidence: vec![
                evidence("entries", now.entries as f64, "entries"),
                evidence("limit", now.limit as f64, "entries"),
                evidence("failures", failed as f64, "packets"),
                evidence("NETFILTER_DROP", dropped as f64, "packets"),
            ],
            next_steps: vec![
                "Find what opens so many connections (/api/v1/tcp/peers), shorten the timeouts \
                 of idle ones (net.netfilter.nf_conntrack_tcp_timeout_*), or raise \
                 net.netfilter.nf_conntrack_max."
                    .to_string(),
            ],
        });
    }
}
