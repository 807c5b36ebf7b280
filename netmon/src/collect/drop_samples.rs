//! Drop samples as the kernel sends them, made readable: the wall-clock time, the names of
//! the interface, the reason and the kernel function, the flow's addresses and the process
//! holding the packet's socket.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr},
    time::{SystemTime, UNIX_EPOCH},
};

use netmon_common::{samples::DropSample, traffic::InterfaceKey};

use crate::{
    host::{kallsyms::KernelSymbols, netns::InterfaceNames},
    model::{
        Owner,
        drops::{DropSampleRecord, Flow, tcp_flag_names},
    },
    probes::DropReasonNames,
};

/// Inodes of the samples' sockets, to find their processes.
pub(super) fn socket_inodes(samples: &[DropSample]) -> BTreeSet<u32> {
    samples
        .iter()
        .filter_map(|s| u32::try_from(s.socket_inode).ok())
        .filter(|inode| *inode != 0)
        .collect()
}

/// Namespaces of the samples' interfaces, to name them.
pub(super) fn namespaces(samples: &[DropSample]) -> impl Iterator<Item = u32> + '_ {
    samples
        .iter()
        .map(|s| InterfaceKey::from_meta(s.interface).netns)
}

/// The kernel addresses where the samples' packets were freed, to name them.
pub(super) fn locations(samples: &[DropSample]) -> BTreeSet<u64> {
    samples
        .iter()
        .map(|s| s.location)
        .filter(|l| *l != 0)
        .collect()
}

/// What the poll knows that samples are resolved with.
pub(super) struct Context<'a> {
    pub reasons: &'a DropReasonNames,
    pub names: Option<&'a InterfaceNames>,
    pub owners: &'a BTreeMap<u32, Vec<Owner>>,
    pub symbols: &'a KernelSymbols,
}

pub(super) fn resolve(samples: Vec<DropSample>, context: &Context<'_>) -> Vec<DropSampleRecord> {
    let symbols = context.symbols;
    let clock = Clock::now();
    samples
        .into_iter()
        .map(|sample| {
            let interface = InterfaceKey::from_meta(sample.interface);
            let owner = u32::try_from(sample.socket_inode)
                .ok()
                .and_then(|inode| context.owners.get(&inode))
                .and_then(|owners| owners.first());
            DropSampleRecord {
                timestamp_ms: clock.wall_ms(sample.time_ns),
                netns: interface.netns,
                ifindex: interface.ifindex,
                interface: context
                    .names
                    .and_then(|names| names.get(interface.netns, interface.ifindex))
                    .unwrap_or_default()
                    .to_string(),
                reason: context.reasons.name(sample.reason),
                location: match sample.location {
                    0 => String::new(),
                    address => symbols
                        .name(address)
                        .map_or_else(|| format!("{address:#x}"), str::to_string),
                },
                ethertype: sample.ethertype,
                flow: flow(&sample),
                tcp_flags: (sample.family != 0 && sample.ip_protocol == 6)
                    .then(|| tcp_flag_names(sample.tcp_flags)),
                pid: owner.map(|o| o.pid),
                process: owner.map(|o| o.name.clone()),
            }
        })
        .collect()
}

fn flow(sample: &DropSample) -> Flow {
    let (family, source, destination) = match sample.family {
        4 => {
            let v4 = |a: &[u8; 16]| Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string();
            ("ipv4", v4(&sample.source), v4(&sample.destination))
        }
        6 => (
            "ipv6",
            Ipv6Addr::from(sample.source).to_string(),
            Ipv6Addr::from(sample.destination).to_string(),
        ),
        _ => return Flow::default(),
    };
    let protocol = match (sample.ip_protocol, sample.family) {
        (6, _) => "tcp".to_string(),
        (17, _) => "udp".to_string(),
        (1, 4) => "icmp".to_string(),
        (58, 6) => "icmpv6".to_string(),
        (other, _) => other.to_string(),
    };
    let ports = matches!(sample.ip_protocol, 6 | 17);
    Flow {
        family: Some(family),
        protocol: Some(protocol),
        source: Some(source),
        destination: Some(destination),
        source_port: ports.then_some(sample.source_port),
        destination_port: ports.then_some(sample.destination_port),
    }
}

/// The wall clock and the kernel's monotonic clock read together, to date samples.
struct Clock {
    wall_ms: u64,
    monotonic_ns: u64,
}

impl Clock {
    fn now() -> Self {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        Self {
            wall_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            monotonic_ns: now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64,
        }
    }

    /// Wall-clock milliseconds of a `bpf_ktime_get_ns` time.
    fn wall_ms(&self, monotonic_ns: u64) -> u64 {
        self.wall_ms
            .saturating_sub(self.monotonic_ns.saturating_sub(monotonic_ns) / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_of_both_families_and_of_other_packets() {
        let mut sample = DropSample {
            family: 4,
            ip_protocol: 17,
            source_port: 5000,
            destination_port: 9,
            ..Default::default()
        };
        sample.source[..4].copy_from_slice(&[10, 0, 0, 1]);
        sample.destination[..4].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(flow(&sample).describe(), "udp 10.0.0.1:5000 -> 10.0.0.2:9");
        sample.family = 6;
        sample.ip_protocol = 58;
        sample.source = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        sample.destination = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(flow(&sample).describe(), "icmpv6 [fd00::1] -> [fd00::2]");
        sample.family = 0;
        assert_eq!(flow(&sample), Flow::default());
    }

    #[test]
    fn samples_are_dated_on_the_wall_clock() {
        let clock = Clock {
            wall_ms: 1_000_000,
            monotonic_ns: 50_000_000_000,
        };
        assert_eq!(clock.wall_ms(49_000_000_000), 999_000);
    }
}
