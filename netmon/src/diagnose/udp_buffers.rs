//! UDP datagrams dropped at full receive buffers: an application reads slower than they
//! come. By namespace (`Udp: RcvbufErrors`), with the drops the kernel gave the reason
//! `SOCKET_RCVBUFF`.
use super::{Baselines, Finding, evidence, graded, reason_drops};
use crate::{
    config::Thresholds,
    model::{Snapshot, pressure::NamespacePressure},
};

const ERRORS: &str = "Udp_RcvbufErrors";

pub(super) fn udp_buffers(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    ((oldest, newest), baselines): ((&Snapshot, &Snapshot), &Baselines),
    window_seconds: f64,
) {
    for namespace in &newest.pressure.namespaces {
        let errors = |n: &NamespacePressure| n.counters.get(ERRORS).copied().unwrap_or(0);
        let before = baselines
            .of_namespace(namespace.netns)
            .map_or(u64::MAX, errors);
        let dropped = errors(namespace).saturating_sub(before);
        let threshold = thresholds.udp_receive_buffer_errors.max(1) as f64;
        let Some(severity) = graded(dropped as f64, threshold, 100.0 * threshold) else {
            continue;
        };
        let netns = namespace.netns;
        let ends = (oldest, newest);
        let reason = reason_drops(ends, "SOCKET_RCVBUFF", Some(netns), None);
        findings.push(Finding {
            id: "udp_receive_buffer_errors",
            severity,
            subject: format!("netns {netns} udp"),
            summary: format!(
                "netns {netns}: {dropped} UDP datagrams dropped at full receive buffers in \
                 {window_seconds:.0} s"
            ),
            window_seconds,
            evidence: vec![
                evidence(ERRORS, dropped as f64, "datagrams"),
                evidence("SOCKET_RCVBUFF", reason as f64, "packets"),
            ],
            next_steps: vec![
                "An application reads its UDP socket slower than datagrams come: find it \
                 (/api/v1/drops/recent names the port and process), make it read faster, or \
                 give the socket a larger buffer (SO_RCVBUF, net.core.rmem_max)."
                    .to_string(),
            ],
        });
    }
}
