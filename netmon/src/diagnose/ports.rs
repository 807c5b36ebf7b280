//! Expected listeners that are missing or exposed, and ports that are running out.
use std::collections::BTreeMap;

use super::{Finding, Severity, evidence, graded};
use crate::{
    config::{Config, ExpectedPort},
    model::{ListeningSocket, Snapshot},
};

fn owners(socket: &ListeningSocket) -> String {
    if socket.processes.is_empty() {
        return "no process found".to_string();
    }
    socket
        .processes
        .iter()
        .map(|p| format!("{} (pid {})", p.name, p.pid))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_unspecified(address: &str) -> bool {
    address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_unspecified())
}

fn matches(expected: &ExpectedPort, socket: &ListeningSocket) -> bool {
    expected.port == socket.port && expected.protocol == socket.protocol
}

pub(super) fn ports(findings: &mut Vec<Finding>, config: &Config, newest: &Snapshot) {
    let port_finding = |id, severity, subject: String, summary: String, next: &[&str]| Finding {
        id,
        severity,
        subject,
        summary,
        window_seconds: 0.0,
        evidence: Vec::new(),
        next_steps: next.iter().map(|s| s.to_string()).collect(),
    };
    for expected in &config.expected_ports {
        let subject = format!("{}/{}", expected.protocol, expected.port);
        let held: Vec<&ListeningSocket> = newest
            .listening
            .iter()
            .filter(|s| matches(expected, s))
            .collect();
        if held.is_empty() {
            findings.push(port_finding(
                "expected_port_missing",
                Severity::Critical,
                subject.clone(),
                format!("nothing listens on {subject}, which is expected to"),
                &[
                    "Check that the service runs (systemctl status, its logs).",
                    "Check its configured address and port, and whether it failed to bind \
                     (address in use).",
                ],
            ));
            continue;
        }
        if let Some(process) = &expected.process
            && !held
                .iter()
                .any(|s| s.processes.iter().any(|p| &p.name == process))
        {
            findings.push(port_finding(
                "expected_port_wrong_process",
                Severity::Warning,
                subject.clone(),
                format!(
                    "{subject} is held by {}, not by {process}",
                    held.iter()
                        .map(|s| owners(s))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                &[
                    "Find out why another process has the port: a leftover instance, a \
                     different service, or something unwanted.",
                ],
            ));
        }
        if expected.local_only {
            for socket in held.iter().filter(|s| is_unspecified(&s.address)) {
                findings.push(port_finding(
                    "bound_to_all_addresses",
                    Severity::Warning,
                    subject.clone(),
                    format!(
                        "{subject} listens on {} (every address), but should be local only; \
                         held by {}",
                        socket.address,
                        owners(socket)
                    ),
                    &[
                        "Bind the service to 127.0.0.1 or ::1, or firewall the port from other \
                         hosts.",
                    ],
                ));
            }
        }
    }
    if !config.expected_ports.is_empty() {
        for socket in &newest.listening {
            let ephemeral_udp =
                socket.protocol == "udp" && newest.ephemeral_ports.contains(socket.port);
            // The agent's own port is expected wherever it runs.
            let own = socket.protocol == "tcp" && socket.port == config.listen.port();
            if own || ephemeral_udp || config.expected_ports.iter().any(|e| matches(e, socket)) {
                continue;
            }
            findings.push(port_finding(
                "unexpected_listener",
                Severity::Warning,
                format!("{}/{}", socket.protocol, socket.port),
                format!(
                    "{}/{} on {} is not an expected port; held by {}",
                    socket.protocol,
                    socket.port,
                    socket.address,
                    owners(socket)
                ),
                &[
                    "Check whether the process was deployed on purpose; if so, add the port to \
                     expected_ports.",
                    "If not, stop it and find how it started.",
                ],
            ));
        }
    }
    // Several sockets on one port and address, held by different processes: SO_REUSEPORT.
    let mut groups: BTreeMap<(&str, &str, u16), Vec<&ListeningSocket>> = BTreeMap::new();
    for socket in &newest.listening {
        groups
            .entry((socket.protocol, socket.address.as_str(), socket.port))
            .or_default()
            .push(socket);
    }
    for ((protocol, address, port), sockets) in groups {
        let mut pids: Vec<u32> = sockets
            .iter()
            .flat_map(|s| s.processes.iter().map(|p| p.pid))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        if sockets.len() < 2 || pids.len() < 2 {
            continue;
        }
        findings.push(Finding {
            id: "port_shared",
            severity: Severity::Warning,
            subject: format!("{protocol}/{port}"),
            summary: format!(
                "{protocol}/{port} on {address} is held by {} sockets of {} processes: {}",
                sockets.len(),
                pids.len(),
                sockets
                    .iter()
                    .map(|s| owners(s))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            window_seconds: 0.0,
            evidence: vec![
                evidence("sockets", sockets.len() as f64, "sockets"),
                evidence("processes", pids.len() as f64, "processes"),
            ],
            next_steps: vec![
                "SO_REUSEPORT spreads connections over these processes: fine for workers of one \
                 service, a problem if an old instance still runs or another service took the \
                 port."
                    .to_string(),
            ],
        });
    }
    let ephemeral = newest.ephemeral_ports;
    if ephemeral.range_size() > 0 {
        let used = ephemeral.in_use as f64 / ephemeral.range_size() as f64 * 100.0;
        let threshold = config.thresholds.ephemeral_ports_percent;
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
