//! Interfaces of the agent's namespace: counters, state, MTU and MAC from rtnetlink (the
//! 64-bit counters `ip -s link` shows; state, MTU and MAC read again only when the kernel
//! announces a change), speed and duplex from sysfs, which only ethtool and sysfs know. Speed
//! and duplex change rarely: they are read again when an interface's state changes, and
//! otherwise every [`DETAILS_REFRESH`] polls.
use std::{
    collections::{HashMap, HashSet},
    fs, io,
    path::Path,
};

use anyhow::Context as _;
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, State, Stats64},
    stats::{StatsAttribute, StatsFilterMask, StatsMessage},
};
use netlink_sys::protocols::NETLINK_ROUTE;

use crate::{
    host::netlink,
    model::{Interface, InterfaceCounters},
};

const SYS_CLASS_NET: &str = "/sys/class/net";
/// Polls between two readings of an unchanged interface's speed and duplex (a change of
/// state reads them at once). Interfaces take turns: a host's thousand interfaces, all new at
/// one poll, are not all read again at one later poll.
pub const DETAILS_REFRESH: u32 = 60;

fn operstate(state: &State) -> String {
    match state {
        State::Unknown => "unknown".to_string(),
        State::NotPresent => "notpresent".to_string(),
        State::Down => "down".to_string(),
        State::LowerLayerDown => "lowerlayerdown".to_string(),
        State::Testing => "testing".to_string(),
        State::Dormant => "dormant".to_string(),
        State::Up => "up".to_string(),
        State::Other(n) => n.to_string(),
        // The enum may grow; the kernel's number is not kept by it.
        _ => "unknown".to_string(),
    }
}

fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn counters_of(s: &Stats64) -> InterfaceCounters {
    InterfaceCounters {
        rx_bytes: s.rx_bytes,
        rx_packets: s.rx_packets,
        rx_errors: s.rx_errors,
        rx_dropped: s.rx_dropped,
        tx_bytes: s.tx_bytes,
        tx_packets: s.tx_packets,
        tx_errors: s.tx_errors,
        tx_dropped: s.tx_dropped,
    }
}

/// Converts one link message; a link without a name is left out.
pub fn from_message(link: &LinkMessage) -> Option<Interface> {
    let mut interface = Interface {
        ifindex: link.header.index,
        operstate: "unknown".to_string(),
        ..Default::default()
    };
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfName(name) => interface.name = name.clone(),
            LinkAttribute::Mtu(mtu) => interface.mtu = *mtu,
            LinkAttribute::OperState(state) => interface.operstate = operstate(state),
            LinkAttribute::Address(address) => interface.mac = mac(address),
            LinkAttribute::Stats64(s) => interface.counters = counters_of(s),
            _ => {}
        }
    }
    interface.up = interface.operstate == "up";
    (!interface.name.is_empty()).then_some(interface)
}

/// Every interface of the calling thread's namespace, sorted by name, without speed and
/// duplex.
fn read_all() -> anyhow::Result<Vec<Interface>> {
    let mut interfaces = Vec::new();
    netlink::dump(
        NETLINK_ROUTE,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        |message| {
            if let RouteNetlinkMessage::NewLink(link) = message {
                interfaces.extend(from_message(&link));
            }
        },
    )
    .context("dumping links")?;
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(interfaces)
}

/// The 64-bit counters of every link of the calling thread's namespace, by index: one small
/// message a link (`RTM_GETSTATS`), where a link dump carries dozens of attributes.
fn read_counters() -> anyhow::Result<HashMap<u32, InterfaceCounters>> {
    let mut request = StatsMessage::default();
    request.header.filter_mask = StatsFilterMask::Link64;
    let mut counters = HashMap::new();
    netlink::dump(
        NETLINK_ROUTE,
        RouteNetlinkMessage::GetStats(request),
        |message| {
            if let RouteNetlinkMessage::NewStats(stats) = message {
                for attribute in &stats.attributes {
                    if let StatsAttribute::Link64(s) = attribute {
                        counters.insert(stats.header.ifindex, counters_of(s));
                    }
                }
            }
        },
    )
    .context("dumping link counters")?;
    Ok(counters)
}

/// The interfaces of the agent's namespace, kept from poll to poll: their counters are read
/// at every poll, their names, states, MTUs and MACs again only when the kernel announced a
/// change of a link or the links' indexes differ.
#[derive(Default)]
pub struct OwnLinks {
    links: Option<Vec<Interface>>,
}

