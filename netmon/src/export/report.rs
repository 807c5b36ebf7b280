//! The text report: what `netmon snapshot` saw and what `netmon diagnose` found, as
//! readable tables.
use std::fmt::Write as _;

use crate::{
    diagnose::Diagnosis,
    model::{KernelCounters, Snapshot},
    rates::Summary,
};

/// Left-aligned columns, each as wide as its widest cell.
fn table(out: &mut String, title: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let _ = writeln!(out, "{title}");
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    let _ = writeln!(out);
}

/// `-` for what is not known.
fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_string())
}

/// The snapshot's tables; `rates` are the interfaces' over the sampled window.
pub fn render(snapshot: &Snapshot, rates: Option<&Summary>) -> String {
    let mut out = String::new();
    interfaces(&mut out, snapshot);
    if let Some(rates) = rates {
        interface_rates(&mut out, rates);
    }
    kernel_counts(&mut out, &snapshot.kernel);
    addresses(&mut out, snapshot);
    connections(&mut out, snapshot);
    listening(&mut out, snapshot);
    probes(&mut out, snapshot);
    out
}

fn interfaces(out: &mut String, snapshot: &Snapshot) {
    let rows: Vec<Vec<String>> = snapshot
        .interfaces
        .iter()
        .map(|i| {
            let c = &i.counters;
            vec![
                i.name.clone(),
                i.operstate.clone(),
                i.mtu.to_string(),
                or_dash(i.speed_mbps.map(|s| s.to_string())),
                or_dash(i.duplex.clone()),
                i.mac.clone(),
                c.rx_bytes.to_string(),
                c.rx_packets.to_string(),
                c.rx_errors.to_string(),
                c.rx_dropped.to_string(),
                c.tx_bytes.to_string(),
                c.tx_packets.to_string(),
                c.tx_errors.to_string(),
                c.tx_dropped.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "INTERFACES",
        &[
            "NAME", "STATE", "MTU", "MBPS", "DUPLEX", "MAC", "RX_BYTES", "RX_PKTS", "RX_ERR",
            "RX_DROP", "TX_BYTES", "TX_PKTS", "TX_ERR", "TX_DROP",
        ],
        &rows,
    );
}

fn interface_rates(out: &mut String, rates: &Summary) {
    let rows: Vec<Vec<String>> = rates
        .per_interface
        .iter()
        .map(|r| {
            vec![
                r.interface.clone(),
                format!("{:.0}", r.rx.bytes_per_second),
                format!("{:.1}", r.rx.packets_per_second),
                format!("{:.0}", r.tx.bytes_per_second),
                format!("{:.1}", r.tx.packets_per_second),
                format!(
                    "{:.2}",
                    r.rx.error_rate_percent.max(r.tx.error_rate_percent)
                ),
                format!("{:.2}", r.rx.drop_rate_percent.max(r.tx.drop_rate_percent)),
            ]
        })
        .collect();
    table(
        out,
        &format!("RATES (over {:.1} s)", rates.window_seconds),
        &[
            "NAME", "RX_B/S", "RX_PKT/S", "TX_B/S", "TX_PKT/S", "ERR_%", "DROP_%",
        ],
        &rows,
    );
}

/// What the programs counted while sampling.
fn kernel_counts(out: &mut String, kernel: &KernelCounters) {
    let rows: Vec<Vec<String>> = kernel
        .traffic
        .iter()
        .map(|t| {
            vec![
                t.netns.to_string(),
                or_dash((!t.interface.is_empty()).then(|| t.interface.clone())),
                t.rx_packets.to_string(),
                t.rx_bytes.to_string(),
                t.tx_packets.to_string(),
                t.tx_bytes.to_string(),
                t.tx_failed.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "KERNEL TRAFFIC (counted by the programs while sampling, every namespace)",
        &[
            "NETNS",
            "INTERFACE",
            "RX_PKTS",
            "RX_BYTES",
            "TX_PKTS",
            "TX_BYTES",
            "TX_FAILED",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = kernel
        .drops
        .iter()
        .map(|d| {
            vec![
                d.netns.to_string(),
                or_dash((!d.interface.is_empty()).then(|| d.interface.clone())),
                d.reason.clone(),
                d.protocol.clone(),
                d.count.to_string(),
            ]
        })
        .collect();
    table(
        out,
        "KERNEL DROPS",
        &["NETNS", "INTERFACE", "REASON", "PROTOCOL", "PACKETS"],
        &rows,
    );
    let _ = writeln!(
        out,
        "TCP: {} transitions, {} retransmits, {} resets sent, {} received\n",
        kernel.transitions.iter().map(|t| t.count).sum::<u64>(),
        kernel.tcp_events.iter().map(|e| e.retransmits).sum::<u64>(),
        kernel.tcp_events.iter().map(|e| e.resets_sent).sum::<u64>(),
        kernel
            .tcp_events
            .iter()
            .map(|e| e.resets_received)
            .sum::<u64>()
    );
}

fn addresses(out: &mut String, snapshot: &Snapshot) {
    let rows: Vec<Vec<String>> = snapshot
        .interfaces
        .iter()
        .flat_map(|i| {
            i.addresses.iter().map(|a| {
                vec![
                    i.name.clone(),
                    a.family.to_string(),
                    format!("{}/{}", a.address, a.prefix_length),
                    a.netmask.clone(),
                    or_dash(a.broadcast.clone()),
                ]
            })
        })
        .collect();
    table(
        out,
        "ADDRESSES",
        &["INTERFACE", "FAMILY", "ADDRESS", "NETMASK", "BROADCAST"],
        &rows,
    );
}

fn connections(out: &mut String, snapshot: &Snapshot) {
    let rows: Vec<Vec<String>> = snapshot
        .connections
        .iter()
        .map(|(state, count)| vec![state.to_string(), count.to_string()])
        .collect();
    table(out, "TCP CONNECTIONS", &["STATE", "COUNT"], &rows);
}

fn listening(out: &mut String, snapshot: &Snapshot) {
    let rows: Vec<Vec<String>> = snapshot
        .listening
        .iter()
        .map(|l| {
            let processes = l
                .processes
                .iter()
                .map(|p| format!("{}/{}", p.pid, p.name))
                .collect::<Vec<_>>()
                .join(",");
            vec![
                l.protocol.to_string(),
                l.address.clone(),
                l.port.to_string(),
                if processes.is_empty() {
                    "-".to_string()
                } else {
                    processes
                },
            ]
        })
        .collect();
    table(
        out,
        "LISTENING",
        &["PROTO", "ADDRESS", "PORT", "PROCESSES"],
        &rows,
    );
}

fn probes(out: &mut String, snapshot: &Snapshot) {
    let rows: Vec<Vec<String>> = snapshot
        .probes
        .iter()
        .map(|p| {
            vec![
                p.probe.as_str().to_string(),
                p.method_name().to_string(),
                p.failures
                    .last()
                    .map(|f| f.error.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(out, "PROBES", &["PROBE", "METHOD", "LAST ERROR"], &rows);
}

/// The diagnosis as text: one block per finding.
pub fn render_diagnosis(diagnosis: &Diagnosis) -> String {
    let mut out = String::new();
    let status = diagnosis.status.map_or("ok", |s| s.as_str());
    let _ = writeln!(
        out,
        "status: {status} ({} findings over {:.0} s)",
        diagnosis.findings.len(),
        diagnosis.window_seconds
    );
    for finding in &diagnosis.findings {
        let _ = writeln!(
            out,
            "\n[{}] {} {}: {}",
            finding.severity.as_str(),
            finding.id,
            finding.subject,
            finding.summary
        );
        for e in &finding.evidence {
            let _ = writeln!(out, "  {} = {:.2} {}", e.name, e.value, e.unit);
        }
        for step in &finding.next_steps {
            let _ = writeln!(out, "  next: {step}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Interface;

    #[test]
    fn aligns_columns() {
        let snapshot = Snapshot {
            interfaces: vec![Interface {
                name: "a-long-name".into(),
                operstate: "up".into(),
                mtu: 1500,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&snapshot, None);
        let mut lines = text.lines().skip(1);
        let (header, row) = (lines.next().unwrap(), lines.next().unwrap());
        assert_eq!(header.find("STATE"), row.find("up"));
        assert!(row.starts_with("a-long-name  up"));
    }
}
