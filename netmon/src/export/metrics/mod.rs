//! Prometheus exposition of a Snapshot. Every family is named and described here, once.
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use std::sync::Arc;

use crate::{
    diagnose::Diagnosis,
    export::http::ReloadStatus,
    model::{HandshakeHistogram, Snapshot},
};

/// The agent's own state that the exposition shows besides the snapshot.
#[derive(Clone, Debug, Default)]
pub struct AgentState {
    pub diagnosis: Arc<Diagnosis>,
    pub reload: ReloadStatus,
}

/// A metric family under construction.
struct Family(MetricFamily);

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Self {
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        Self(family)
    }

    fn labelled(labels: &[(&str, &str)]) -> Metric {
        let mut metric = Metric::default();
        metric.set_label(
            labels
                .iter()
                .map(|(name, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name(name.to_string());
                    pair.set_value(value.to_string());
                    pair
                })
                .collect(),
        );
        metric
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let mut metric = Self::labelled(labels);
        match self.0.get_field_type() {
            MetricType::COUNTER => {
                let mut counter = Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            }
            _ => {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
        }
        self.0.mut_metric().push(metric);
    }

    fn histogram(&mut self, labels: &[(&str, &str)], histogram: &HandshakeHistogram) {
        let mut metric = Self::labelled(labels);
        let mut proto = Histogram::default();
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(histogram.buckets.len());
        for (i, count) in histogram.buckets.iter().enumerate() {
            cumulative += count;
            let mut bucket = Bucket::default();
            bucket.set_upper_bound(HandshakeHistogram::upper_bound_seconds(i));
            bucket.set_cumulative_count(cumulative);
            buckets.push(bucket);
        }
        proto.set_bucket(buckets);
        proto.set_sample_count(cumulative);
        proto.set_sample_sum(histogram.sum_ns as f64 / 1e9);
        metric.set_histogram(proto);
        self.0.mut_metric().push(metric);
    }
}

