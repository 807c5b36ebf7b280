//! Pressure before loss: the queues and tables that fill up before packets die, per
//! namespace (listen queues, the namespace's own TCP and UDP counters, connection tracking,
//! queueing disciplines) and host-wide (the CPUs' backlogs, TCP memory). No I/O here.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Owner;

/// One listening socket's accept queue, as `ss -ltn` shows it (Recv-Q, Send-Q).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ListenQueue {
    pub address: String,
    pub port: u16,
    /// Connections accepted by the kernel, waiting for the application's `accept()`.
    pub length: u64,
    /// The listen backlog: connections past it are dropped (`ListenOverflows`).
    pub limit: u64,
    /// Packets the socket dropped (`sk_drops`).
    pub drops: u64,
    /// The socket's inode, which names its processes.
    #[serde(skip)]
    pub inode: u32,
    /// The processes that hold it, looked for where its queue is full.
    pub processes: Vec<Owner>,
}

impl ListenQueue {
    /// Whether the queue is at its limit: the next connection is dropped.
    pub fn is_full(&self) -> bool {
        self.limit > 0 && self.length >= self.limit
    }
}

/// A namespace's connection tracking.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Conntrack {
    pub entries: u64,
    pub limit: u64,
    pub insert_failed: u64,
    pub drop: u64,
    pub early_drop: u64,
}

/// One queueing discipline and its counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Qdisc {
    pub ifindex: u32,
    /// The interface's name, where the namespace's links were listed.
    pub interface: String,
    /// `tbf`, `fq_codel`, `noqueue`...
    pub kind: String,
    /// As `tc` writes it: `8001:`, `1:10`.
    pub handle: String,
    pub parent: String,
    pub bytes: u64,
    pub packets: u64,
    pub drops: u64,
    pub overlimits: u64,
    pub requeues: u64,
    pub backlog_bytes: u64,
    pub backlog_packets: u64,
}

/// What fills up in one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NamespacePressure {
    pub netns: u32,
    /// How long ago it was read: a poll reads the other namespaces in turn (see
    /// `collect/rotation.rs`), the agent's own every time.
    pub read_ms_ago: u64,
    /// The namespace's own counters (`TcpExt_ListenOverflows`, `Udp_RcvbufErrors`, ...).
    pub counters: BTreeMap<String, u64>,
    pub listeners: Vec<ListenQueue>,
    /// None where the namespace tracks no connections (see `missing`).
    pub conntrack: Option<Conntrack>,
    pub qdiscs: Vec<Qdisc>,
    /// Each source that could not be read, and why, in words an operator can act on.
    pub missing: BTreeMap<&'static str, String>,
}

/// One CPU's row of the network stack's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SoftnetCpu {
    pub cpu: u32,
    pub processed: u64,
    /// Packets dropped because the CPU's backlog was full.
    pub dropped: u64,
    /// Times the receive processing ran out of its budget with work left.
    pub times_squeezed: u64,
    /// Packets waiting in the CPU's backlog now (Linux 5.10 and later).
    pub backlog_packets: Option<u64>,
}

/// The memory of all TCP sockets, in pages, against `net.ipv4.tcp_mem`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TcpMemory {
    pub pages: u64,
    /// Where the kernel starts to press sockets to give memory back.
    pub pressure_pages: u64,
    /// What TCP may take at most.
    pub limit_pages: u64,
}

/// Pressure, per namespace and host-wide.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pressure {
    pub namespaces: Vec<NamespacePressure>,
    pub softnet: Vec<SoftnetCpu>,
    pub tcp_memory: Option<TcpMemory>,
}
