//! Sampled drops: a record per sample, and the bounded record of recent ones with their
//! aggregates by (reason, location, flow). No I/O here.
use std::collections::{HashMap, VecDeque};

use serde::Serialize;

/// What a dropped packet's headers tell of its flow; each part is absent when the packet did
/// not have it (not IP, a protocol without ports).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Flow {
    /// `ipv4` or `ipv6`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<&'static str>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, or the IP protocol number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
}

impl Flow {
    /// `udp 10.0.0.1:5000 -> 10.0.0.2:9`, `[fd00::1]:80` for IPv6, as far as it is known.
    pub fn describe(&self) -> String {
        let end = |address: &Option<String>, port: Option<u16>| {
            let address = address.as_deref().unwrap_or("?");
            let address = if self.family == Some("ipv6") {
                format!("[{address}]")
            } else {
                address.to_string()
            };
            match port {
                Some(port) => format!("{address}:{port}"),
                None => address,
            }
        };
        match &self.protocol {
            None => "not IP".to_string(),
            Some(protocol) => format!(
                "{protocol} {} -> {}",
                end(&self.source, self.source_port),
                end(&self.destination, self.destination_port)
            ),
        }
    }

    fn has_port(&self, port: u16) -> bool {
        self.source_port == Some(port) || self.destination_port == Some(port)
    }
}

/// One sampled drop.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropSampleRecord {
    /// Milliseconds since the Unix epoch when the packet was dropped.
    pub timestamp_ms: u64,
    pub netns: u32,
    pub ifindex: u32,
    /// The interface's name; empty when the packet had no device, or the interface is gone.
    pub interface: String,
    pub reason: String,
    /// The kernel function that freed the packet (`nf_hook_slow+0x9c/0x150`), empty when
    /// the hook could not tell.
    pub location: String,
    /// `skb->protocol`: 2048 (0x0800) for IPv4, 34525 (0x86dd) for IPv6.
    pub ethertype: u16,
    #[serde(flatten)]
    pub flow: Flow,
    /// TCP flags of a TCP segment: `SYN`, `SYN,ACK`, `RST,ACK`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    /// The process holding the packet's socket, when the packet had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

/// Names of TCP flags, lowest bit first.
const TCP_FLAGS: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

/// `SYN,ACK` for 0x12.
pub fn tcp_flag_names(flags: u8) -> String {
    TCP_FLAGS
        .iter()
        .enumerate()
        .filter(|(bit, _)| flags & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

/// Which recent drops a request wants; every part given must match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DropFilter {
    pub reason: Option<String>,
    pub interface: Option<String>,
    pub netns: Option<u32>,
    /// Source or destination port.
    pub port: Option<u16>,
}

impl DropFilter {
    fn matches(&self, reason: &str, interface: &str, netns: u32, flow: &Flow) -> bool {
        self.reason.as_deref().is_none_or(|r| r == reason)
            && self.interface.as_deref().is_none_or(|i| i == interface)
            && self.netns.is_none_or(|n| n == netns)
            && self.port.is_none_or(|p| flow.has_port(p))
    }
}

/// What identifies an aggregate of drops.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct AggregateKey {
    reason: String,
    location: String,
    netns: u32,
    interface: String,
    flow: Flow,
}

/// The drops of one (reason, location, flow) on one interface.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropAggregate {
    pub reason: String,
    pub location: String,
    pub netns: u32,
    pub interface: String,
    #[serde(flatten)]
    pub flow: Flow,
    /// Samples of it (not drops: samples are rate-limited).
    pub samples: u64,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

/// The last samples, newest last, and the aggregates of the samples seen, both bounded by
/// the same capacity (the aggregate seen least recently goes first).
#[derive(Clone, Debug)]
pub struct RecentDrops {
    samples: VecDeque<DropSampleRecord>,
    aggregates: HashMap<AggregateKey, DropAggregate>,
    capacity: usize,
}

