//! The settings in force in words, one per line and named by their keys in the file, for
//! `netmon check-config`.
use super::{Config, DiagnosisSettings, DropSamples, Thresholds};
use crate::{model::probes::ProgramVariant, probes::ProbeSettings};

impl Config {
    /// The settings in force, one per line, for `netmon check-config`.
    pub fn explain(&self) -> String {
        let (server, poll, interfaces) = (&self.server, &self.poll, &self.interfaces);
        let mut lines = vec![
            format!("listen = {}", server.listen),
            format!(
                "poll_interval = {}",
                humantime::format_duration(poll.interval)
            ),
            format!("history_length = {} snapshots", poll.history_length),
            format!(
                "rate_window = {}",
                humantime::format_duration(poll.rate_window)
            ),
            format!(
                "web_config = {}",
                server
                    .web_config
                    .as_ref()
                    .map_or("none (plain HTTP, no auth)".to_string(), |p| p
                        .display()
                        .to_string())
            ),
            format!("interface_include = {:?}", interfaces.filter.include),
            format!("interface_exclude = {:?}", interfaces.filter.exclude),
            format!("link_capacity_mbps = {:?}", interfaces.link_capacity_mbps),
        ];
        lines.extend(probes(&self.probes));
        lines.push(thresholds(&self.diagnosis.thresholds));
        lines.push(drop_samples(&self.samples));
        lines.push(format!(
            "peers: {} named in each namespace, groups {:?}, public addresses {}",
            self.peers.top,
            self.peers.groups,
            if self.peers.public {
                "shown"
            } else {
                "folded into external"
            }
        ));
        lines.extend(expected_ports(&self.diagnosis));
        lines.join("\n")
    }
}

fn probes(probes: &ProbeSettings) -> [String; 4] {
    [
        format!("max_tracked_interfaces = {}", probes.max_tracked_interfaces),
        format!(
            "program_variant = {}",
            probes
                .variant
                .map_or("the fastest the kernel takes", ProgramVariant::as_str)
        ),
        format!(
            "probe_methods = {:?}",
            probes
                .forced
                .iter()
                .map(|(h, m)| format!("{}={m}", h.as_str()))
                .collect::<Vec<_>>()
        ),
        format!(
            "disabled_probes = {:?}",
            probes
                .disabled
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
        ),
    ]
}

fn thresholds(t: &Thresholds) -> String {
    format!(
        "thresholds: error_rate {} %, drop_rate {} %, saturation {} %, ephemeral ports {} %, \
         TIME_WAIT {}, CLOSE_WAIT {}, SYN_SENT {}, SYN_RECV {}, failed connects to a peer {}, \
         listen overflows {}, conntrack {} %, backlog drops {}, squeezes {}, qdisc drops {}, \
         UDP receive buffer errors {}",
        t.error_rate_percent,
        t.drop_rate_percent,
        t.saturation_percent,
        t.ephemeral_ports_percent,
        t.time_wait,
        t.close_wait,
        t.syn_sent,
        t.syn_recv,
        t.peer_failures,
        t.listen_overflows,
        t.conntrack_percent,
        t.softnet_drops,
        t.softnet_squeezes,
        t.qdisc_drops,
        t.udp_receive_buffer_errors
    )
}

fn drop_samples(d: &DropSamples) -> String {
    format!(
        "drop_samples: {} a second and a burst of {} per CPU, {} kept",
        d.per_cpu_rate, d.per_cpu_burst, d.keep
    )
}

fn expected_ports(diagnosis: &DiagnosisSettings) -> impl Iterator<Item = String> + '_ {
    diagnosis.expected_ports.iter().map(|e| {
        format!(
            "expected port {}/{}{}{}",
            e.protocol,
            e.port,
            e.process
                .as_ref()
                .map_or(String::new(), |p| format!(" held by {p}")),
            if e.local_only { ", loopback only" } else { "" }
        )
    })
}