/// Builds every metric family from the newest snapshot and the agent's state.
pub fn families(snapshot: &Snapshot, agent: &AgentState) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    let mut push = |family: Family| out.push(family.0);

    // Kernel interface statistics of the agent's namespace.
    let counters = [
        (
            "netmon_network_bytes_total",
            "Bytes received and sent, from the kernel's interface statistics.",
        ),
        (
            "netmon_network_packets_total",
            "Packets received and sent, from the kernel's interface statistics.",
        ),
        (
            "netmon_network_errors_total",
            "Receive and transmit errors, from the kernel's interface statistics.",
        ),
        (
            "netmon_network_drops_total",
            "Packets dropped by the device or its driver, from the kernel's interface statistics.",
        ),
    ];
    for (index, (name, help)) in counters.into_iter().enumerate() {
        let mut family = Family::new(name, help, MetricType::COUNTER);
        for interface in &snapshot.interfaces {
            let c = &interface.counters;
            let (rx, tx) = match index {
                0 => (c.rx_bytes, c.tx_bytes),
                1 => (c.rx_packets, c.tx_packets),
                2 => (c.rx_errors, c.tx_errors),
                _ => (c.rx_dropped, c.tx_dropped),
            };
            family.sample(
                &[("interface", &interface.name), ("direction", "rx")],
                rx as f64,
            );
            family.sample(
                &[("interface", &interface.name), ("direction", "tx")],
                tx as f64,
            );
        }
        push(family);
    }

    let mut info = Family::new(
        "netmon_network_info",
        "Interface metadata; the value is always 1.",
        MetricType::GAUGE,
    );
    let mut up = Family::new(
        "netmon_network_up",
        "1 when the interface's operational state is up.",
        MetricType::GAUGE,
    );
    let mut mtu = Family::new(
        "netmon_network_mtu_bytes",
        "Maximum transmission unit of the interface.",
        MetricType::GAUGE,
    );
    let mut speed = Family::new(
        "netmon_network_speed_bytes",
        "Link speed in bytes per second; absent when the device reports none.",
        MetricType::GAUGE,
    );
    for interface in &snapshot.interfaces {
        let name = interface.name.as_str();
        info.sample(
            &[
                ("interface", name),
                ("operstate", &interface.operstate),
                ("duplex", interface.duplex.as_deref().unwrap_or("unknown")),
                ("address", &interface.mac),
            ],
            1.0,
        );
        up.sample(&[("interface", name)], f64::from(u8::from(interface.up)));
        mtu.sample(&[("interface", name)], f64::from(interface.mtu));
        if let Some(mbps) = interface.speed_mbps {
            speed.sample(&[("interface", name)], mbps as f64 * 1_000_000.0 / 8.0);
        }
    }
    let mut capacity = Family::new(
        "netmon_network_capacity_bytes",
        "Capacity used for utilization in bytes per second: the configured link capacity, else \
         the link speed; absent when neither is known.",
        MetricType::GAUGE,
    );
    let mut addresses = Family::new(
        "netmon_network_address_info",
        "IPv4 and IPv6 addresses of the interfaces; the value is always 1.",
        MetricType::GAUGE,
    );
    for interface in &snapshot.interfaces {
        if let Some(mbps) = interface.capacity_mbps {
            capacity.sample(
                &[("interface", &interface.name)],
                mbps as f64 * 1_000_000.0 / 8.0,
            );
        }
        for address in &interface.addresses {
            addresses.sample(
                &[
                    ("interface", &interface.name),
                    ("family", address.family),
                    ("address", &address.address),
                    ("prefix_length", &address.prefix_length.to_string()),
                    ("broadcast", address.broadcast.as_deref().unwrap_or("")),
                ],
                1.0,
            );
        }
    }
    push(info);
    push(up);
    push(mtu);
    push(speed);
    push(capacity);
    push(addresses);

    let mut connections = Family::new(
        "netmon_network_connections",
        "TCP sockets by state, IPv4 and IPv6, from the kernel's socket dump.",
        MetricType::GAUGE,
    );
    for (state, count) in &snapshot.connections {
        connections.sample(&[("status", state)], *count as f64);
    }
    push(connections);

    let mut listening = Family::new(
        "netmon_listening_socket_info",
        "Listening TCP and bound UDP sockets with the processes holding them; the value is \
         always 1. pid and process are empty when no process could be found.",
        MetricType::GAUGE,
    );
    for socket in &snapshot.listening {
        let port = socket.port.to_string();
        let labels = |pid: &str, process: &str| {
            [
                ("protocol", socket.protocol),
                ("address", socket.address.as_str()),
                ("port", port.as_str()),
                ("pid", pid),
                ("process", process),
            ]
            .map(|(k, v)| (k, v.to_string()))
        };
        let owners: Vec<[(&str, String); 5]> = if socket.processes.is_empty() {
            vec![labels("", "")]
        } else {
            socket
                .processes
                .iter()
                .map(|p| labels(&p.pid.to_string(), &p.name))
                .collect()
        };
        for owner in owners {
            let pairs: Vec<(&str, &str)> = owner.iter().map(|(k, v)| (*k, v.as_str())).collect();
            listening.sample(&pairs, 1.0);
        }
    }
    push(listening);

    // Counted by the kernel programs, in every namespace.
    let kernel = &snapshot.kernel;
    let mut bytes = Family::new(
        "netmon_kernel_bytes_total",
        "Bytes seen by the kernel hooks per namespace and interface: tx at net_dev_xmit \
         (link-layer header included), rx at netif_receive_skb (link-layer header excluded).",
        MetricType::COUNTER,
    );
    let mut packets = Family::new(
        "netmon_kernel_packets_total",
        "Packets seen by the kernel hooks per namespace and interface.",
        MetricType::COUNTER,
    );
    let mut failed = Family::new(
        "netmon_kernel_transmit_failures_total",
        "Transmits the device refused (net_dev_xmit with a non-zero return code); not counted \
         when the transmit probe runs on a classic tracepoint.",
        MetricType::COUNTER,
    );
    for traffic in &kernel.traffic {
        let netns = traffic.netns.to_string();
        let labels = |direction| {
            [
                ("netns", netns.as_str()),
                ("interface", traffic.interface.as_str()),
                ("direction", direction),
            ]
        };
        bytes.sample(&labels("rx"), traffic.rx_bytes as f64);
        bytes.sample(&labels("tx"), traffic.tx_bytes as f64);
        packets.sample(&labels("rx"), traffic.rx_packets as f64);
        packets.sample(&labels("tx"), traffic.tx_packets as f64);
        failed.sample(
            &[("netns", &netns), ("interface", &traffic.interface)],
            traffic.tx_failed as f64,
        );
    }
    push(bytes);
    push(packets);
    push(failed);

    let mut drops = Family::new(
        "netmon_kernel_drops_total",
        "Packets the kernel dropped (kfree_skb), by namespace, interface, drop reason and protocol.",
        MetricType::COUNTER,
    );
    for drop in &kernel.drops {
        drops.sample(
            &[
                ("netns", &drop.netns.to_string()),
                ("interface", &drop.interface),
                ("reason", &drop.reason),
                ("protocol", &drop.protocol),
            ],
            drop.count as f64,
        );
    }
    push(drops);

    let mut transitions = Family::new(
        "netmon_tcp_state_transitions_total",
        "TCP state transitions (inet_sock_set_state), by namespace and address family.",
        MetricType::COUNTER,
    );
    for t in &kernel.transitions {
        transitions.sample(
            &[
                ("netns", &t.netns.to_string()),
                ("family", t.family),
                ("from", &t.from),
                ("to", &t.to),
            ],
            t.count as f64,
        );
    }
    push(transitions);

    let mut handshake = Family::new(
        "netmon_tcp_handshake_duration_seconds",
        "TCP handshake round trip by namespace, the kernel's own sample when the connection \
         becomes ESTABLISHED: SYN to SYN-ACK for active opens, SYN-ACK to ACK for passive opens.",
        MetricType::HISTOGRAM,
    );
    for histogram in &kernel.handshakes {
        handshake.histogram(
            &[
                ("netns", &histogram.netns.to_string()),
                ("open", histogram.open),
            ],
            histogram,
        );
    }
    push(handshake);

    let mut retransmits = Family::new(
        "netmon_tcp_retransmits_total",
        "TCP segments retransmitted (tcp_retransmit_skb).",
        MetricType::COUNTER,
    );
    retransmits.sample(&[], kernel.tcp_retransmits as f64);
    push(retransmits);

    let mut resets = Family::new(
        "netmon_tcp_resets_total",
        "TCP resets sent (tcp_send_reset) and received (tcp_receive_reset).",
        MetricType::COUNTER,
    );
    resets.sample(&[("direction", "sent")], kernel.tcp_resets_sent as f64);
    resets.sample(
        &[("direction", "received")],
        kernel.tcp_resets_received as f64,
    );
    push(resets);

    let mut full = Family::new(
        "netmon_probe_map_full_total",
        "Events a kernel program could not record because its map was full.",
        MetricType::COUNTER,
    );
    full.sample(&[("map", "traffic")], kernel.traffic_map_full as f64);
    full.sample(&[("map", "drops")], kernel.drop_map_full as f64);
    full.sample(&[("map", "handshakes")], kernel.handshake_map_full as f64);
    full.sample(&[("map", "transitions")], kernel.transition_map_full as f64);
    push(full);

    let mut entries = Family::new(
        "netmon_probe_map_entries",
        "Slots in use in each kernel table; bounded, and cleaned of interfaces and namespaces \
         that are gone.",
        MetricType::GAUGE,
    );
    for (map, count) in &kernel.map_entries {
        entries.sample(&[("map", map)], *count as f64);
    }
    push(entries);

    let mut read_failures = Family::new(
        "netmon_probe_read_failures_total",
        "Kernel memory reads that failed inside the programs.",
        MetricType::COUNTER,
    );
    read_failures.sample(&[], kernel.read_failures as f64);
    push(read_failures);

    // The agent itself.
    let mut attached = Family::new(
        "netmon_probe_attached",
        "1 when the probe is attached, with the method it got; 0 with method \"none\" when no \
         method worked.",
        MetricType::GAUGE,
    );
    for status in &snapshot.probes {
        let method = status.method.map(|m| m.as_str()).unwrap_or("none");
        attached.sample(
            &[("probe", status.probe.as_str()), ("method", method)],
            f64::from(u8::from(status.method.is_some())),
        );
    }
    push(attached);

    let mut build = Family::new(
        "netmon_build_info",
        "The agent's version; the value is always 1.",
        MetricType::GAUGE,
    );
    build.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    push(build);

    let mut duration = Family::new(
        "netmon_collector_duration_seconds",
        "Time each collector took in the newest poll.",
        MetricType::GAUGE,
    );
    let mut success = Family::new(
        "netmon_collector_success",
        "1 when the collector succeeded in the newest poll.",
        MetricType::GAUGE,
    );
    for run in &snapshot.collectors {
        duration.sample(&[("collector", run.collector)], run.duration_seconds);
        success.sample(
            &[("collector", run.collector)],
            f64::from(u8::from(run.success)),
        );
    }
    push(duration);
    push(success);

    let mut poll = Family::new(
        "netmon_poll_duration_seconds",
        "Time the newest poll took.",
        MetricType::GAUGE,
    );
    poll.sample(&[], snapshot.poll_duration_seconds);
    push(poll);

    let mut timestamp = Family::new(
        "netmon_snapshot_timestamp_seconds",
        "When the newest snapshot was taken, in seconds since the Unix epoch.",
        MetricType::GAUGE,
    );
    timestamp.sample(&[], snapshot.timestamp_ms as f64 / 1000.0);
    push(timestamp);

    let mut reload_ok = Family::new(
        "netmon_config_last_reload_successful",
        "1 when the last configuration (re)load succeeded; 0 while a broken file is ignored.",
        MetricType::GAUGE,
    );
    reload_ok.sample(
        &[],
        f64::from(u8::from(agent.reload.last_reload_successful)),
    );
    push(reload_ok);
    let mut reload_time = Family::new(
        "netmon_config_last_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully, in seconds since the Unix epoch.",
        MetricType::GAUGE,
    );
    reload_time.sample(&[], agent.reload.last_success_timestamp_seconds);
    push(reload_time);

    let mut findings = Family::new(
        "netmon_diagnosis_finding",
        "Active findings of the diagnosis (/api/v1/diagnosis); the value is always 1.",
        MetricType::GAUGE,
    );
    for finding in &agent.diagnosis.findings {
        findings.sample(
            &[
                ("id", finding.id),
                ("severity", finding.severity.as_str()),
                ("subject", &finding.subject),
            ],
            1.0,
        );
    }
    push(findings);

    // Families with no sample are left out: the text format has nothing to say for them.
    out.retain(|family| !family.get_metric().is_empty());
    out
}

