//! Ephemeral ports running out: connections can no longer be opened.
use super::{Finding, evidence, graded};
use crate::{config::Thresholds, model::Snapshot};

pub(super) fn ephemeral_ports(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    newest: &Snapshot,
) {
    let ephemeral = newest.ephemeral_ports;
    if ephemeral.range_size() > 0 {
        let used = ephemeral.in_use as f64 / ephemeral.range_size() as f64 * 100.0;
        let threshold = thresholds.ephemeral_ports_percent;
        if let Some(severity) = graded(used, threshold, threshold.max(95.0)) {
            findings.push(Finding {
                id: "ephemeral_port_exhaustion",
                severity,
                subject: "ephemeral ports".to_string(),
                summary: format!(
                    "{} of {} ephemeral ports in use ({used:.0} %)",
                    ephemeral.in_use,
                    ephemeral.range_size()
                ),
                window_seconds: 0.0,
                evidence: vec![
                    evidence("in_use", ephemeral.in_use as f64, "ports"),
                    evidence("range_size", ephemeral.range_size() as f64, "ports"),
                ],
                next_steps: vec![
                    "Reuse connections (keep-alive, pools) instead of opening one per request."
                        .to_string(),
                    "Widen net.ipv4.ip_local_port_range, and look at TIME_WAIT counts.".to_string(),
                ],
            });
        }
    }
}
