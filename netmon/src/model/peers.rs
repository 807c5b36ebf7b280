//! Who cannot reach whom: the results of the TCP connections each namespace opened and
//! accepted, by remote endpoint, folded so that their series stay bounded and their counters
//! never go back. No I/O here.
use std::collections::{BTreeMap, BTreeSet};

use netmon_common::peers::{OpenConnections, PeerCounts, PeerKey, PeerResult, ROLE_CLIENT};
use serde::Serialize;

use crate::model::{
    EphemeralPorts,
    kernel_tables::{NamespacedCount, TableValue as _},
    peer_names::{PeerFolding, address_of, peer_name},
};

/// The peer table's rows as the probes read them.
type PeerRows = [NamespacedCount<PeerKey, PeerCounts>];

/// The peer and port of what is folded.
pub const OTHER: &str = "other";
/// The port of a client's connection to a port in the ephemeral range.
pub const EPHEMERAL: &str = "ephemeral";

/// Attempts by result, in the order of [`PeerResult::ALL`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerResults([u64; 5]);

impl PeerResults {
    pub fn get(&self, result: PeerResult) -> u64 {
        self.0[result as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn failures(&self) -> u64 {
        self.total() - self.get(PeerResult::Ok)
    }
}

impl From<[u64; 5]> for PeerResults {
    /// Counts in the order of [`PeerResult::ALL`].
    fn from(counts: [u64; 5]) -> Self {
        Self(counts)
    }
}

impl Serialize for PeerResults {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(PeerResult::ALL.len()))?;
        for result in PeerResult::ALL {
            map.serialize_entry(result.as_str(), &self.get(result))?;
        }
        map.end()
    }
}

/// Durations in microseconds by power of four (see `netmon_common::peers::PEER_BUCKETS`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerHistogram {
    pub buckets: Vec<u64>,
    pub sum_ns: u64,
}

impl PeerHistogram {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    fn of(buckets: &[u64], sum_ns: u64) -> Self {
        Self {
            buckets: buckets.to_vec(),
            sum_ns,
        }
    }
}

/// The connections not yet closed, by namespace and peer, as the socket walks show them.
pub type LivePeers = BTreeMap<PeerKey, OpenConnections>;

/// What one series sums: the kernel's counts (opens, and connections as they closed) and the
/// connections still open.
#[derive(Clone, Debug, Default)]
struct SeriesCounts {
    counted: PeerCounts,
    live: OpenConnections,
}

/// One series of peer results: a namespace's connections of one role to or from one peer
/// and port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TcpPeer {
    pub netns: u32,
    /// `client` (this host opened the connection) or `server` (it accepted it).
    pub role: &'static str,
    /// The remote address, the name of its configured group, `external`, or `other`.
    pub peer: String,
    /// A client's remote port (`ephemeral` in the ephemeral range), a server's listening
    /// port; `other` where the peer is `other`.
    pub port: String,
    /// Attempts by result.
    pub results: PeerResults,
    /// Times of the opens that succeeded.
    pub connect_time: PeerHistogram,
    /// Connections established now.
    pub connections: u64,
    /// Opens waiting for their handshake now: SYN sent (client), SYN received (server).
    pub opening: u64,
    /// Totals of the connections, those closed and those still open: bytes the peer
    /// acknowledged, bytes received, segments retransmitted. They never go back: where a
    /// connection closed between the table's read and the dump, the poll shows the last.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u64,
    /// Smoothed round-trip times of the connections as they closed.
    pub rtt: PeerHistogram,
    /// Smoothed round-trip times of the connections open now.
    pub open_rtt: PeerHistogram,
}