/// Renders the Prometheus text format 0.0.4.
pub fn render_text(snapshot: &Snapshot, agent: &AgentState) -> anyhow::Result<String> {
    let mut out = String::new();
    prometheus::TextEncoder::new().encode_utf8(&families(snapshot, agent), &mut out)?;
    Ok(out)
}

/// Content type of the OpenMetrics text format.
pub const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (with a quality above zero).
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f64>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
    })
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if value.is_nan() {
        "NaN".to_string()
    } else {
        format!("{value}")
    }
}

fn labels_text(pairs: &[LabelPair], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = pairs
        .iter()
        .map(|p| format!("{}=\"{}\"", p.name(), escape_label(p.value())))
        .collect();
    if let Some((name, value)) = extra {
        parts.push(format!("{name}=\"{value}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Renders OpenMetrics 1.0: counters are announced without `_total`, `_info` gauges are info
/// metrics, and the exposition ends with `# EOF`.
pub fn render_openmetrics(snapshot: &Snapshot, agent: &AgentState) -> String {
    let mut out = String::new();
    for family in families(snapshot, agent) {
        let name = family.name();
        let (base, kind) = match family.get_field_type() {
            MetricType::COUNTER => (name.strip_suffix("_total").unwrap_or(name), "counter"),
            MetricType::HISTOGRAM => (name, "histogram"),
            _ => match name.strip_suffix("_info") {
                Some(base) => (base, "info"),
                None => (name, "gauge"),
            },
        };
        out.push_str(&format!("# TYPE {base} {kind}\n"));
        out.push_str(&format!(
            "# HELP {base} {}\n",
            family.help().replace('\\', "\\\\").replace('\n', "\\n")
        ));
        for metric in family.get_metric() {
            let labels = metric.get_label();
            match kind {
                "counter" => out.push_str(&format!(
                    "{base}_total{} {}\n",
                    labels_text(labels, None),
                    format_value(metric.get_counter().get_value())
                )),
                "histogram" => {
                    let h = metric.get_histogram();
                    for bucket in h.get_bucket() {
                        out.push_str(&format!(
                            "{base}_bucket{} {}\n",
                            labels_text(labels, Some(("le", format_value(bucket.upper_bound())))),
                            bucket.cumulative_count()
                        ));
                    }
                    out.push_str(&format!(
                        "{base}_bucket{} {}\n",
                        labels_text(labels, Some(("le", "+Inf".to_string()))),
                        h.get_sample_count()
                    ));
                    out.push_str(&format!(
                        "{base}_count{} {}\n",
                        labels_text(labels, None),
                        h.get_sample_count()
                    ));
                    out.push_str(&format!(
                        "{base}_sum{} {}\n",
                        labels_text(labels, None),
                        format_value(h.get_sample_sum())
                    ));
                }
                "info" => out.push_str(&format!("{base}_info{} 1\n", labels_text(labels, None))),
                _ => out.push_str(&format!(
                    "{base}{} {}\n",
                    labels_text(labels, None),
                    format_value(metric.get_gauge().get_value())
                )),
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Interface, InterfaceCounters, KernelCounters};

    #[test]
    fn renders_interface_counters_with_help_and_type() {
        let snapshot = Snapshot {
            interfaces: vec![Interface {
                name: "eth0".into(),
                ifindex: 2,
                operstate: "up".into(),
                up: true,
                mtu: 1500,
                speed_mbps: Some(1000),
                duplex: Some("full".into()),
                mac: "02:00:00:00:00:01".into(),
                counters: InterfaceCounters {
                    rx_bytes: 1234,
                    tx_packets: 7,
                    ..Default::default()
                },
                ..Default::default()
            }],
            kernel: KernelCounters {
                handshakes: vec![HandshakeHistogram {
                    netns: 7,
                    open: "active",
                    buckets: {
                        let mut b = vec![0; 32];
                        b[0] = 3;
                        b[2] = 1;
                        b
                    },
                    sum_ns: 9_000,
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        let text = render_text(&snapshot, &AgentState::default()).unwrap();
        assert!(text.contains("# TYPE netmon_network_bytes_total counter"));
        assert!(
            text.contains("netmon_network_bytes_total{interface=\"eth0\",direction=\"rx\"} 1234")
        );
        assert!(
            text.contains("netmon_network_packets_total{interface=\"eth0\",direction=\"tx\"} 7")
        );
        assert!(text.contains("netmon_network_speed_bytes{interface=\"eth0\"} 125000000"));
        assert!(text.contains("netmon_network_up{interface=\"eth0\"} 1"));
        // 3 handshakes under 2 us and 1 in [4, 8) us.
        assert!(text.contains(
            "netmon_tcp_handshake_duration_seconds_bucket{netns=\"7\",open=\"active\",le=\"0.000002\"} 3"
        ));
        assert!(text.contains(
            "netmon_tcp_handshake_duration_seconds_bucket{netns=\"7\",open=\"active\",le=\"0.000008\"} 4"
        ));
        assert!(text.contains(
            "netmon_tcp_handshake_duration_seconds_count{netns=\"7\",open=\"active\"} 4"
        ));

        let om = render_openmetrics(&snapshot, &AgentState::default());
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("# TYPE netmon_network_bytes counter\n"));
        assert!(
            om.contains("netmon_network_bytes_total{interface=\"eth0\",direction=\"rx\"} 1234\n")
        );
        assert!(om.contains("# TYPE netmon_network info\n"));
        assert!(om.contains("# TYPE netmon_build info\n"));
        assert!(om.contains("# TYPE netmon_network_up gauge\n"));
        assert!(om.contains(
            "netmon_tcp_handshake_duration_seconds_bucket{netns=\"7\",open=\"active\",le=\"+Inf\"} 4\n"
        ));
    }

    #[test]
    fn negotiates_openmetrics() {
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3"
        ));
        assert!(!wants_openmetrics("text/plain"));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
        assert!(!wants_openmetrics(""));
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
