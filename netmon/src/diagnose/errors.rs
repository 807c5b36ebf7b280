//! Interface errors and drops above their thresholds, and errors that keep coming.
use super::{Finding, evidence, graded};
use crate::{config::Thresholds, model::Snapshot, rates::InterfaceRates};

pub(super) fn error_rates(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    rates: &InterfaceRates,
    snapshots: &[&std::sync::Arc<Snapshot>],
    window_seconds: f64,
) {
    let threshold = thresholds.error_rate_percent;
    for (direction, r) in [("rx", &rates.rx), ("tx", &rates.tx)] {
        let Some(severity) = graded(r.error_rate_percent, threshold, threshold * 5.0) else {
            continue;
        };
        let newest = snapshots
            .last()
            .and_then(|s| s.interfaces.iter().find(|i| i.name == rates.interface));
        let mut next_steps = Vec::new();
        if let Some(interface) = newest {
            if interface.duplex.as_deref() == Some("half") {
                next_steps.push(
                    "The link runs half duplex: collisions show as errors. Check autonegotiation \
                     on both ends and set both to full duplex."
                        .to_string(),
                );
            }
            if let Some(speed) = interface.speed_mbps.filter(|s| *s < 1000) {
                next_steps.push(format!(
                    "The link negotiated {speed} Mbit/s, lower than usual: check the cable, the \
                     peer port and its speed setting."
                ));
            }
        }
        // Errors in most intervals of the window: a steady physical fault; in a few: bursts.
        let errors = |s: &Snapshot| {
            s.interfaces
                .iter()
                .find(|i| i.name == rates.interface)
                .map(|i| {
                    if direction == "rx" {
                        i.counters.rx_errors
                    } else {
                        i.counters.tx_errors
                    }
                })
        };
        let steps: Vec<bool> = snapshots
            .windows(2)
            .filter_map(|pair| Some(errors(pair[1])? > errors(pair[0])?))
            .collect();
        let growing = steps.iter().filter(|grew| **grew).count();
        if !steps.is_empty() && growing * 10 >= steps.len() * 8 {
            next_steps.push(format!(
                "Errors grew in {growing} of {} intervals: a steady fault, most likely physical \
                 (cable, optics, port). Swap the cable or move to another port.",
                steps.len()
            ));
        } else {
            next_steps.push(format!(
                "Errors grew in {growing} of {} intervals: they come in bursts. Correlate with \
                 traffic peaks and with events on the peer.",
                steps.len()
            ));
        }
        next_steps.push(format!(
            "Look at the driver's own counters: ethtool -S {}.",
            rates.interface
        ));
        findings.push(Finding {
            id: "high_error_rate",
            severity,
            subject: rates.interface.clone(),
            summary: format!(
                "{}: {:.2} % of {direction} packets are errors over {window_seconds:.0} s",
                rates.interface, r.error_rate_percent
            ),
            window_seconds,
            evidence: vec![
                evidence(
                    format!("{direction}_error_rate"),
                    r.error_rate_percent,
                    "percent",
                ),
                evidence(
                    format!("{direction}_errors_per_second"),
                    r.errors_per_second,
                    "1/s",
                ),
                evidence(
                    format!("{direction}_packets_per_second"),
                    r.packets_per_second,
                    "1/s",
                ),
            ],
            next_steps,
        });
    }
}
