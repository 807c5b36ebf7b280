//! The two text formats: Prometheus 0.0.4 and OpenMetrics 1.0.
use prometheus::proto::{LabelPair, MetricType};

use crate::{export::metrics::families, model::Snapshot, state::AgentStatus};

/// Renders the Prometheus text format 0.0.4.
pub fn render_text(snapshot: &Snapshot, agent: &AgentStatus) -> anyhow::Result<String> {
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
pub fn render_openmetrics(snapshot: &Snapshot, agent: &AgentStatus) -> String {
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
    use crate::model::{HandshakeHistogram, Interface, InterfaceCounters, KernelCounters};

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
                    netns_cookie: 0,
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
        let text = render_text(&snapshot, &AgentStatus::default()).unwrap();
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

        let om = render_openmetrics(&snapshot, &AgentStatus::default());
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
