//! Who cannot reach whom: the results of the TCP connections each namespace opened and
//! accepted, by remote endpoint, folded so that their series stay bounded and their counters
//! never go back. No I/O here.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net};
use netmon_common::peers::{PeerCounts, PeerKey, PeerResult, ROLE_CLIENT};
use serde::{Deserialize, Serialize};

use crate::model::{
    EphemeralPorts,
    kernel_tables::{NamespacedCount, TableValue as _},
};

/// The peer table's rows as the probes read them.
type PeerRows = [NamespacedCount<PeerKey, PeerCounts>];

/// The peer and port of what is folded.
pub const OTHER: &str = "other";
/// The peer of public addresses, unless they are shown.
pub const EXTERNAL: &str = "external";
/// The port of a client's connection to a port in the ephemeral range.
pub const EPHEMERAL: &str = "ephemeral";

/// How peers are named and folded; the configuration file's `[peers]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerFolding {
    /// Peers (with their port and role) with series of their own in each namespace, the
    /// first seen failing or busiest; the rest are summed in `peer="other"`.
    pub top: usize,
    /// Names of address ranges (`"10.96.0.0/12" = "cluster-services"`): a peer in one is
    /// shown by its name, the longest range first.
    pub groups: BTreeMap<IpNet, String>,
    /// Whether public addresses are shown; by default they are all `external`.
    pub public: bool,
}

impl Default for PeerFolding {
    fn default() -> Self {
        Self {
            top: 20,
            groups: BTreeMap::new(),
            public: false,
        }
    }
}

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

/// Durations in microseconds by power of two: bucket `i` counts `[2^i, 2^(i+1))` (see
/// `netmon_common::peers::PEER_BUCKETS`).
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
    /// Totals of the connections that closed: bytes the peer acknowledged, bytes received,
    /// segments retransmitted.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u64,
    /// Smoothed round-trip times of the connections that closed.
    pub rtt: PeerHistogram,
}