impl RecentDrops {
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: VecDeque::new(),
            aggregates: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Changes how many samples and aggregates are kept, dropping the oldest beyond it.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        self.trim();
    }

    pub fn add(&mut self, samples: impl IntoIterator<Item = DropSampleRecord>) {
        for sample in samples {
            let key = AggregateKey {
                reason: sample.reason.clone(),
                location: sample.location.clone(),
                netns: sample.netns,
                interface: sample.interface.clone(),
                flow: sample.flow.clone(),
            };
            let aggregate = self
                .aggregates
                .entry(key)
                .or_insert_with_key(|key| DropAggregate {
                    reason: key.reason.clone(),
                    location: key.location.clone(),
                    netns: key.netns,
                    interface: key.interface.clone(),
                    flow: key.flow.clone(),
                    samples: 0,
                    first_seen_ms: sample.timestamp_ms,
                    last_seen_ms: sample.timestamp_ms,
                });
            aggregate.samples += 1;
            aggregate.first_seen_ms = aggregate.first_seen_ms.min(sample.timestamp_ms);
            aggregate.last_seen_ms = aggregate.last_seen_ms.max(sample.timestamp_ms);
            self.samples.push_back(sample);
        }
        self.trim();
    }

    fn trim(&mut self) {
        while self.samples.len() > self.capacity {
            self.samples.pop_front();
        }
        if self.aggregates.len() > self.capacity {
            let mut by_age: Vec<(u64, AggregateKey)> = self
                .aggregates
                .iter()
                .map(|(key, aggregate)| (aggregate.last_seen_ms, key.clone()))
                .collect();
            by_age.sort_unstable();
            let excess = self.aggregates.len() - self.capacity;
            for (_, key) in by_age.into_iter().take(excess) {
                self.aggregates.remove(&key);
            }
        }
    }

    /// The samples `filter` wants, newest first.
    pub fn newest_first<'a>(
        &'a self,
        filter: &'a DropFilter,
    ) -> impl Iterator<Item = &'a DropSampleRecord> + 'a {
        self.samples
            .iter()
            .rev()
            .filter(|s| filter.matches(&s.reason, &s.interface, s.netns, &s.flow))
    }

    /// The aggregates `filter` wants, most samples first (the most recent first among
    /// equals).
    pub fn top(&self, filter: &DropFilter) -> Vec<&DropAggregate> {
        let mut top: Vec<&DropAggregate> = self
            .aggregates
            .values()
            .filter(|a| filter.matches(&a.reason, &a.interface, a.netns, &a.flow))
            .collect();
        top.sort_by(|a, b| {
            b.samples
                .cmp(&a.samples)
                .then(b.last_seen_ms.cmp(&a.last_seen_ms))
        });
        top
    }

    /// The samples of the interface `ifindex` in namespace `netns` since `since_ms`, grouped
    /// by (reason, location, flow), most samples first: the evidence of a finding.
    pub fn top_since(
        &self,
        netns: u32,
        ifindex: u32,
        since_ms: u64,
    ) -> Vec<(&str, &str, &Flow, u64)> {
        let mut counts: HashMap<(&str, &str, &Flow), u64> = HashMap::new();
        for sample in self
            .samples
            .iter()
            .filter(|s| s.netns == netns && s.ifindex == ifindex && s.timestamp_ms >= since_ms)
        {
            *counts
                .entry((&sample.reason, &sample.location, &sample.flow))
                .or_default() += 1;
        }
        let mut top: Vec<_> = counts
            .into_iter()
            .map(|((reason, location, flow), count)| (reason, location, flow, count))
            .collect();
        top.sort_by(|a, b| b.3.cmp(&a.3).then_with(|| a.2.cmp(b.2)));
        top
    }

    /// The processes (`name[pid]`) behind the sockets of the interface's samples since
    /// `since_ms`.
    pub fn processes_since(&self, netns: u32, ifindex: u32, since_ms: u64) -> Vec<String> {
        let mut processes: Vec<String> = self
            .samples
            .iter()
            .filter(|s| s.netns == netns && s.ifindex == ifindex && s.timestamp_ms >= since_ms)
            .filter_map(|s| Some(format!("{}[{}]", s.process.as_deref()?, s.pid?)))
            .collect();
        processes.sort_unstable();
        processes.dedup();
        processes
    }
}

/// A sampled UDP datagram from 10.0.0.1:5000 to 10.0.0.2:`port` on eth0, for tests.
#[cfg(test)]
pub(crate) fn udp_sample(at: u64, reason: &str, port: u16) -> DropSampleRecord {
    DropSampleRecord {
        timestamp_ms: at,
        netns: 1,
        ifindex: 2,
        interface: "eth0".into(),
        reason: reason.into(),
        location: "nf_hook_slow+0x9c/0x150".into(),
        ethertype: 0x0800,
        flow: Flow {
            family: Some("ipv4"),
            protocol: Some("udp".into()),
            source: Some("10.0.0.1".into()),
            destination: Some("10.0.0.2".into()),
            source_port: Some(5000),
            destination_port: Some(port),
        },
        tcp_flags: None,
        pid: None,
        process: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_samples_and_aggregates_within_capacity() {
        let mut recent = RecentDrops::new(3);
        recent.add((0..5).map(|i| udp_sample(i, "NO_SOCKET", 9 + i as u16)));
        let all = DropFilter::default();
        let kept: Vec<u64> = recent.newest_first(&all).map(|s| s.timestamp_ms).collect();
        assert_eq!(kept, [4, 3, 2]);
        let ports: Vec<Option<u16>> = recent
            .top(&all)
            .iter()
            .map(|a| a.flow.destination_port)
            .collect();
        assert_eq!(ports, [Some(13), Some(12), Some(11)]);
    }

    #[test]
    fn aggregates_count_samples_of_one_flow_with_first_and_last_seen() {
        let mut recent = RecentDrops::new(10);
        recent.add([udp_sample(5, "NO_SOCKET", 9), udp_sample(7, "NO_SOCKET", 9)]);
        recent.add([udp_sample(9, "NETFILTER_DROP", 9)]);
        let top = recent.top(&DropFilter::default());
        assert_eq!(top.len(), 2);
        assert_eq!(
            (
                top[0].reason.as_str(),
                top[0].samples,
                top[0].first_seen_ms,
                top[0].last_seen_ms
            ),
            ("NO_SOCKET", 2, 5, 7)
        );
        let filter = DropFilter {
            reason: Some("NETFILTER_DROP".into()),
            port: Some(9),
            ..Default::default()
        };
        assert_eq!(recent.newest_first(&filter).count(), 1);
        let other_port = DropFilter {
            port: Some(10),
            ..Default::default()
        };
        assert_eq!(recent.newest_first(&other_port).count(), 0);
        assert_eq!(recent.top_since(1, 2, 6)[0].3, 1);
    }

    #[test]
    fn flows_and_flags_read_as_people_write_them() {
        assert_eq!(tcp_flag_names(0x12), "SYN,ACK");
        assert_eq!(tcp_flag_names(0x04), "RST");
        let mut flow = udp_sample(0, "NO_SOCKET", 9).flow;
        assert_eq!(flow.describe(), "udp 10.0.0.1:5000 -> 10.0.0.2:9");
        flow.family = Some("ipv6");
        flow.source = Some("fd00::1".into());
        flow.destination = Some("fd00::2".into());
        assert_eq!(flow.describe(), "udp [fd00::1]:5000 -> [fd00::2]:9");
        assert_eq!(Flow::default().describe(), "not IP");
    }
}