impl TcpPeer {
    fn new(netns: u32, (role, peer, port): Series, series: &SeriesCounts) -> Self {
        let (counted, live) = (&series.counted, &series.live);
        Self {
            netns,
            role,
            peer,
            port,
            results: counted.results.into(),
            connect_time: PeerHistogram::of(&counted.connect_time, counted.connect_time_sum_ns),
            connections: live.established,
            opening: live.opening,
            bytes_sent: counted.bytes_sent + live.bytes_sent,
            bytes_received: counted.bytes_received + live.bytes_received,
            retransmits: counted.retransmits + live.retransmits,
            rtt: PeerHistogram::of(&counted.rtt, counted.rtt_sum_ns),
            open_rtt: PeerHistogram::of(&live.rtt, live.rtt_sum_ns),
        }
    }

    /// The totals, the last shown where they went back.
    fn hold(&mut self, last: &mut [u64; 3]) {
        let totals = [
            &mut self.bytes_sent,
            &mut self.bytes_received,
            &mut self.retransmits,
        ];
        for (total, last) in totals.into_iter().zip(last.iter_mut()) {
            *total = (*total).max(*last);
            *last = *total;
        }
    }
}

/// What identifies a series within its namespace: role, peer and port.
type Series = (&'static str, String, String);

/// The series each namespace has named: they keep their names while the namespace is
/// counted. Names are given until a namespace has `top` of them, and then never again, so
/// that nothing counted under `other` ever leaves it.
#[derive(Debug, Default)]
pub struct PeerLedger {
    named: BTreeMap<u32, BTreeSet<Series>>,
    /// The totals each series showed last (see [`TcpPeer::hold`]).
    shown: BTreeMap<(u32, Series), [u64; 3]>,
}

impl PeerLedger {
    /// The peer series of this poll's `rows` and `live` connections, folded: the sum over a
    /// namespace's series is always its total.
    pub fn fold(
        &mut self,
        (rows, live): (&PeerRows, &LivePeers),
        folding: &PeerFolding,
        ephemeral: &EphemeralPorts,
    ) -> Vec<TcpPeer> {
        let labelled = label(rows, live, folding, ephemeral);
        let counted = |netns: &u32| labelled.keys().any(|(counted, _)| counted == netns);
        self.named.retain(|netns, _| counted(netns));
        self.shown.retain(|(netns, _), _| counted(netns));
        self.name_new(&labelled, folding.top);
        let mut folded: BTreeMap<(u32, Series), SeriesCounts> = BTreeMap::new();
        for ((netns, series), counts) in labelled {
            let named = self.named.get(&netns).is_some_and(|s| s.contains(&series));
            let series = if named {
                series
            } else {
                (series.0, OTHER.to_string(), OTHER.to_string())
            };
            let sum = folded.entry((netns, series)).or_default();
            sum.counted.absorb(&counts.counted);
            sum.live.add(&counts.live);
        }
        let peers = folded.into_iter();
        peers
            .map(|((netns, series), counts)| {
                let last = self.shown.entry((netns, series.clone())).or_default();
                let mut peer = TcpPeer::new(netns, series, &counts);
                peer.hold(last);
                peer
            })
            .collect()
    }

    /// Names the series of each namespace not yet full, failing ones first, then the busiest.
    fn name_new(&mut self, labelled: &BTreeMap<(u32, Series), SeriesCounts>, top: usize) {
        let mut candidates: BTreeMap<u32, Vec<(&Series, PeerResults)>> = BTreeMap::new();
        for ((netns, series), counts) in labelled {
            let named = self.named.entry(*netns).or_default();
            if named.len() < top && series.1 != OTHER && !named.contains(series) {
                candidates
                    .entry(*netns)
                    .or_default()
                    .push((series, counts.counted.results.into()));
            }
        }
        for (netns, mut found) in candidates {
            found.sort_by_key(|(series, results)| {
                (
                    std::cmp::Reverse(results.failures()),
                    std::cmp::Reverse(results.total()),
                    *series,
                )
            });
            let named = self.named.entry(netns).or_default();
            let room = top.saturating_sub(named.len());
            named.extend(found.into_iter().take(room).map(|(s, _)| s.clone()));
        }
    }
}

/// The rows and live connections by namespace and series, with peers and ports named and
/// summed where they share a name.
fn label(
    rows: &PeerRows,
    live: &LivePeers,
    folding: &PeerFolding,
    ephemeral: &EphemeralPorts,
) -> BTreeMap<(u32, Series), SeriesCounts> {
    let mut labelled: BTreeMap<(u32, Series), SeriesCounts> = BTreeMap::new();
    let series = |key: &PeerKey| (key.netns, series_of(key, folding, ephemeral));
    for row in rows {
        let counts = labelled.entry(series(&row.key)).or_default();
        counts.counted.absorb(&row.value);
    }
    for (key, totals) in live {
        labelled.entry(series(key)).or_default().live.add(totals);
    }
    labelled
}

/// The series a peer key is shown in, before folding.
fn series_of(key: &PeerKey, folding: &PeerFolding, ephemeral: &EphemeralPorts) -> Series {
    let role = if key.role == ROLE_CLIENT {
        "client"
    } else {
        "server"
    };
    if key.is_overflow() {
        return (role, OTHER.to_string(), OTHER.to_string());
    }
    let address = address_of(key.address);
    let in_range = (ephemeral.first..=ephemeral.last).contains(&key.port);
    let port = if key.role == ROLE_CLIENT && in_range {
        EPHEMERAL.to_string()
    } else {
        key.port.to_string()
    };
    (role, peer_name(address, folding), port)
}

#[cfg(test)]
mod tests {
    use netmon_common::peers::ROLE_SERVER;

    use super::*;

    fn row(
        netns: u32,
        role: u8,
        v4: [u8; 4],
        port: u16,
        results: [u64; 5],
    ) -> NamespacedCount<PeerKey, PeerCounts> {
        let mapped = u64::from(u32::from_be_bytes(v4)) | 0xffff_0000_0000;
        NamespacedCount {
            key: PeerKey {
                netns,
                role,
                port,
                address: [0, mapped],
            },
            netns_cookie: 0,
            value: PeerCounts {
                results,
                ..PeerCounts::default()
            },
        }
    }

    const EPHEMERAL_RANGE: EphemeralPorts = EphemeralPorts {
        first: 32768,
        last: 60999,
        in_use: 0,
    };

    #[test]
    fn names_addresses_groups_and_ports() {
        let folding = PeerFolding {
            groups: [(
                "10.96.0.0/12".parse().unwrap(),
                "cluster-services".to_string(),
            )]
            .into(),
            ..PeerFolding::default()
        };
        let rows = vec![
            row(1, ROLE_CLIENT, [10, 0, 3, 7], 5432, [12, 40, 0, 0, 0]),
            row(1, ROLE_CLIENT, [10, 96, 0, 10], 53, [3, 0, 0, 0, 0]),
            row(1, ROLE_CLIENT, [8, 8, 8, 8], 443, [1, 0, 0, 0, 0]),
            row(1, ROLE_CLIENT, [10, 0, 3, 8], 40000, [1, 0, 0, 0, 0]),
            row(1, ROLE_SERVER, [10, 0, 3, 9], 80, [2, 0, 0, 0, 0]),
        ];
        let peers =
            PeerLedger::default().fold((&rows, &LivePeers::new()), &folding, &EPHEMERAL_RANGE);
        let named: Vec<(&str, &str, &str, u64)> = peers
            .iter()
            .map(|p| (p.role, p.peer.as_str(), p.port.as_str(), p.results.total()))
            .collect();
        assert_eq!(
            named,
            [
                ("client", "10.0.3.7", "5432", 52),
                ("client", "10.0.3.8", "ephemeral", 1),
                ("client", "cluster-services", "53", 3),
                ("client", "external", "443", 1),
                ("server", "10.0.3.9", "80", 2),
            ]
        );
        assert_eq!(peers[0].results.get(PeerResult::Refused), 40);
    }

    #[test]
    fn folding_keeps_totals_and_never_takes_back() {
        let folding = PeerFolding {
            top: 2,
            ..PeerFolding::default()
        };
        let mut ledger = PeerLedger::default();
        let first = vec![
            row(1, ROLE_CLIENT, [10, 0, 0, 1], 80, [5, 0, 0, 0, 0]),
            row(1, ROLE_CLIENT, [10, 0, 0, 2], 80, [0, 1, 0, 0, 0]),
            row(1, ROLE_CLIENT, [10, 0, 0, 3], 80, [9, 0, 0, 0, 0]),
        ];
        let peers = ledger.fold((&first, &LivePeers::new()), &folding, &EPHEMERAL_RANGE);
        let names: Vec<&str> = peers.iter().map(|p| p.peer.as_str()).collect();
        // The failing peer first, then the busiest; the third folds.
        assert_eq!(names, ["10.0.0.2", "10.0.0.3", "other"]);
        assert_eq!(peers.iter().map(|p| p.results.total()).sum::<u64>(), 15);
        // A busier newcomer stays in `other`, which only grows.
        let mut second = first.clone();
        second.push(row(1, ROLE_CLIENT, [10, 0, 0, 4], 80, [0, 0, 7, 0, 0]));
        let peers = ledger.fold((&second, &LivePeers::new()), &folding, &EPHEMERAL_RANGE);
        let other = peers.iter().find(|p| p.peer == OTHER).unwrap();
        assert_eq!(other.results.total(), 12);
        assert_eq!(peers.iter().map(|p| p.results.total()).sum::<u64>(), 22);
        // A namespace that is gone gives its names back.
        ledger.fold((&[], &LivePeers::new()), &folding, &EPHEMERAL_RANGE);
        assert!(ledger.named.is_empty());
    }

    #[test]
    fn open_connections_add_to_their_peer_and_totals_never_go_back() {
        let folding = PeerFolding::default();
        let mut ledger = PeerLedger::default();
        let mut closed = row(1, ROLE_CLIENT, [10, 0, 0, 1], 80, [1, 0, 0, 0, 0]);
        closed.value.bytes_sent = 100;
        let open = OpenConnections {
            established: 1,
            bytes_sent: 50,
            ..OpenConnections::default()
        };
        let live = LivePeers::from([(closed.key, open)]);
        let rows = [closed.clone()];
        let peers = ledger.fold((&rows, &live), &folding, &EPHEMERAL_RANGE);
        assert_eq!((peers[0].connections, peers[0].bytes_sent), (1, 150));
        // The open connection closed after the table was read: it is in neither.
        let peers = ledger.fold((&rows, &LivePeers::new()), &folding, &EPHEMERAL_RANGE);
        assert_eq!((peers[0].connections, peers[0].bytes_sent), (0, 150));
        closed.value.bytes_sent = 160;
        let peers = ledger.fold((&[closed], &LivePeers::new()), &folding, &EPHEMERAL_RANGE);
        assert_eq!(peers[0].bytes_sent, 160);
    }

    #[test]
    fn ipv6_peers_and_overflow() {
        let mut overflow = row(1, ROLE_CLIENT, [0; 4], 0, [0, 0, 0, 0, 3]);
        overflow.key = overflow.key.overflow();
        let mut v6 = row(1, ROLE_CLIENT, [0; 4], 443, [1, 0, 0, 0, 0]);
        v6.key.address = [0xfd00_0000_0000_0000, 7];
        let peers = PeerLedger::default().fold(
            (&[overflow, v6], &LivePeers::new()),
            &PeerFolding::default(),
            &EPHEMERAL_RANGE,
        );
        let named: Vec<(&str, &str)> = peers
            .iter()
            .map(|p| (p.peer.as_str(), p.port.as_str()))
            .collect();
        assert_eq!(named, [("fd00::7", "443"), ("other", "other")]);
    }
}