impl OwnLinks {
    /// Every interface, sorted by name; `changed` says whether the kernel announced a change
    /// since the last call.
    pub fn read(&mut self, changed: bool) -> anyhow::Result<Vec<Interface>> {
        // Forgotten at once: a dump that fails now must not leave the stale links trusted
        // at the next poll, when the announcement has been taken.
        if changed {
            self.links = None;
        }
        if let Some(links) = &mut self.links {
            let mut counters = read_counters()?;
            if links.len() == counters.len() {
                for link in links.iter_mut() {
                    match counters.remove(&link.ifindex) {
                        Some(c) => link.counters = c,
                        None => break,
                    }
                }
                if counters.is_empty() {
                    return Ok(links.clone());
                }
            }
        }
        let links = read_all()?;
        self.links = Some(links.clone());
        Ok(links)
    }
}

fn read_trimmed(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_string())
}

/// Speed and duplex of one interface from sysfs. `speed` and `duplex` fail to read (EINVAL)
/// on links that are down or virtual, and some drivers report -1 or 0: all of these stay
/// unknown. A missing directory means sysfs does not show this namespace: an error.
pub fn read_details(name: &str) -> anyhow::Result<(Option<u64>, Option<String>)> {
    let dir = Path::new(SYS_CLASS_NET).join(name);
    if !dir.is_dir() {
        anyhow::bail!(
            "{} is missing: sysfs does not show this namespace's interfaces",
            dir.display()
        );
    }
    let speed = read_trimmed(&dir.join("speed"))
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|&s| s > 0)
        .map(|s| s as u64);
    let duplex = read_trimmed(&dir.join("duplex"))
        .ok()
        .filter(|d| d == "full" || d == "half");
    Ok((speed, duplex))
}

#[derive(Clone, Debug)]
struct Details {
    name: String,
    operstate: String,
    age: u32,
    speed_mbps: Option<u64>,
    duplex: Option<String>,
}

/// The age an interface's details start at: its turn among the interfaces.
fn first_age(ifindex: u32) -> u32 {
    ifindex % DETAILS_REFRESH
}

/// Speed and duplex by interface index, read again when stale or when the link changed.
#[derive(Debug, Default)]
pub struct LinkDetails {
    cache: HashMap<u32, Details>,
}

