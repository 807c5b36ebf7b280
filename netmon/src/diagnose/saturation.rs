//! Links carrying close to their capacity.
use super::{Finding, evidence, graded};
use crate::{config::Config, rates::InterfaceRates};

pub(super) fn saturation(
    findings: &mut Vec<Finding>,
    config: &Config,
    rates: &InterfaceRates,
    window_seconds: f64,
) {
    let threshold = config.thresholds.saturation_percent;
    for (direction, r) in [("rx", &rates.rx), ("tx", &rates.tx)] {
        let Some(utilization) = r.utilization_percent else {
            continue;
        };
        let Some(severity) = graded(utilization, threshold, threshold.max(95.0)) else {
            continue;
        };
        findings.push(Finding {
            id: "bandwidth_saturation",
            severity,
            subject: rates.interface.clone(),
            summary: format!(
                "{}: {direction} at {utilization:.0} % of {} Mbit/s over {window_seconds:.0} s",
                rates.interface,
                rates.capacity_mbps.unwrap_or_default()
            ),
            window_seconds,
            evidence: vec![
                evidence(format!("{direction}_utilization"), utilization, "percent"),
                evidence(
                    format!("{direction}_bits_per_second"),
                    r.bytes_per_second * 8.0,
                    "bit/s",
                ),
                evidence(
                    "capacity_bits_per_second",
                    rates.capacity_mbps.unwrap_or_default() as f64 * 1e6,
                    "bit/s",
                ),
            ],
            next_steps: vec![
                "Find who sends: connections and listening sockets of the host, or flow data \
                 from the network."
                    .to_string(),
                "Check that the capacity is right (link speed, or link_capacity_mbps for \
                 virtual links)."
                    .to_string(),
                "Expect drops next: watch the packet-loss findings and queue drops; shape or \
                 move traffic, or add capacity."
                    .to_string(),
            ],
        });
    }
}
