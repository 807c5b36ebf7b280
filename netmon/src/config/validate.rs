//! What the file may hold beyond its types: values that would not work, refused with the key
//! that holds them. Each check takes its group; the first failing check is the one reported.
use anyhow::bail;
use netmon_common::samples::{DROP_SAMPLE_RING_BYTES, DropSample};

use super::{
    Config, DropSamples, ExpectedPort, InterfaceSettings, PollSettings, Processes, Thresholds,
};
use crate::{
    model::{
        peer_names::{EXTERNAL, PeerFolding},
        peers::OTHER,
        probes::AttachMethod,
    },
    probes::ProbeSettings,
};

/// Bounds of the drop sampling settings: a CPU's burst fills at most about three quarters
/// of the ring of samples, and the agent keeps a bounded record.
const MAX_SAMPLE_RATE: f64 = 10_000.0;
const MAX_SAMPLE_BURST: u64 = 512;
const MAX_SAMPLES_KEPT: usize = 100_000;
/// The most processes with series of their own, and peers in each namespace.
const MAX_TOP_PROCESSES: usize = 1000;
const MAX_TOP_PEERS: usize = 1000;

impl Config {
    pub fn validate(&self) -> anyhow::Result<()> {
        link_capacities(&self.interfaces)?;
        if self.probes.max_tracked_interfaces == 0 {
            bail!("max_tracked_interfaces must be at least 1");
        }
        thresholds(&self.diagnosis.thresholds)?;
        expected_ports(&self.diagnosis.expected_ports)?;
        interface_patterns(&self.interfaces)?;
        history_length(&self.poll)?;
        drop_samples(&self.samples)?;
        processes(&self.processes)?;
        peers(&self.peers)?;
        probe_methods(&self.probes)
    }
}

fn link_capacities(interfaces: &InterfaceSettings) -> anyhow::Result<()> {
    if let Some((name, _)) = interfaces.link_capacity_mbps.iter().find(|(_, c)| **c == 0) {
        bail!("link_capacity_mbps.{name} must be more than 0");
    }
    Ok(())
}

fn thresholds(t: &Thresholds) -> anyhow::Result<()> {
    for (name, value) in [
        ("error_rate_percent", t.error_rate_percent),
        ("drop_rate_percent", t.drop_rate_percent),
        ("saturation_percent", t.saturation_percent),
        ("ephemeral_ports_percent", t.ephemeral_ports_percent),
        ("conntrack_percent", t.conntrack_percent),
    ] {
        if !(value > 0.0 && value <= 100.0) {
            bail!("thresholds.{name} = {value}: must be more than 0 and at most 100");
        }
    }
    Ok(())
}

fn expected_ports(ports: &[ExpectedPort]) -> anyhow::Result<()> {
    for expected in ports {
        if expected.protocol != "tcp" && expected.protocol != "udp" {
            bail!(
                "expected_ports: protocol {:?} of port {} must be \"tcp\" or \"udp\"",
                expected.protocol,
                expected.port
            );
        }
        if expected.port == 0 {
            bail!("expected_ports: port 0 is not a port");
        }
    }
    Ok(())
}

fn interface_patterns(interfaces: &InterfaceSettings) -> anyhow::Result<()> {
    let filter = &interfaces.filter;
    if filter
        .include
        .iter()
        .chain(&filter.exclude)
        .any(String::is_empty)
    {
        bail!("interface_include/interface_exclude: empty pattern");
    }
    Ok(())
}

fn history_length(poll: &PollSettings) -> anyhow::Result<()> {
    if poll.history_length < 2 {
        bail!(
            "history_length = {}: at least 2 snapshots are needed for rates",
            poll.history_length
        );
    }
    Ok(())
}

fn drop_samples(d: &DropSamples) -> anyhow::Result<()> {
    if !(d.per_cpu_rate.is_finite() && (0.0..=MAX_SAMPLE_RATE).contains(&d.per_cpu_rate)) {
        bail!(
            "drop_samples.per_cpu_rate = {}: must be from 0 to {MAX_SAMPLE_RATE} samples a \
             second",
            d.per_cpu_rate
        );
    }
    if d.per_cpu_burst > MAX_SAMPLE_BURST {
        bail!(
            "drop_samples.per_cpu_burst = {}: at most {MAX_SAMPLE_BURST} (the ring of samples \
             holds about {} samples)",
            d.per_cpu_burst,
            DROP_SAMPLE_RING_BYTES as usize / (size_of::<DropSample>() + 8)
        );
    }
    if !(1..=MAX_SAMPLES_KEPT).contains(&d.keep) {
        bail!(
            "drop_samples.keep = {}: must be from 1 to {MAX_SAMPLES_KEPT}",
            d.keep
        );
    }
    Ok(())
}

fn processes(processes: &Processes) -> anyhow::Result<()> {
    if processes.top > MAX_TOP_PROCESSES {
        bail!(
            "processes.top = {}: at most {MAX_TOP_PROCESSES}",
            processes.top
        );
    }
    Ok(())
}

fn peers(peers: &PeerFolding) -> anyhow::Result<()> {
    if peers.top > MAX_TOP_PEERS {
        bail!("peers.top = {}: at most {MAX_TOP_PEERS}", peers.top);
    }
    for (range, name) in &peers.groups {
        if name.is_empty() || name == OTHER || name == EXTERNAL {
            bail!("peers.groups.\"{range}\" = {name:?}: a group needs a name of its own");
        }
    }
    Ok(())
}

fn probe_methods(probes: &ProbeSettings) -> anyhow::Result<()> {
    for (hook, method) in &probes.forced {
        if probes.disabled.contains(hook) {
            bail!(
                "probe_methods.{0}: the probe is also in disabled_probes; pin its method or turn \
                 it off, not both",
                hook.as_str()
            );
        }
        if !hook.offers(*method) {
            bail!(
                "probe_methods.{}: {method} is not a method of this probe (it offers {})",
                hook.as_str(),
                AttachMethod::ALL
                    .into_iter()
                    .filter(|m| hook.offers(*m))
                    .map(AttachMethod::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}