impl LinkDetails {
    /// Fills in speed and duplex; the first interface whose details cannot be read makes the
    /// whole call an error, after the others were filled in.
    pub fn fill(&mut self, interfaces: &mut [Interface]) -> anyhow::Result<()> {
        let mut first_error = None;
        let alive: HashSet<u32> = interfaces.iter().map(|i| i.ifindex).collect();
        self.cache.retain(|ifindex, _| alive.contains(ifindex));
        for interface in interfaces.iter_mut() {
            let same = self
                .cache
                .get_mut(&interface.ifindex)
                .filter(|d| d.name == interface.name && d.operstate == interface.operstate);
            if let Some(details) = same {
                details.age += 1;
                if details.age < DETAILS_REFRESH {
                    interface.speed_mbps = details.speed_mbps;
                    interface.duplex = details.duplex.clone();
                    continue;
                }
            }
            // Only a first read starts at the interface's turn, which spreads the reads of many
            // interfaces over the polls; from then on, each is read every DETAILS_REFRESH polls.
            let age = if self.cache.contains_key(&interface.ifindex) {
                0
            } else {
                first_age(interface.ifindex)
            };
            match read_details(&interface.name) {
                Ok((speed_mbps, duplex)) => {
                    interface.speed_mbps = speed_mbps;
                    interface.duplex = duplex.clone();
                    self.cache.insert(
                        interface.ifindex,
                        Details {
                            name: interface.name.clone(),
                            operstate: interface.operstate.clone(),
                            age,
                            speed_mbps,
                            duplex,
                        },
                    );
                }
                Err(err) => {
                    self.cache.remove(&interface.ifindex);
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_loopback_like_the_kernel() {
        let all = read_all().unwrap();
        let lo = all.iter().find(|i| i.name == "lo").unwrap();
        assert_eq!((lo.ifindex, lo.mtu), (1, 65536));
        assert_eq!(lo.mac, "00:00:00:00:00:00");
        let sysfs = |counter: &str| {
            read_trimmed(&Path::new(SYS_CLASS_NET).join("lo/statistics").join(counter))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        // Counters only grow: sysfs read after netlink is at least as high.
        assert!(sysfs("rx_packets") >= lo.counters.rx_packets);
        let mut interfaces = all.clone();
        LinkDetails::default().fill(&mut interfaces).unwrap();
        let lo = interfaces.iter().find(|i| i.name == "lo").unwrap();
        assert_eq!((lo.speed_mbps, lo.duplex.as_deref()), (None, None));
    }

    #[test]
    fn details_are_cached_until_stale_or_changed() {
        let mut details = LinkDetails::default();
        let mut interfaces = read_all().unwrap();
        details.fill(&mut interfaces).unwrap();
        let lo = interfaces.iter().find(|i| i.name == "lo").unwrap().ifindex;
        let first = details.cache[&lo].age;
        assert_eq!(first, first_age(lo));
        details.fill(&mut interfaces).unwrap();
        assert_eq!(details.cache[&lo].age, first + 1);
        for i in interfaces.iter_mut() {
            i.operstate = "down".into();
        }
        details.fill(&mut interfaces).unwrap();
        assert_eq!(details.cache[&lo].age, 0, "a changed state reads again");
        let mut missing = vec![Interface {
            name: "no-such-interface".into(),
            ifindex: 999_999,
            ..Default::default()
        }];
        let err = details.fill(&mut missing).unwrap_err();
        assert!(format!("{err}").contains("no-such-interface"));
        assert!(
            !details.cache.contains_key(&lo),
            "gone interfaces leave the cache"
        );
    }

    /// An interface whose turn comes last among the polls is read at its turn, then every
    /// DETAILS_REFRESH polls, not at every poll from then on.
    #[test]
    fn details_are_read_again_every_refresh_polls() {
        let mut details = LinkDetails::default();
        let lo = read_all()
            .unwrap()
            .into_iter()
            .find(|i| i.name == "lo")
            .unwrap();
        let mut interfaces = vec![Interface {
            ifindex: DETAILS_REFRESH - 1,
            ..lo
        }];
        let mut reads = Vec::new();
        let mut last = None;
        for poll in 0..3 * DETAILS_REFRESH {
            details.fill(&mut interfaces).unwrap();
            let age = details.cache[&(DETAILS_REFRESH - 1)].age;
            // A read sets the age; a poll that uses the cache raises it by one.
            if last.is_none_or(|last| age != last + 1) {
                reads.push(poll);
            }
            last = Some(age);
        }
        let refresh = DETAILS_REFRESH;
        assert_eq!(reads, [0, 1, 1 + refresh, 1 + 2 * refresh]);
    }

    /// In a namespace of the test's own: a link's new state is read once the kernel has
    /// announced it, and counters alone are read while nothing is announced; both agree
    /// with a full link dump.
    #[test]
    fn own_links_follow_the_kernels_announcements() {
        std::thread::spawn(|| {
            // SAFETY: a new namespace for this thread only.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let (mut changes, mut links) = (netlink::RouteChanges::default(), OwnLinks::default());
            assert!(changes.changed(), "the watch's start counts as a change");
            let first = links.read(true).unwrap();
            assert_eq!(first[0].operstate, "down");
            assert!(!changes.changed());
            // A child started from this thread is in its namespace.
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .unwrap();
            assert!(up.success());
            assert!(changes.changed(), "the new state is announced");
            assert_eq!(links.read(true).unwrap()[0].operstate, "unknown");
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..3 {
                socket.send_to(b"x", socket.local_addr().unwrap()).unwrap();
            }
            assert!(!changes.changed(), "traffic is not a change");
            let counted = links.read(false).unwrap();
            assert_eq!(counted, read_all().unwrap());
            assert_eq!(counted[0].counters.tx_packets, 3);
            // A new address is announced too.
            let mut addresses = crate::host::addresses::OwnAddresses::default();
            let before = addresses.read(false).unwrap();
            let added = std::process::Command::new("ip")
                .args(["address", "add", "10.9.9.9/32", "dev", "lo"])
                .status()
                .unwrap();
            assert!(added.success());
            assert_eq!(
                addresses.read(false).unwrap(),
                before,
                "kept until announced"
            );
            assert!(changes.changed(), "the new address is announced");
            let after = addresses.read(true).unwrap();
            assert!(
                after[&1].iter().any(|a| a.address == "10.9.9.9"),
                "{after:?}"
            );
        })
        .join()
        .unwrap();
    }
}
