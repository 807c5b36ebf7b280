//! How a peer is shown: by its address, the name of its configured group, or `external`;
//! and the settings of the naming and folding.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;

/// The peer of public addresses, unless they are shown.
pub const EXTERNAL: &str = "external";
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

/// An address as the peer table keeps it: IPv6, IPv4 mapped into it, in two halves.
pub fn address_words(address: IpAddr) -> [u64; 2] {
    let v6 = match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let bits = u128::from(v6);
    [(bits >> 64) as u64, bits as u64]
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
pub fn peer_name(address: IpAddr, folding: &PeerFolding) -> String {
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
    use super::*;

    #[test]
    fn addresses_round_trip_through_the_table_words() {
        for address in ["10.0.3.7", "fd00::7", "::1"] {
            let address: IpAddr = address.parse().unwrap();
            assert_eq!(address_of(address_words(address)), address);
        }
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
}