impl TcpPeer {
    fn new(netns: u32, (role, peer, port): Series, counts: &PeerCounts) -> Self {
        Self {
            netns,
            role,
            peer,
            port,
            results: counts.results.into(),
            connect_time: PeerHistogram::of(&counts.connect_time, counts.connect_time_sum_ns),
            bytes_sent: counts.bytes_sent,
            bytes_received: counts.bytes_received,
            retransmits: counts.retransmits,
            rtt: PeerHistogram::of(&counts.rtt, counts.rtt_sum_ns),
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
}

impl PeerLedger {
    /// The peer series of this poll's `rows`, folded: the sum over a namespace's series is
    /// always its total.
    pub fn fold(
        &mut self,
        rows: &PeerRows,
        folding: &PeerFolding,
        ephemeral: &EphemeralPorts,
    ) -> Vec<TcpPeer> {
        let labelled = label(rows, folding, ephemeral);
        self.named
            .retain(|netns, _| labelled.keys().any(|(counted, _)| counted == netns));
        self.name_new(&labelled, folding.top);
        let mut folded: BTreeMap<(u32, Series), PeerCounts> = BTreeMap::new();
        for ((netns, series), counts) in labelled {
            let named = self.named.get(&netns).is_some_and(|s| s.contains(&series));
            let series = if named {
                series
            } else {
                (series.0, OTHER.to_string(), OTHER.to_string())
            };
            folded.entry((netns, series)).or_default().absorb(&counts);
        }
        let peers = folded.into_iter();
        peers
            .map(|((netns, series), counts)| TcpPeer::new(netns, series, &counts))
            .collect()
    }

    /// Names the series of each namespace not yet full, failing ones first, then the busiest.
    fn name_new(&mut self, labelled: &BTreeMap<(u32, Series), PeerCounts>, top: usize) {
        let mut candidates: BTreeMap<u32, Vec<(&Series, PeerResults)>> = BTreeMap::new();
        for ((netns, series), counts) in labelled {
            let named = self.named.entry(*netns).or_default();
            if named.len() < top && series.1 != OTHER && !named.contains(series) {
                candidates
                    .entry(*netns)
                    .or_default()
                    .push((series, counts.results.into()));
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

/// The rows by namespace and series, with peers and ports named and summed where they share
/// a name.
fn label(
    rows: &PeerRows,
    folding: &PeerFolding,
    ephemeral: &EphemeralPorts,
) -> BTreeMap<(u32, Series), PeerCounts> {
    let mut labelled: BTreeMap<(u32, Series), PeerCounts> = BTreeMap::new();
    for row in rows {
        let key = &row.key;
        let role = if key.role == ROLE_CLIENT {
            "client"
        } else {
            "server"
        };
        let (peer, port) = if key.is_overflow() {
            (OTHER.to_string(), OTHER.to_string())
        } else {
            let address = address_of(key.address);
            let in_range = (ephemeral.first..=ephemeral.last).contains(&key.port);
            let port = if key.role == ROLE_CLIENT && in_range {
                EPHEMERAL.to_string()
            } else {
                key.port.to_string()
            };
            (peer_name(address, folding), port)
        };
        let counts = labelled.entry((key.netns, (role, peer, port))).or_default();
        counts.absorb(&row.value);
    }
    labelled
}

/// An address from the table's two big-endian halves; IPv4 where it is mapped.
pub fn address_of([high, low]: [u64; 2]) -> IpAddr {
    let v6 = Ipv6Addr::from((u128::from(high) << 64) | u128::from(low));
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The name a peer is shown by: its group's (the longest range that holds it), `external`
/// for a public address unless public ones are shown, or the address.
fn peer_name(address: IpAddr, folding: &PeerFolding) -> String {
    let group = folding
        .groups
        .iter()
        .filter(|(range, _)| range.contains(&address))
        .max_by_key(|(range, _)| range.prefix_len());
    if let Some((_, name)) = group {
        return name.clone();
    }
    if !folding.public && is_public(address) {
        return EXTERNAL.to_string();
    }
    address.to_string()
}

/// The shared address space of carrier-grade NAT (RFC 6598), which std does not name.
const SHARED_ADDRESSES: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10);

/// Whether an address is reachable on the internet: not private, shared (carrier-grade NAT),
/// loopback, link-local, unique local, documentation or unspecified.
fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_documentation()
                || v4.is_broadcast()
                || SHARED_ADDRESSES.contains(&v4))
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unique_local()
                || v6.is_unicast_link_local())
        }
    }
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
        let peers = PeerLedger::default().fold(&rows, &folding, &EPHEMERAL_RANGE);
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
        let peers = ledger.fold(&first, &folding, &EPHEMERAL_RANGE);
        let names: Vec<&str> = peers.iter().map(|p| p.peer.as_str()).collect();
        // The failing peer first, then the busiest; the third folds.
        assert_eq!(names, ["10.0.0.2", "10.0.0.3", "other"]);
        assert_eq!(peers.iter().map(|p| p.results.total()).sum::<u64>(), 15);
        // A busier newcomer stays in `other`, which only grows.
        let mut second = first.clone();
        second.push(row(1, ROLE_CLIENT, [10, 0, 0, 4], 80, [0, 0, 7, 0, 0]));
        let peers = ledger.fold(&second, &folding, &EPHEMERAL_RANGE);
        let other = peers.iter().find(|p| p.peer == OTHER).unwrap();
        assert_eq!(other.results.total(), 12);
        assert_eq!(peers.iter().map(|p| p.results.total()).sum::<u64>(), 22);
        // A namespace that is gone gives its names back.
        ledger.fold(&[], &folding, &EPHEMERAL_RANGE);
        assert!(ledger.named.is_empty());
    }

    #[test]
    fn shared_addresses_are_not_public() {
        for (address, public) in [
            ("100.64.1.1", false),
            ("100.127.255.254", false),
            ("100.128.0.1", true),
            ("10.1.2.3", false),
            ("2001:4860::8888", true),
            ("fe80::1", false),
        ] {
            assert_eq!(is_public(address.parse().unwrap()), public, "{address}");
        }
    }

    #[test]
    fn ipv6_peers_and_overflow() {
        let mut overflow = row(1, ROLE_CLIENT, [0; 4], 0, [0, 0, 0, 0, 3]);
        overflow.key = overflow.key.overflow();
        let mut v6 = row(1, ROLE_CLIENT, [0; 4], 443, [1, 0, 0, 0, 0]);
        v6.key.address = [0xfd00_0000_0000_0000, 7];
        let peers =
            PeerLedger::default().fold(&[overflow, v6], &PeerFolding::default(), &EPHEMERAL_RANGE);
        let named: Vec<(&str, &str)> = peers
            .iter()
            .map(|p| (p.peer.as_str(), p.port.as_str()))
            .collect();
        assert_eq!(named, [("fd00::7", "443"), ("other", "other")]);
    }
}
