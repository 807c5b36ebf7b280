//! Packets the kernel dropped, by reason, with what to do about each.
use std::collections::BTreeMap;

use super::{Evidence, Finding, evidence, graded};
use crate::{
    config::Thresholds,
    model::{Snapshot, drops::RecentDrops},
    rates::{InterfaceRates, increase, percent},
};

/// Sampled flows quoted for a finding at most.
const QUOTED_FLOWS: usize = 3;

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

/// Kernel drops in the agent's namespace, by interface and reason.
type DropTotals = BTreeMap<(u32, String), u64>;

fn kernel_drops(s: &Snapshot) -> DropTotals {
    let mut by = DropTotals::new();
    for drop in s.kernel.drops.iter().filter(|d| d.netns == s.netns) {
        *by.entry((drop.ifindex, drop.reason.clone())).or_default() += drop.count;
    }
    by
}

/// The kernel drops of interface `ifindex` between two totals, by reason, the most first.
fn reasons_between(before: &DropTotals, after: &DropTotals, ifindex: u32) -> Vec<(String, u64)> {
    let mut reasons: Vec<(String, u64)> = after
        .range((ifindex, String::new())..)
        .take_while(|((index, _), _)| *index == ifindex)
        .map(|(key, count)| {
            let was = before.get(key).copied().unwrap_or(0);
            (key.1.clone(), increase(was, *count))
        })
        .filter(|(_, count)| *count > 0)
        .collect();
    reasons.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    reasons
}

/// Interfaces of the agent's namespace whose drops (device and kernel) exceed the threshold,
/// with the reasons, and the flows, kernel functions and processes of the sampled drops.
pub(super) fn packet_loss(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    (old, new): (&Snapshot, &Snapshot),
    rates: &[InterfaceRates],
    recent: &RecentDrops,
) {
    let seconds = new.monotonic_seconds - old.monotonic_seconds;
    let threshold = thresholds.drop_rate_percent;
    let (before, after) = (kernel_drops(old), kernel_drops(new));
    let previous_of = old.interfaces_by_identity();
    for interface in &new.interfaces {
        let Some(previous) = previous_of.get(&(interface.name.as_str(), interface.ifindex)) else {
            continue;
        };
        let (o, n) = (&previous.counters, &interface.counters);
        let packets = increase(o.rx_packets, n.rx_packets) + increase(o.tx_packets, n.tx_packets);
        let device_drops =
            increase(o.rx_dropped, n.rx_dropped) + increase(o.tx_dropped, n.tx_dropped);
        let reasons = reasons_between(&before, &after, interface.ifindex);
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
        let mut next_steps = advice(
            &reasons,
            device_drops,
            utilization,
            thresholds.saturation_percent,
            &interface.name,
        );
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
        quote_samples(
            &mut evidence_list,
            &mut next_steps,
            recent,
            (old, new),
            interface.ifindex,
        );
        let where_ = match reasons.first() {
            Some((reason, count)) => format!("the kernel dropped {count} for {reason}"),
            None => format!("the device dropped {device_drops}"),
        };
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

/// What to do: about the main reasons, the device's own drops, and whether the link is full.
fn advice(
    reasons: &[(String, u64)],
    device_drops: u64,
    utilization: Option<f64>,
    saturation_percent: f64,
    interface: &str,
) -> Vec<String> {
    let mut next_steps: Vec<String> = reasons
        .iter()
        .take(3)
        .map(|(reason, _)| drop_advice(reason))
        .collect();
    if device_drops > 0 {
        next_steps.push(format!(
            "The device or driver dropped {device_drops}: check ring sizes and driver \
             counters (ethtool -g / -S {interface})."
        ));
    }
    match utilization {
        Some(u) if u >= saturation_percent => next_steps.push(format!(
            "The link is at {u:.0} % of its capacity: the drops follow saturation."
        )),
        Some(u) => next_steps.push(format!(
            "The link is at {u:.0} % of its capacity: not saturation."
        )),
        None => {}
    }
    next_steps
}

/// The most sampled flows of the interface's drops over the window as evidence, and where
/// the most sampled one was freed and whose sockets were involved as a next step.
fn quote_samples(
    evidence_list: &mut Vec<Evidence>,
    next_steps: &mut Vec<String>,
    recent: &RecentDrops,
    (old, new): (&Snapshot, &Snapshot),
    ifindex: u32,
) {
    let sampled = recent.top_since(new.netns, ifindex, old.timestamp_ms);
    for (reason, location, flow, samples) in sampled.iter().take(QUOTED_FLOWS) {
        let at = if location.is_empty() {
            String::new()
        } else {
            format!(" at {location}")
        };
        evidence_list.push(evidence(
            format!("flow:{} {reason}{at}", flow.describe()),
            *samples as f64,
            "samples",
        ));
    }
    if let Some((_, location, flow, _)) = sampled.first() {
        let processes = recent.processes_since(new.netns, ifindex, old.timestamp_ms);
        let by = if processes.is_empty() {
            String::new()
        } else {
            format!(" (sockets of {})", processes.join(", "))
        };
        next_steps.push(format!(
            "Most sampled drops: {}{by}, freed in {}; /api/v1/drops/recent lists them.",
            flow.describe(),
            if location.is_empty() {
                "an unknown place"
            } else {
                location
            },
        ));
    }
}
