//! What the diagnosis reports: its thresholds and the ports that should be listening (the
//! file's `[thresholds]` and `[[expected_ports]]`).
use serde::{Deserialize, Serialize};

/// The diagnosis's part of the configuration; each rule takes its own piece of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiagnosisSettings {
    pub thresholds: Thresholds,
    /// Ports that should be listening; when any is given, other listeners are reported.
    pub expected_ports: Vec<ExpectedPort>,
}

/// Where the diagnosis starts to report.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Errors as a percentage of packets in a direction (warning; 5x is critical).
    pub error_rate_percent: f64,
    /// Drops (device and kernel) as a percentage of packets (warning; 5x is critical).
    pub drop_rate_percent: f64,
    /// Utilization of link speed or configured capacity (warning; 95 % is critical).
    pub saturation_percent: f64,
    /// Sockets in these states above which the diagnosis reports a surge.
    pub time_wait: u64,
    pub close_wait: u64,
    pub syn_sent: u64,
    pub syn_recv: u64,
    /// Ephemeral ports in use as a percentage of the range (warning; 95 % is critical).
    pub ephemeral_ports_percent: f64,
    /// Failed connects to or from one peer in the window from which it is reported (warning;
    /// critical when none succeeded).
    pub peer_failures: u64,
    /// Connections a namespace's listeners dropped as their accept queues overflowed in the
    /// window (`ListenOverflows`), from which it is reported (critical with a queue full).
    pub listen_overflows: u64,
    /// Connection tracking entries as a percentage of the limit (warning; critical when
    /// inserts fail or packets are dropped for want of an entry).
    pub conntrack_percent: f64,
    /// Packets a CPU's full backlog dropped in the window (warning; critical at 100x).
    pub softnet_drops: u64,
    /// Times a CPU's receive processing ran out of budget with work left in the window.
    pub softnet_squeezes: u64,
    /// Packets a queueing discipline dropped in the window (warning; critical at 100x).
    pub qdisc_drops: u64,
    /// Datagrams a namespace's UDP sockets dropped as their receive buffers were full in the
    /// window (warning; critical at 100x).
    pub udp_receive_buffer_errors: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            error_rate_percent: 1.0,
            drop_rate_percent: 1.0,
            saturation_percent: 80.0,
            time_wait: 5000,
            close_wait: 200,
            syn_sent: 100,
            syn_recv: 100,
            ephemeral_ports_percent: 80.0,
            peer_failures: 5,
            listen_overflows: 1,
            conntrack_percent: 90.0,
            softnet_drops: 1,
            softnet_squeezes: 1000,
            qdisc_drops: 100,
            udp_receive_buffer_errors: 1,
        }
    }
}

/// A port that should be listening.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedPort {
    pub port: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
    /// The process name that should hold it, if it matters.
    #[serde(default)]
    pub process: Option<String>,
    /// Whether it should listen on loopback only (a database, a cache).
    #[serde(default)]
    pub local_only: bool,
}

fn tcp() -> String {
    "tcp".to_string()
}
