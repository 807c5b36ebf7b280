//! The kernel's slot tables as the probes read them, before the poll names them: each row a
//! key of the table, the cookie of the namespace it was counted in, and its counts summed over
//! CPUs. Reading, freeing, judging namespaces, merging and totals are written once, against
//! [`TableKey`] and [`TableValue`]; a new table implements [`TableKey`] for its key (and
//! [`TableValue`] for a new kind of counts) and is listed in [`TableRead`].
use std::collections::{BTreeSet, HashSet};

use netmon_common::{
    drops::DropKey,
    handshakes::{HandshakeHistogram, HandshakeKey},
    peers::{OpenConnections, PeerCounts, PeerKey},
    slots::{NamespacedSlot, SlotKey},
    tcp_events::TcpEventKey,
    traffic::{InterfaceKey, InterfaceTraffic},
    transitions::TransitionKey,
};

/// What the agent needs of a table's key, beyond the table and the slot words `netmon-common`
/// gives ([`SlotKey`]): how the namespace judge treats its slots. Its counts are laid out as
/// the kernel writes them ([`aya::Pod`]).
pub trait TableKey: SlotKey<Value: TableValue + aya::Pod> + Ord + Copy {
    /// Tables counted by device free only the slots the poll read and judged gone: a slot
    /// claimed since may count an interface made after its namespace was listed. Tables
    /// counted by namespace free every slot of a namespace that is gone.
    const BY_DEVICE: bool;
    /// The namespace inode; 0 when the program could not read it.
    fn netns(&self) -> u32;
    /// The interface index in its namespace; 0 for tables counted by namespace, and for
    /// packets with no device.
    fn ifindex(&self) -> u32 {
        0
    }
}

/// What merging and totals need of a table's counts.
pub trait TableValue: Default {
    /// Adds the counts of the same key read under another namespace cookie.
    fn absorb(&mut self, other: &Self);
    /// Everything counted, to tell whether a namespace's counts moved.
    fn total(&self) -> u64;
}

/// One identity of a table and its counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacedCount<K, V> {
    pub key: K,
    /// The namespace's cookie, which tells it from an earlier namespace that had its inode;
    /// 0 when unknown.
    pub netns_cookie: u64,
    pub value: V,
}

impl<K: TableKey, V> NamespacedCount<K, V> {
    pub fn identity(&self) -> SlotIdentity {
        SlotIdentity::new(&self.key, self.netns_cookie)
    }
}

/// Where a count was counted: namespace, interface (0 for tables by namespace) and cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotIdentity {
    pub netns: u32,
    pub ifindex: u32,
    pub netns_cookie: u64,
}

impl SlotIdentity {
    fn new<K: TableKey>(key: &K, netns_cookie: u64) -> Self {
        Self {
            netns: key.netns(),
            ifindex: key.ifindex(),
            netns_cookie,
        }
    }
}

/// The rows of a table with keys `K`.
pub type Rows<K> = Vec<NamespacedCount<K, <K as SlotKey>::Value>>;

/// Visits each table of a [`TableRead`] in turn.
pub trait TableVisitor {
    fn table<K: TableKey>(&mut self, rows: &mut Rows<K>);
}

/// Every slot table counted by namespace, as read in one poll.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableRead {
    pub traffic: Rows<InterfaceKey>,
    pub drops: Rows<DropKey>,
    pub transitions: Rows<TransitionKey>,
    pub tcp_events: Rows<TcpEventKey>,
    pub handshakes: Rows<HandshakeKey>,
    pub peers: Rows<PeerKey>,
}

impl TableRead {
    /// The one list of the tables.
    pub fn visit(&mut self, visitor: &mut impl TableVisitor) {
        visitor.table(&mut self.traffic);
        visitor.table(&mut self.drops);
        visitor.table(&mut self.transitions);
        visitor.table(&mut self.tcp_events);
        visitor.table(&mut self.handshakes);
        visitor.table(&mut self.peers);
    }

    /// Visits every table, with no rows: for work done table by table, such as reading them.
    pub fn each_table(visitor: &mut impl TableVisitor) {
        Self::default().visit(visitor);
    }

    /// Every identity read, with its table's kind and its counts' total.
    pub fn identities(&mut self) -> Vec<IdentityRead> {
        struct Collect(Vec<IdentityRead>);
        impl TableVisitor for Collect {
            fn table<K: TableKey>(&mut self, rows: &mut Rows<K>) {
                self.0.extend(rows.iter().map(|row| IdentityRead {
                    identity: row.identity(),
                    by_device: K::BY_DEVICE,
                    total: row.value.total(),
                }));
            }
        }
        let mut collect = Collect(Vec::new());
        self.visit(&mut collect);
        collect.0
    }
}

