//! IPv4 and IPv6 addresses of the agent's namespace, from rtnetlink.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressMessage},
};

use crate::{host::netlink, model::Address, names};

/// The netmask of a prefix length, in the address's own notation.
pub fn netmask(ip: IpAddr, prefix_length: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => {
            let bits = u32::MAX
                .checked_shl(32 - u32::from(prefix_length.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits))
        }
        IpAddr::V6(_) => {
            let bits = u128::MAX
                .checked_shl(128 - u32::from(prefix_length.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// Converts one address message; link-layer and other families give `None`.
pub fn from_message(message: &AddressMessage) -> Option<Address> {
    let family = match message.header.family {
        AddressFamily::Inet => names::FAMILY_INET,
        AddressFamily::Inet6 => names::FAMILY_INET6,
        _ => return None,
    };
    let ip = netlink::own_address(message)?;
    let broadcast = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Broadcast(b) => Some(b.to_string()),
        _ => None,
    });
    Some(Address {
        family,
        address: ip.to_string(),
        prefix_length: message.header.prefix_len,
        netmask: netmask(ip, message.header.prefix_len).to_string(),
        broadcast,
    })
}

/// The addresses of the agent's namespace, kept from poll to poll and read again only when
/// the kernel announced a change.
#[derive(Default)]
pub struct OwnAddresses {
    addresses: Option<BTreeMap<u32, Vec<Address>>>,
}

impl OwnAddresses {
    /// Addresses by interface index; `changed` says whether the kernel announced a change
    /// since the last call.
    pub fn read(&mut self, changed: bool) -> anyhow::Result<BTreeMap<u32, Vec<Address>>> {
        // Forgotten at once: a dump that fails now must not leave the stale addresses
        // trusted at the next poll, when the announcement has been taken.
        if changed {
            self.addresses = None;
        }
        if let Some(addresses) = &self.addresses {
            return Ok(addresses.clone());
        }
        let addresses = read_all()?;
        self.addresses = Some(addresses.clone());
        Ok(addresses)
    }
}

/// Addresses by interface index.
fn read_all() -> anyhow::Result<BTreeMap<u32, Vec<Address>>> {
    let mut by_index: BTreeMap<u32, Vec<Address>> = BTreeMap::new();
    for message in netlink::addresses()? {
        if let Some(address) = from_message(&message) {
            by_index
                .entry(message.header.index)
                .or_default()
                .push(address);
        }
    }
    for addresses in by_index.values_mut() {
        addresses.sort();
    }
    Ok(by_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(netmask(v4, 24).to_string(), "255.255.255.0");
        assert_eq!(netmask(v4, 0).to_string(), "0.0.0.0");
        assert_eq!(netmask(v4, 32).to_string(), "255.255.255.255");
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(netmask(v6, 64).to_string(), "ffff:ffff:ffff:ffff::");
        assert_eq!(
            netmask(v6, 128).to_string(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
    }

    #[test]
    fn loopback_has_its_addresses() {
        let all = read_all().unwrap();
        let lo = &all[&1];
        let v4 = lo.iter().find(|a| a.family == "inet").unwrap();
        assert_eq!((v4.address.as_str(), v4.prefix_length), ("127.0.0.1", 8));
        assert_eq!(v4.netmask, "255.0.0.0");
    }
}
