//! Expected listeners that are missing, held by another process or exposed; listeners that
//! are not expected; ports shared by several processes.
use std::collections::BTreeMap;

use super::{Finding, Severity, evidence};
use crate::{
    config::ExpectedPort,
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
/// A finding about a port, from the newest snapshot alone.
fn port_finding(
    id: &'static str,
    severity: Severity,
    subject: String,
    summary: String,
    next: &[&str],
) -> Finding {
    Finding {
        id,
        severity,
        subject,
        summary,
        window_seconds: 0.0,
        evidence: Vec::new(),
        next_steps: next.iter().map(|s| s.to_string()).collect(),
    }
}

/// `agent_port` is the agent's own (TCP) port, expected wherever it runs.
pub(super) fn ports(
    findings: &mut Vec<Finding>,
    expected_ports: &[ExpectedPort],
    agent_port: u16,
    newest: &Snapshot,
) {
    for expected in expected_ports {
        expected_listener(findings, expected, newest);
    }
    if !expected_ports.is_empty() {
        unexpected_listeners(findings, expected_ports, agent_port, newest);
    }
    shared_ports(findings, newest);
}

/// Whether `expected` listens, held by the process and on the addresses it should be.
fn expected_listener(findings: &mut Vec<Finding>, expected: &ExpectedPort, newest: &Snapshot) {
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
        return;
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

/// Listeners on ports no one expects (the agent's own and ephemeral UDP ones aside).
fn unexpected_listeners(
    findings: &mut Vec<Finding>,
    expected_ports: &[ExpectedPort],
    agent_port: u16,
    newest: &Snapshot,
) {
    for socket in &newest.listening {
        let ephemeral_udp =
            socket.protocol == "udp" && newest.ephemeral_ports.contains(socket.port);
        let own = socket.protocol == "tcp" && socket.port == agent_port;
        if own || ephemeral_udp || expected_ports.iter().any(|e| matches(e, socket)) {
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

/// Several sockets on one port and address, held by different processes: SO_REUSEPORT.
fn shared_ports(findings: &mut Vec<Finding>, newest: &Snapshot) {
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
}