/// One row's identity as read, for the namespace judge.
#[derive(Clone, Copy, Debug)]
pub struct IdentityRead {
    pub identity: SlotIdentity,
    /// Whether its table is counted by device ([`TableKey::BY_DEVICE`]).
    pub by_device: bool,
    /// Its counts' total ([`TableValue::total`]).
    pub total: u64,
}

/// What the namespace judge found gone, for the probes to free.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Departures {
    /// Identities read from tables counted by device and judged gone.
    pub devices: HashSet<SlotIdentity>,
    /// Identities read from tables counted by namespace and judged gone.
    pub namespaces: HashSet<SlotIdentity>,
    /// Namespaces that are gone: every slot of theirs in a table counted by namespace goes.
    pub torn_down: BTreeSet<u32>,
}

impl Departures {
    /// Whether the slot that counts `slot` is to be freed.
    pub fn frees<K: TableKey>(&self, slot: &NamespacedSlot<K>) -> bool {
        let identity = SlotIdentity::new(&slot.key, slot.netns_cookie);
        let torn_down = !K::BY_DEVICE && self.torn_down.contains(&identity.netns);
        torn_down || self.judged(&identity, K::BY_DEVICE)
    }

    /// Whether an identity read from a table of the kind `by_device` was judged gone.
    pub fn judged(&self, identity: &SlotIdentity, by_device: bool) -> bool {
        if by_device {
            self.devices.contains(identity)
        } else {
            self.namespaces.contains(identity)
        }
    }
}

impl TableKey for InterfaceKey {
    const BY_DEVICE: bool = true;
    fn netns(&self) -> u32 {
        self.netns
    }
    fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

impl TableKey for DropKey {
    const BY_DEVICE: bool = true;
    fn netns(&self) -> u32 {
        self.interface.netns
    }
    fn ifindex(&self) -> u32 {
        self.interface.ifindex
    }
}

impl TableKey for TransitionKey {
    const BY_DEVICE: bool = false;
    fn netns(&self) -> u32 {
        self.netns
    }
}

impl TableKey for TcpEventKey {
    const BY_DEVICE: bool = false;
    fn netns(&self) -> u32 {
        self.netns
    }
}

impl TableKey for HandshakeKey {
    const BY_DEVICE: bool = false;
    fn netns(&self) -> u32 {
        self.netns
    }
}

impl TableKey for PeerKey {
    const BY_DEVICE: bool = false;
    fn netns(&self) -> u32 {
        self.netns
    }
}

impl TableValue for u64 {
    fn absorb(&mut self, other: &Self) {
        *self += other;
    }
    fn total(&self) -> u64 {
        *self
    }
}

impl TableValue for InterfaceTraffic {
    fn absorb(&mut self, other: &Self) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.tx_failed += other.tx_failed;
    }
    /// Packets only: bytes move with them.
    fn total(&self) -> u64 {
        self.rx_packets + self.tx_packets + self.tx_failed
    }
}

impl TableValue for HandshakeHistogram {
    fn absorb(&mut self, other: &Self) {
        for (total, count) in self.buckets.iter_mut().zip(other.buckets) {
            *total += count;
        }
        self.sum_ns += other.sum_ns;
    }
    fn total(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The open connections of the newer walk; of the same walk, both.
fn absorb_open(open: &mut OpenConnections, other: &OpenConnections) {
    if other.walk > open.walk {
        *open = *other;
    } else if other.walk == open.walk {
        open.add(other);
    }
}

impl TableValue for PeerCounts {
    fn absorb(&mut self, other: &Self) {
        let pairs = (self.results.iter_mut().zip(other.results))
            .chain(self.connect_time.iter_mut().zip(other.connect_time))
            .chain(self.rtt.iter_mut().zip(other.rtt));
        for (total, count) in pairs {
            *total += count;
        }
        self.connect_time_sum_ns += other.connect_time_sum_ns;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.retransmits += other.retransmits;
        self.rtt_sum_ns += other.rtt_sum_ns;
        absorb_open(&mut self.open, &other.open);
    }
    fn total(&self) -> u64 {
        let closes = self.rtt.iter().sum::<u64>() + self.retransmits;
        self.results.iter().sum::<u64>() + closes + self.bytes_sent + self.bytes_received
    }
}
