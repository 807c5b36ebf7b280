//! Connections piling up in one TCP state.
use super::{Finding, Severity, evidence};
use crate::{config::Thresholds, model::Snapshot};

pub(super) fn connection_states(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    newest: &Snapshot,
    snapshots: &[&std::sync::Arc<Snapshot>],
    window_seconds: f64,
) {
    let rules: [(&str, &'static str, u64, &[&str]); 4] = [
        (
            "TIME_WAIT",
            "time_wait_surge",
            thresholds.time_wait,
            &[
                "Clients open a connection per request: use keep-alive or pools.",
                "Watch ephemeral ports; the side that closes first holds TIME_WAIT.",
            ],
        ),
        (
            "CLOSE_WAIT",
            "close_wait_surge",
            thresholds.close_wait,
            &[
                "The peer closed and the local application did not: find the process holding \
                 the port (/api/v1/listening) and its leaked or stuck connections.",
            ],
        ),
        (
            "SYN_SENT",
            "syn_sent_surge",
            thresholds.syn_sent,
            &[
                "Outgoing connections get no answer: check the remote service, firewalls on the \
                 path, routing, and DNS answers pointing at dead addresses.",
            ],
        ),
        (
            "SYN_RECV",
            "half_open_connections",
            thresholds.syn_recv,
            &[
                "Handshakes do not complete: a SYN flood, or clients whose final ACK is lost. \
                 Check the sources, net.ipv4.tcp_syncookies and the listen backlog.",
            ],
        ),
    ];
    for (state, id, threshold, next) in rules {
        let now = newest.connections.get(state).copied().unwrap_or(0);
        if now <= threshold {
            continue;
        }
        let counts: Vec<u64> = snapshots
            .iter()
            .map(|s| s.connections.get(state).copied().unwrap_or(0))
            .collect();
        let average = counts.iter().sum::<u64>() as f64 / counts.len().max(1) as f64;
        findings.push(Finding {
            id,
            severity: if now > threshold * 5 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            subject: state.to_string(),
            summary: format!(
                "{now} TCP sockets in {state}, over the threshold of {threshold} (average \
                 {average:.0} over {window_seconds:.0} s)"
            ),
            window_seconds,
            evidence: vec![
                evidence("now", now as f64, "sockets"),
                evidence("average", average, "sockets"),
                evidence("threshold", threshold as f64, "sockets"),
            ],
            next_steps: next.iter().map(|s| s.to_string()).collect(),
        });
    }
}
