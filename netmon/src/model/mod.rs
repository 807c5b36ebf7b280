//! The Snapshot (one consistent picture of the host, taken by one poll) and the History of
//! snapshots from which rates are computed. No I/O here.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use netmon_common::{drops::DropKey, traffic::InterfaceKey};
use serde::Serialize;

pub mod drops;
pub mod kernel_tables;
pub mod peer_names;
pub mod peers;
pub mod pressure;
pub mod probes;
pub mod processes;

use drops::DropSampleRecord;
use probes::ProbeStatus;

/// The ephemeral port range (`net.ipv4.ip_local_port_range`), and how many of its ports TCP
/// sockets that are not listening use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EphemeralPorts {
    pub first: u16,
    pub last: u16,
    pub in_use: u64,
}

impl EphemeralPorts {
    pub fn range_size(&self) -> u64 {
        if self.last < self.first {
            0
        } else {
            u64::from(self.last - self.first) + 1
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// A process holding a socket.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Owner {
    pub pid: u32,
    pub name: String,
}

/// Socket inode -> ids of the processes holding the socket, as a look in the processes' file
/// tables finds them.
pub type SocketHolders = HashMap<u32, BTreeSet<u32>>;

/// Kernel counters of one interface, as `ip -s link` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// One interface of the agent's network namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    /// `up`, `down`, `unknown`, ... as the kernel's operstate says.
    pub operstate: String,
    pub up: bool,
    pub mtu: u32,
    /// Link speed in Mbit/s; `None` when the device does not report one.
    pub speed_mbps: Option<u64>,
    /// `full`, `half`; `None` when unknown.
    pub duplex: Option<String>,
    pub mac: String,
    pub counters: InterfaceCounters,
    /// IPv4 and IPv6 addresses.
    pub addresses: Vec<Address>,
    /// Capacity used for utilization, in Mbit/s: the configured capacity if there is one,
    /// else the link speed.
    pub capacity_mbps: Option<u64>,
}

/// An IPv4 or IPv6 address of an interface.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Address {
    /// `inet` or `inet6`.
    pub family: &'static str,
    pub address: String,
    pub prefix_length: u8,
    pub netmask: String,
    /// IPv4 broadcast address, when the interface has one.
    pub broadcast: Option<String>,
}

/// A socket waiting for peers, and the processes holding it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListeningSocket {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    pub address: String,
    pub port: u16,
    pub processes: Vec<Owner>,
}

/// Traffic counted by the kernel programs for one interface, in any namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrafficCount {
    /// Network namespace inode number.
    pub netns: u32,
    /// The namespace's cookie, which tells it from an earlier namespace that had its inode;
    /// 0 when unknown.
    #[serde(skip)]
    pub netns_cookie: u64,
    pub ifindex: u32,
    /// The interface's name in its namespace; empty when it could not be resolved.
    pub interface: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_failed: u64,
}

impl TrafficCount {
    pub fn key(&self) -> InterfaceKey {
        InterfaceKey {
            netns: self.netns,
            ifindex: self.ifindex,
        }
    }
}

/// Packets the kernel dropped, for one (namespace, interface, reason, protocol).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DropCount {
    #[serde(skip)]
    pub key: DropKey,
    pub netns: u32,
    /// As [`TrafficCount::netns_cookie`].
    #[serde(skip)]
    pub netns_cookie: u64,
    pub ifindex: u32,
    /// The device's name in its namespace; empty when the packet had no device.
    pub interface: String,
    /// `ipv4`, `ipv6`, `arp`, or the ethertype in hex.
    pub protocol: String,
    /// The kernel's reason name (without `SKB_DROP_REASON_`), a number, or `unknown`.
    pub reason: String,
    pub count: u64,
}

/// A TCP state transition in one namespace and how often it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TcpTransition {
    pub netns: u32,
    /// As [`TrafficCount::netns_cookie`].
    #[serde(skip)]
    pub netns_cookie: u64,
    pub family: &'static str,
    pub from: String,
    pub to: String,
    pub count: u64,
}

