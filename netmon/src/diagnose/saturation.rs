//! Links carrying close to their capacity, and the processes moving the most data in the
//! direction that is full.
use super::{Evidence, Finding, evidence, graded};
use crate::{config::Thresholds, model::Snapshot, rates::InterfaceRates};

/// Processes quoted as evidence, the busiest first.
const QUOTED_PROCESSES: usize = 3;

pub(super) fn saturation(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    rates: &InterfaceRates,
    newest: &Snapshot,
    window_seconds: f64,
) {
    let threshold = thresholds.saturation_percent;
    for (direction, r) in [("rx", &rates.rx), ("tx", &rates.tx)] {
        let Some(utilization) = r.utilization_percent else {
            continue;
        };
        let Some(severity) = graded(utilization, threshold, threshold.max(95.0)) else {
            continue;
        };
        let mut evidence_list = vec![
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
        ];
        evidence_list.extend(busiest_processes(newest, direction));
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
            evidence: evidence_list,
            next_steps: vec![
                "Find who sends: the processes quoted here, /api/v1/processes and \
                 /api/v1/cgroups, or flow data from the network."
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

/// The processes of the interface's namespace that moved the most data in `direction` since
/// the previous poll, as evidence.
fn busiest_processes(newest: &Snapshot, direction: &str) -> Vec<Evidence> {
    let mut busiest: Vec<(f64, String)> = newest
        .processes
        .processes
        .iter()
        .filter(|p| p.netns == newest.netns)
        .map(|p| {
            let rate: f64 =
                p.io.iter()
                    .filter(|io| io.direction == direction)
                    .filter_map(|io| io.bytes_per_second)
                    .sum();
            (rate, format!("process {} (pid {})", p.name, p.pid))
        })
        .filter(|(rate, _)| *rate > 0.0)
        .collect();
    busiest.sort_by(|a, b| b.0.total_cmp(&a.0));
    busiest
        .into_iter()
        .take(QUOTED_PROCESSES)
        .map(|(rate, process)| {
            evidence(
                format!("{process} {direction}_bytes_per_second"),
                rate,
                "B/s",
            )
        })
        .collect()
}
