//! Peers this host cannot reach, or that cannot reach it: connects that failed in the window,
//! by namespace, role and remote endpoint, named with the result that failed them most.
use std::collections::BTreeMap;

use netmon_common::peers::PeerResult;

use super::{Finding, Severity, evidence};
use crate::{
    config::Thresholds,
    model::{Snapshot, peers::TcpPeer},
};

/// The failed results, in the order findings name them when two are as frequent.
const FAILURES: [PeerResult; 4] = [
    PeerResult::Refused,
    PeerResult::Timeout,
    PeerResult::Unreachable,
    PeerResult::Other,
];

pub(super) fn failing_peers(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    (oldest, newest): (&Snapshot, &Snapshot),
    window_seconds: f64,
) {
    let before: BTreeMap<_, _> = oldest.kernel.peers.iter().map(|p| (series(p), p)).collect();
    for peer in &newest.kernel.peers {
        let earlier = before.get(&series(peer)).copied();
        let moved =
            |result| peer.results.get(result) - earlier.map_or(0, |e| e.results.get(result));
        let attempts: u64 = PeerResult::ALL.into_iter().map(moved).sum();
        let failed = attempts - moved(PeerResult::Ok);
        if failed < thresholds.peer_failures.max(1) {
            continue;
        }
        let worst = FAILURES
            .into_iter()
            .max_by_key(|r| (moved(*r), std::cmp::Reverse(*r as u8)));
        let worst = worst.unwrap_or(PeerResult::Other);
        findings.push(finding(
            peer,
            (attempts, failed, worst, moved(worst)),
            window_seconds,
        ));
    }
}

/// What identifies a series from one snapshot to the next.
fn series(peer: &TcpPeer) -> (u32, &'static str, &str, &str) {
    (peer.netns, peer.role, &peer.peer, &peer.port)
}

/// The finding of a peer with `failed` of its `attempts` failed, `count` of them `worst`.
fn finding(
    peer: &TcpPeer,
    (attempts, failed, worst, count): (u64, u64, PeerResult, u64),
    window_seconds: f64,
) -> Finding {
    let (netns, endpoint) = (peer.netns, format!("{}:{}", peer.peer, peer.port));
    let direction = if peer.role == "client" { "to" } else { "from" };
    let worst = worst.as_str();
    Finding {
        id: "peer_connect_failures",
        severity: if failed == attempts {
            Severity::Critical
        } else {
            Severity::Warning
        },
        subject: format!("netns {netns} {} {endpoint}", peer.role),
        summary: format!(
            "netns {netns}: {count} of {attempts} connects {direction} {endpoint} {worst}{} in \
             {window_seconds:.0} s",
            if failed > count {
                format!(" ({failed} failed)")
            } else {
                String::new()
            }
        ),
        window_seconds,
        evidence: vec![
            evidence("attempts", attempts as f64, "connects"),
            evidence("failed", failed as f64, "connects"),
            evidence(worst, count as f64, "connects"),
        ],
        next_steps: next_steps(worst).iter().map(|s| s.to_string()).collect(),
    }
}

fn next_steps(worst: &str) -> &'static [&'static str] {
    match worst {
        "refused" => &[
            "Nothing listens on that port of the peer (or a firewall answers with a reset): \
             check the service there and /api/v1/listening on its host.",
        ],
        "timeout" => &[
            "SYNs get no answer: a firewall drops them, the peer is down, or the route leads \
             nowhere; check the path (kernel drops on this host: /api/v1/drops/top).",
        ],
        "unreachable" => &[
            "An ICMP destination unreachable answered: a router has no route to the peer, or a \
             firewall rejects the connection; check routes and firewall rules on the path.",
        ],
        _ => &["Connects end before the handshake completes: look at the application's errors."],
    }
}