/// Retransmitted segments and resets sent and received in one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TcpEvents {
    pub netns: u32,
    /// As [`TrafficCount::netns_cookie`].
    #[serde(skip)]
    pub netns_cookie: u64,
    pub retransmits: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
}

/// Handshake durations of one namespace and kind of open: bucket `i` counts durations in
/// `[2^i, 2^(i+1))` microseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HandshakeHistogram {
    pub netns: u32,
    /// As [`TrafficCount::netns_cookie`].
    #[serde(skip)]
    pub netns_cookie: u64,
    /// `active` (SYN_SENT to ESTABLISHED) or `passive` (SYN_RECV to ESTABLISHED).
    pub open: &'static str,
    pub buckets: Vec<u64>,
    pub sum_ns: u64,
}

impl HandshakeHistogram {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Upper bound of bucket `i` in seconds.
    pub fn upper_bound_seconds(bucket: usize) -> f64 {
        (1u64 << (bucket + 1)) as f64 / 1e6
    }
}

/// Everything the kernel programs counted, named.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KernelCounters {
    pub traffic: Vec<TrafficCount>,
    pub drops: Vec<DropCount>,
    pub transitions: Vec<TcpTransition>,
    pub handshakes: Vec<HandshakeHistogram>,
    /// Retransmits and resets by namespace.
    pub tcp_events: Vec<TcpEvents>,
    /// Connection results by namespace, role and peer, folded (`peers::PeerLedger`).
    pub peers: Vec<peers::TcpPeer>,
    #[serde(flatten)]
    pub programs: ProgramCounters,
    /// Slots in use in each kernel table after the poll's clean-up.
    pub map_entries: Vec<(&'static str, usize)>,
}

