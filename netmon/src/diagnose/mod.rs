//! The troubleshooting playbook of a network operator as rules that turn the History into
//! findings: what is wrong, how badly, the numbers that show it, and what to do next.
//! No I/O here.
use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;

use crate::{
    config::{Config, ExpectedPort},
    model::{History, ListeningSocket, Snapshot},
    rates::{self, InterfaceRates, Summary, increase, percent},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One number behind a finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evidence {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
}

fn evidence(name: impl Into<String>, value: f64, unit: &'static str) -> Evidence {
    Evidence {
        name: name.into(),
        value,
        unit,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// Stable identifier of the rule, e.g. `packet_loss`.
    pub id: &'static str,
    pub severity: Severity,
    /// What the finding is about: an interface, a port, a process, a socket state.
    pub subject: String,
    pub summary: String,
    /// Seconds of history the numbers cover (0 for the newest snapshot alone).
    pub window_seconds: f64,
    pub evidence: Vec<Evidence>,
    pub next_steps: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Diagnosis {
    /// The worst severity among the findings; `ok` when there are none.
    pub status: Option<Severity>,
    pub window_seconds: f64,
    pub findings: Vec<Finding>,
}

/// Runs every rule over the snapshots of the last `window`.
pub fn diagnose(history: &History, window: Duration, config: &Config) -> Diagnosis {
    diagnose_window(history, window, config).0
}

/// Like [`diagnose`], also returning the window's rates it worked from, for whoever serves
/// them too.
pub fn diagnose_window(
    history: &History,
    window: Duration,
    config: &Config,
) -> (Diagnosis, Option<Summary>) {
    let Some(newest) = history.latest() else {
        return (Diagnosis::default(), None);
    };
    let snapshots = history.within(window);
    let oldest = snapshots.first().copied().unwrap_or(newest);
    let window_seconds = newest.monotonic_seconds - oldest.monotonic_seconds;
    let summary = rates::summarize(oldest, newest);
    let mut findings = Vec::new();
    if let Some(summary) = &summary {
        for rates in &summary.per_interface {
            error_rates(&mut findings, config, rates, &snapshots, window_seconds);
            saturation(&mut findings, config, rates, window_seconds);
        }
        packet_loss(
            &mut findings,
            config,
            oldest,
            newest,
            &summary.per_interface,
        );
    }
    ports(&mut findings, config, newest);
    connection_states(&mut findings, config, newest, &snapshots, window_seconds);
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
    let diagnosis = Diagnosis {
        status: Some(
            findings
                .iter()
                .map(|f| f.severity)
                .max()
                .unwrap_or(Severity::Ok),
        ),
        window_seconds,
        findings,
    };
    (diagnosis, summary)
}

/// Warning at the threshold, critical at `factor` times it.
fn graded(value: f64, threshold: f64, critical: f64) -> Option<Severity> {
    if value >= critical {
        Some(Severity::Critical)
    } else if value >= threshold {
        Some(Severity::Warning)
    } else {
        None
    }
}

fn error_rates(
    findings: &mut Vec<Finding>,
    config: &Config,
    rates: &InterfaceRates,
    snapshots: &[&std::sync::Arc<Snapshot>],
    window_seconds: f64,
) {
    let threshold = config.thresholds.error_rate_percent;
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

fn saturation(
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

/// What to do about packets the kernel dropped for `reason`.
fn drop_advice(reason: &str) -> String {
    match reason {
        "NETFILTER_DROP" => "NETFILTER_DROP: a firewall rule drops them. List the rules with \
                             their counters (iptables -L -v -n, nft list ruleset) in that \
                             namespace."
            .to_string(),
        "NO_SOCKET" => "NO_SOCKET: nothing listens where the packets go. Check that the \
                        service runs and listens on that port and address (/api/v1/listening)."
            .to_string(),
        r if r.contains("BACKLOG") || r.contains("OVERFLOW") || r.contains("QDISC") => format!(
            "{r}: a queue is full. The receiver is too slow or the queue too short: check the \
             application's accept/read rate, somaxconn, the listen backlog and qdisc limits."
        ),
        r if r.contains("CSUM") => {
            format!("{r}: corrupted packets: check the link and NIC offloads.")
        }
        r => format!("{r}: see the kernel's enum skb_drop_reason for where it is raised."),
    }
}

fn packet_loss(
    findings: &mut Vec<Finding>,
    config: &Config,
    old: &Snapshot,
    new: &Snapshot,
    rates: &[InterfaceRates],
) {
    let seconds = new.monotonic_seconds - old.monotonic_seconds;
    let threshold = config.thresholds.drop_rate_percent;
    // Kernel drops in the agent's namespace over the window, by interface and reason.
    let totals = |s: &Snapshot| {
        let mut by: BTreeMap<(u32, String), u64> = BTreeMap::new();
        for drop in s.kernel.drops.iter().filter(|d| d.netns == s.netns) {
            *by.entry((drop.ifindex, drop.reason.clone())).or_default() += drop.count;
        }
        by
    };
    let (before, after) = (totals(old), totals(new));
    for interface in &new.interfaces {
        let Some(previous) = old
            .interfaces
            .iter()
            .find(|i| i.name == interface.name && i.ifindex == interface.ifindex)
        else {
            continue;
        };
        let (o, n) = (&previous.counters, &interface.counters);
        let packets = increase(o.rx_packets, n.rx_packets) + increase(o.tx_packets, n.tx_packets);
        let device_drops =
            increase(o.rx_dropped, n.rx_dropped) + increase(o.tx_dropped, n.tx_dropped);
        let mut reasons: Vec<(String, u64)> = after
            .iter()
            .filter(|((ifindex, _), _)| *ifindex == interface.ifindex)
            .map(|((ifindex, reason), count)| {
                let was = before
                    .get(&(*ifindex, reason.clone()))
                    .copied()
                    .unwrap_or(0);
                (reason.clone(), increase(was, *count))
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        reasons.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        let kernel_drops: u64 = reasons.iter().map(|(_, c)| c).sum();
        let dropped = device_drops + kernel_drops;
        let rate = percent(dropped, packets);
        let Some(severity) = graded(rate, threshold, threshold * 5.0) else {
            continue;
        };
        let utilization = rates
            .iter()
            .find(|r| r.interface == interface.name)
            .and_then(|r| r.utilization_percent);
        let mut next_steps: Vec<String> = reasons
            .iter()
            .take(3)
            .map(|(reason, _)| drop_advice(reason))
            .collect();
        if device_drops > 0 {
            next_steps.push(format!(
                "The device or driver dropped {device_drops}: check ring sizes and driver \
                 counters (ethtool -g / -S {}).",
                interface.name
            ));
        }
        match utilization {
            Some(u) if u >= config.thresholds.saturation_percent => next_steps.push(format!(
                "The link is at {u:.0} % of its capacity: the drops follow saturation."
            )),
            Some(u) => next_steps.push(format!(
                "The link is at {u:.0} % of its capacity: not saturation."
            )),
            None => {}
        }
        let where_ = match reasons.first() {
            Some((reason, count)) => format!("the kernel dropped {count} for {reason}"),
            None => format!("the device dropped {device_drops}"),
        };
        let mut evidence_list = vec![
            evidence("drop_rate", rate, "percent"),
            evidence("packets", packets as f64, "packets"),
            evidence("device_drops", device_drops as f64, "packets"),
            evidence("kernel_drops", kernel_drops as f64, "packets"),
        ];
        if let Some(u) = utilization {
            evidence_list.push(evidence("utilization", u, "percent"));
        }
        for (reason, count) in &reasons {
            evidence_list.push(evidence(
                format!("reason:{reason}"),
                *count as f64,
                "packets",
            ));
        }
        findings.push(Finding {
            id: "packet_loss",
            severity,
            subject: interface.name.clone(),
            summary: format!(
                "{}: {dropped} of {packets} packets dropped ({rate:.1} %) over {seconds:.0} s; \
                 {where_}",
                interface.name
            ),
            window_seconds: seconds,
            evidence: evidence_list,
            next_steps,
        });
    }
}

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

fn ports(findings: &mut Vec<Finding>, config: &Config, newest: &Snapshot) {
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

fn connection_states(
    findings: &mut Vec<Finding>,
    config: &Config,
    newest: &Snapshot,
    snapshots: &[&std::sync::Arc<Snapshot>],
    window_seconds: f64,
) {
    let t = &config.thresholds;
    let rules: [(&str, &'static str, u64, &[&str]); 4] = [
        (
            "TIME_WAIT",
            "time_wait_surge",
            t.time_wait,
            &[
                "Clients open a connection per request: use keep-alive or pools.",
                "Watch ephemeral ports; the side that closes first holds TIME_WAIT.",
            ],
        ),
        (
            "CLOSE_WAIT",
            "close_wait_surge",
            t.close_wait,
            &[
                "The peer closed and the local application did not: find the process holding \
                 the port (/api/v1/listening) and its leaked or stuck connections.",
            ],
        ),
        (
            "SYN_SENT",
            "syn_sent_surge",
            t.syn_sent,
            &[
                "Outgoing connections get no answer: check the remote service, firewalls on the \
                 path, routing, and DNS answers pointing at dead addresses.",
            ],
        ),
        (
            "SYN_RECV",
            "half_open_connections",
            t.syn_recv,
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

#[cfg(test)]
mod tests;
