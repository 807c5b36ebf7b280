//! Connections piling up in one TCP state, with the peers most of the opens wait on.
use super::{Evidence, Finding, Severity, evidence};
use crate::{config::Thresholds, model::Snapshot};

/// Peers a finding of waiting opens names, at most.
const NAMED_PEERS: usize = 3;

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
        let (waited_on, mut named) = waiting_peers(newest, state);
        let mut evidence_items = vec![
            evidence("now", now as f64, "sockets"),
            evidence("average", average, "sockets"),
            evidence("threshold", threshold as f64, "sockets"),
        ];
        evidence_items.append(&mut named);
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
                 {average:.0} over {window_seconds:.0} s){waited_on}"
            ),
            window_seconds,
            evidence: evidence_items,
            next_steps: next.iter().map(|s| s.to_string()).collect(),
        });
    }
}

/// For the states of an open (`SYN_SENT`: this host's connects, `SYN_RECV`: those it
/// accepts), the peers of the agent's namespace with the most opens waiting now: the words
/// the summary ends with, and an evidence item for each.
fn waiting_peers(newest: &Snapshot, state: &str) -> (String, Vec<Evidence>) {
    let (role, direction) = match state {
        "SYN_SENT" => ("client", "to"),
        "SYN_RECV" => ("server", "from"),
        _ => return (String::new(), Vec::new()),
    };
    let mut waiting: Vec<_> = newest
        .kernel
        .peers
        .iter()
        .filter(|p| p.netns == newest.netns && p.role == role && p.opening > 0)
        .collect();
    waiting.sort_by_key(|p| (std::cmp::Reverse(p.opening), &p.peer, &p.port));
    waiting.truncate(NAMED_PEERS);
    if waiting.is_empty() {
        return (String::new(), Vec::new());
    }
    let endpoint = |p: &crate::model::peers::TcpPeer| format!("{}:{}", p.peer, p.port);
    let listed: Vec<String> = waiting
        .iter()
        .map(|p| format!("{} ({})", endpoint(p), p.opening))
        .collect();
    let words = format!("; most {direction} {}", listed.join(", "));
    let items = waiting
        .iter()
        .map(|p| evidence(endpoint(p), p.opening as f64, "sockets"))
        .collect();
    (words, items)
}