/// The programs' counters of their own failures, and the kernel memory of their tables.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProgramCounters {
    /// What each table could not store, as it had no free slot for a new identity.
    pub map_full: Vec<(&'static str, u64)>,
    /// Events each hook's program did not see (the kernel skipped it, nested on a CPU), by
    /// hook; empty before Linux 5.12, which does not count them.
    pub missed: Vec<(&'static str, u64)>,
    /// Namespace teardowns the kernel could not tell the agent of (its ring was full).
    pub namespace_notices_lost: u64,
    /// Kernel memory of each table's maps, in bytes.
    pub map_bytes: Vec<(&'static str, u64)>,
    pub read_failures: u64,
}

/// How one collector fared in a poll.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CollectorRun {
    pub collector: &'static str,
    pub success: bool,
    pub duration_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One poll's picture of the host.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// Milliseconds since the Unix epoch when the poll began.
    pub timestamp_ms: u64,
    /// Inode of the agent's own network namespace.
    pub netns: u32,
    /// Seconds on a monotonic clock, for rates; not serialized.
    #[serde(skip)]
    pub monotonic_seconds: f64,
    pub interfaces: Vec<Interface>,
    /// TCP sockets by state (all eleven states, IPv4 and IPv6).
    pub connections: BTreeMap<&'static str, u64>,
    /// Ephemeral ports in use by TCP sockets.
    pub ephemeral_ports: EphemeralPorts,
    /// Where the connections by state came from: `socket_iterator` (a kernel program walking
    /// the socket tables) or `socket_dump` (sock_diag over netlink); none when neither could
    /// be read.
    pub connections_source: Option<&'static str>,
    /// Why the socket iterator is not used, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_iterator_error: Option<String>,
    /// Where the processes holding sockets were found: `file_iterator` (a kernel program
    /// walking the file tables) or `proc` (every `/proc/<pid>/fd` link); none before the first
    /// look.
    pub socket_owners_source: Option<&'static str>,
    /// Why the socket file iterator is not used, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_iterator_error: Option<String>,
    /// How the teardown of namespaces is watched (`fentry`, `kprobe`), when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_watch: Option<&'static str>,
    /// Why it is not: then counts of a namespace that no process or mount holds are forgotten
    /// at once, as if it were gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_watch_error: Option<String>,
    /// The build of the kernel programs loaded (`bpf_loop`, or `bounded_walk` on kernels
    /// before 5.17).
    pub program_variant: Option<probes::ProgramVariant>,
    /// Why the socket hooks keep no memo, when they keep none (the thread watch is not
    /// attached): each call then counts in its slot, exactly and at a higher cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_memo_error: Option<String>,
    pub listening: Vec<ListeningSocket>,
    pub kernel: KernelCounters,
    /// The queues and tables that fill up before packets die.
    pub pressure: pressure::Pressure,
    /// Socket I/O by process and cgroup.
    pub processes: processes::ProcessTraffic,
    pub probes: Vec<ProbeStatus>,
    /// Why the kernel programs could not be loaded at all, when they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_load_error: Option<String>,
    /// The drops sampled since the previous poll, oldest first; the agent's state keeps
    /// the recent ones (see [`drops::RecentDrops`]), not the History.
    #[serde(skip)]
    pub drop_samples: Vec<DropSampleRecord>,
    /// Drop samples received since the agent started.
    pub drop_samples_total: u64,
    /// Real drops the drop hook did not sample (budget spent, or its ring full).
    pub drop_samples_suppressed: u64,
    /// Why drops are not sampled, when they are not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_sampling_error: Option<String>,
    pub collectors: Vec<CollectorRun>,
    pub poll_duration_seconds: f64,
}

impl Snapshot {
    /// The interfaces by name and index, to find in this snapshot the one an interface of
    /// another snapshot was: the same name with another index is another interface. Built
    /// once for a comparison, so that comparing two snapshots of a thousand interfaces is not
    /// a million name comparisons.
    pub fn interfaces_by_identity(&self) -> HashMap<(&str, u32), &Interface> {
        self.interfaces
            .iter()
            .map(|i| ((i.name.as_str(), i.ifindex), i))
            .collect()
    }
}

/// A bounded ring of snapshots, newest last.
#[derive(Clone, Debug)]
pub struct History {
    snapshots: VecDeque<Arc<Snapshot>>,
    capacity: usize,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2);
        Self {
            snapshots: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub fn push(&mut self, snapshot: Arc<Snapshot>) {
        while self.snapshots.len() >= self.capacity {
            self.snapshots.pop_front();
        }
        self.snapshots.push_back(snapshot);
    }

    pub fn latest(&self) -> Option<&Arc<Snapshot>> {
        self.snapshots.back()
    }

    pub fn len(&self) -> usize {
        self.snapshots.len()
    }

    /// The snapshots, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Snapshot> {
        self.snapshots.iter().map(|s| &**s)
    }

    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }

    /// The snapshots no older than `window` before the newest one, oldest first.
    pub fn within(&self, window: Duration) -> Vec<&Arc<Snapshot>> {
        let Some(newest) = self.snapshots.back() else {
            return Vec::new();
        };
        self.snapshots
            .iter()
            .filter(|s| newest.monotonic_seconds - s.monotonic_seconds <= window.as_secs_f64())
            .collect()
    }

    /// Changes how many snapshots are kept, dropping the oldest if there are too many.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(2);
        while self.snapshots.len() > self.capacity {
            self.snapshots.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: f64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            monotonic_seconds: seconds,
            ..Default::default()
        })
    }

    #[test]
    fn history_is_bounded_and_keeps_the_newest() {
        let mut history = History::new(3);
        for t in 0..5 {
            history.push(at(t as f64));
        }
        assert_eq!(history.len(), 3);
        assert_eq!(history.latest().unwrap().monotonic_seconds, 4.0);
    }

    #[test]
    fn within_keeps_the_snapshots_inside_the_window() {
        let mut history = History::new(10);
        for t in 0..6 {
            history.push(at(t as f64 * 2.0));
        }
        let inside: Vec<f64> = history
            .within(Duration::from_secs(5))
            .iter()
            .map(|s| s.monotonic_seconds)
            .collect();
        assert_eq!(inside, [6.0, 8.0, 10.0]);
        assert!(History::new(3).within(Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn histogram_bounds_are_powers_of_two_microseconds() {
        assert_eq!(HandshakeHistogram::upper_bound_seconds(0), 2e-6);
        assert_eq!(HandshakeHistogram::upper_bound_seconds(9), 1024e-6);
    }
}
