//! What the terminal view shows, as the agent's API gives it (only the fields it reads), and
//! the short trend of each interface's traffic that the view keeps between polls.
use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Deserialize;

use crate::top::client::Client;

/// Polls of each interface's traffic kept for its trend column.
pub const TREND_LENGTH: usize = 30;

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct Direction {
    pub bytes_per_second: f64,
    pub packets_per_second: f64,
    pub error_rate_percent: f64,
    pub drop_rate_percent: f64,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct Rates {
    pub rx: Direction,
    pub tx: Direction,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Interface {
    pub name: String,
    pub operstate: Option<String>,
    pub rates: Option<Rates>,
}

impl Interface {
    pub fn rates(&self) -> Rates {
        self.rates.unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct KernelDrop {
    pub reason: String,
    pub count: u64,
}

/// Sockets in one TCP state.
#[derive(Clone, Debug, Deserialize)]
pub struct StateCount {
    pub state: String,
    pub count: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SocketIo {
    pub direction: String,
    pub bytes: u64,
    pub bytes_per_second: Option<f64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub name: String,
    pub io: Vec<SocketIo>,
}

impl Process {
    /// Bytes per second in a direction (`tx`, `rx`) over its protocols.
    pub fn rate(&self, direction: &str) -> f64 {
        self.io
            .iter()
            .filter(|io| io.direction == direction)
            .filter_map(|io| io.bytes_per_second)
            .fold(0.0, |sum, rate| sum + rate)
    }

    pub fn bytes(&self) -> u64 {
        self.io.iter().map(|io| io.bytes).sum()
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Finding {
    pub severity: String,
    pub subject: String,
    pub summary: String,
}

#[derive(Clone, Debug, Deserialize)]
struct Diagnosis {
    findings: Vec<Finding>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Point {
    pub rx: Direction,
    pub tx: Direction,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Sample {
    pub interface: String,
    pub reason: String,
    pub location: String,
}

/// A peer's connects (`/api/v1/tcp/peers`), as the agent orders them: failing first.
#[derive(Clone, Debug, Deserialize)]
pub struct Peer {
    pub role: String,
    pub peer: String,
    pub port: String,
    pub results: BTreeMap<String, u64>,
    /// Connections established now.
    pub connections: u64,
}

impl Peer {
    pub fn ok(&self) -> u64 {
        self.results.get("ok").copied().unwrap_or(0)
    }

    pub fn failed(&self) -> u64 {
        self.results.values().sum::<u64>() - self.ok()
    }
}

/// What fills up (`/api/v1/pressure`): the listeners and connection tracking of each
/// namespace.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Pressure {
    pub namespaces: Vec<NamespacePressure>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct NamespacePressure {
    pub netns: u32,
    pub listeners: Vec<ListenQueue>,
    pub conntrack: Option<Conntrack>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ListenQueue {
    pub address: String,
    pub port: u16,
    pub length: u64,
    pub limit: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Conntrack {
    pub entries: u64,
    pub limit: u64,
}

/// A queue or table with what it holds and its limit.
#[derive(Clone, Debug, PartialEq)]
pub struct Queue {
    pub netns: u32,
    /// `listen <address>:<port>`, or `conntrack`.
    pub name: String,
    pub used: u64,
    pub limit: u64,
}

impl Pressure {
    /// Every listener's queue and every connection tracking table, the fullest first.
    pub fn fullest(&self) -> Vec<Queue> {
        let mut queues = Vec::new();
        for n in &self.namespaces {
            for l in &n.listeners {
                queues.push(Queue {
                    netns: n.netns,
                    name: format!("listen {}:{}", l.address, l.port),
                    used: l.length,
                    limit: l.limit,
                });
            }
            if let Some(c) = &n.conntrack {
                queues.push(Queue {
                    netns: n.netns,
                    name: "conntrack".to_string(),
                    used: c.entries,
                    limit: c.limit,
                });
            }
        }
        let fill = |q: &Queue| q.used as f64 / q.limit.max(1) as f64;
        queues.sort_by(|a, b| fill(b).total_cmp(&fill(a)).then(b.used.cmp(&a.used)));
        queues
    }
}

/// One poll of the API.
#[derive(Clone, Debug, Default)]
pub struct Data {
    pub interfaces: Vec<Interface>,
    pub drops: Vec<KernelDrop>,
    pub connections: BTreeMap<String, u64>,
    pub processes: Vec<Process>,
    pub peers: Vec<Peer>,
    /// Queues and tables, the fullest first.
    pub queues: Vec<Queue>,
    pub findings: Vec<Finding>,
    pub recent_drops: Vec<Sample>,
    /// The selected interface's History.
    pub history: Vec<Point>,
}

impl Data {
    /// Reads what the view shows; `selected` is the interface whose History is wanted.
    pub fn fetch(client: &Client, selected: Option<&str>) -> anyhow::Result<Self> {
        let interfaces = client.get::<Items<Interface>>("/api/v1/interfaces")?.items;
        let history = match selected.filter(|name| interfaces.iter().any(|i| i.name == *name)) {
            Some(name) => {
                client
                    .get_with::<Items<Point>>("/api/v1/history", &[("interface", name)])?
                    .items
            }
            None => Vec::new(),
        };
        Ok(Self {
            interfaces,
            drops: client.get::<Items<KernelDrop>>("/api/v1/drops")?.items,
            connections: client
                .get::<Items<StateCount>>("/api/v1/connections")?
                .items
                .into_iter()
                .map(|c| (c.state, c.count))
                .collect(),
            processes: client.get::<Items<Process>>("/api/v1/processes")?.items,
            peers: client.get::<Items<Peer>>("/api/v1/tcp/peers")?.items,
            queues: client.get::<Pressure>("/api/v1/pressure")?.fullest(),
            findings: client.get::<Diagnosis>("/api/v1/diagnosis")?.findings,
            recent_drops: client
                .get::<Items<Sample>>("/api/v1/drops/recent?limit=10")?
                .items,
            history,
        })
    }

    /// Drops summed by reason, the most first.
    pub fn drops_by_reason(&self) -> Vec<(String, u64)> {
        let mut by_reason: HashMap<&str, u64> = HashMap::new();
        for drop in &self.drops {
            *by_reason.entry(&drop.reason).or_default() += drop.count;
        }
        let mut sorted: Vec<(String, u64)> = by_reason
            .into_iter()
            .map(|(reason, count)| (reason.to_string(), count))
            .collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        sorted
    }
}

/// The traffic (rx + tx bytes per second) of each interface over the last polls.
#[derive(Default)]
pub struct Trends {
    by_interface: HashMap<String, VecDeque<u64>>,
}

impl Trends {
    /// Adds a poll; interfaces that are gone are forgotten.
    pub fn add(&mut self, interfaces: &[Interface]) {
        self.by_interface
            .retain(|name, _| interfaces.iter().any(|i| &i.name == name));
        for interface in interfaces {
            let rates = interface.rates();
            let trend = self.by_interface.entry(interface.name.clone()).or_default();
            if trend.len() == TREND_LENGTH {
                trend.pop_front();
            }
            trend.push_back((rates.rx.bytes_per_second + rates.tx.bytes_per_second) as u64);
        }
    }

    pub fn of(&self, name: &str) -> Option<&VecDeque<u64>> {
        self.by_interface.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str, rx: f64) -> Interface {
        Interface {
            name: name.into(),
            operstate: None,
            rates: Some(Rates {
                rx: Direction {
                    bytes_per_second: rx,
                    ..Default::default()
                },
                tx: Direction::default(),
            }),
        }
    }

    #[test]
    fn trends_are_bounded_and_forget_gone_interfaces() {
        let mut trends = Trends::default();
        for i in 0..(TREND_LENGTH as u64 + 5) {
            trends.add(&[interface("a", i as f64), interface("b", 1.0)]);
        }
        let a = trends.of("a").unwrap();
        assert_eq!(a.len(), TREND_LENGTH);
        assert_eq!(a.back(), Some(&(TREND_LENGTH as u64 + 4)));
        trends.add(&[interface("a", 0.0)]);
        assert!(trends.of("b").is_none());
    }
}
