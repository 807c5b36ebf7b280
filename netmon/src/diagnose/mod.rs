//! The troubleshooting playbook of a network operator as rules that turn the History into
//! findings: what is wrong, how badly, the numbers that show it, and what to do next.
//! One rule (or a small family) a file; this file holds what they share. No I/O here.
use std::{sync::Arc, time::Duration};

use serde::Serialize;

mod accept_queues;
mod baselines;
mod connections;
mod conntrack;
mod ephemeral_ports;
mod errors;
mod packet_loss;
mod peers;
mod ports;
mod qdisc_drops;
mod saturation;
mod softnet;
mod udp_buffers;

use crate::{
    config::{Config, DiagnosisSettings, Thresholds},
    model::{History, Snapshot, drops::RecentDrops},
    rates::{self, Summary},
};
use accept_queues::accept_queues;
use baselines::Baselines;
use connections::connection_states;
use conntrack::conntrack;
use ephemeral_ports::ephemeral_ports;
use errors::error_rates;
use packet_loss::packet_loss;
use peers::failing_peers;
use ports::ports;
use qdisc_drops::qdisc_drops;
use saturation::saturation;
use softnet::softnet;
use udp_buffers::udp_buffers;

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

/// Runs every rule over the snapshots of the last `window`, quoting the recent drop samples
/// as evidence. Each rule gets its part of `config`: the thresholds, the expected ports and
/// the agent's own port.
pub fn diagnose(
    history: &History,
    recent: &RecentDrops,
    window: Duration,
    config: &Config,
) -> Diagnosis {
    diagnose_window(history, recent, window, config).0
}

/// Like [`diagnose`], also returning the window's rates it worked from, for whoever serves
/// them too.
pub fn diagnose_window(
    history: &History,
    recent: &RecentDrops,
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
    let DiagnosisSettings {
        thresholds,
        expected_ports,
    } = &config.diagnosis;
    let mut findings = Vec::new();
    if let Some(summary) = &summary {
        for rates in &summary.per_interface {
            error_rates(&mut findings, thresholds, rates, &snapshots, window_seconds);
            saturation(&mut findings, thresholds, rates, newest, window_seconds);
        }
        packet_loss(
            &mut findings,
            thresholds,
            (oldest, newest),
            &summary.per_interface,
            recent,
        );
    }
    ports(
        &mut findings,
        expected_ports,
        config.server.listen.port(),
        newest,
    );
    ephemeral_ports(&mut findings, thresholds, newest);
    failing_peers(&mut findings, thresholds, (oldest, newest), window_seconds);
    pressure(&mut findings, thresholds, &snapshots, window_seconds);
    connection_states(
        &mut findings,
        thresholds,
        newest,
        &snapshots,
        window_seconds,
    );
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

/// Drops the kernel gave `reason` over the window, in namespace `netns` (all where `None`)
/// and on `interface` (any where `None`).
fn reason_drops(
    (oldest, newest): (&Snapshot, &Snapshot),
    reason: &str,
    netns: Option<u32>,
    interface: Option<&str>,
) -> u64 {
    let total = |snapshot: &Snapshot| -> u64 {
        let drops = snapshot.kernel.drops.iter().filter(|d| {
            d.reason == reason
                && netns.is_none_or(|n| d.netns == n)
                && interface.is_none_or(|i| d.interface == i)
        });
        drops.map(|d| d.count).sum()
    };
    total(newest).saturating_sub(total(oldest))
}

/// The rules of pressure before loss over the window's `snapshots`, oldest first.
fn pressure(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    snapshots: &[&Arc<Snapshot>],
    window_seconds: f64,
) {
    let (Some(oldest), Some(newest)) = (snapshots.first(), snapshots.last()) else {
        return;
    };
    let ends: (&Snapshot, &Snapshot) = (oldest, newest);
    let baselines = Baselines::of(snapshots);
    accept_queues(findings, thresholds, (ends, &baselines), window_seconds);
    conntrack(findings, thresholds, (ends, &baselines), window_seconds);
    softnet(findings, thresholds, ends, window_seconds);
    qdisc_drops(findings, thresholds, (ends, &baselines), window_seconds);
    udp_buffers(findings, thresholds, (ends, &baselines), window_seconds);
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

#[cfg(test)]
mod tests;
