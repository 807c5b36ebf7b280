//! Rates and aggregates from two snapshots of the History. No I/O.
//!
//! Error and drop rates are percentages of the packets in the same direction over the window
//! (errors / packets x 100), the definition of psutil-based monitors; a window with errors and
//! no packets counts as 100 %. Counters that went down (a driver reset, an interface
//! re-created) restart from zero, as Prometheus' `rate()` does.
use serde::Serialize;

use crate::model::{Interface, Snapshot};

/// Rates of one direction (or of all interfaces together).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DirectionRates {
    pub bytes_per_second: f64,
    pub packets_per_second: f64,
    pub errors_per_second: f64,
    pub drops_per_second: f64,
    pub error_rate_percent: f64,
    pub drop_rate_percent: f64,
    /// Bits per second as a percentage of the capacity; `None` when the capacity is unknown.
    pub utilization_percent: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterfaceRates {
    pub interface: String,
    pub capacity_mbps: Option<u64>,
    pub rx: DirectionRates,
    pub tx: DirectionRates,
    /// The busier direction's utilization.
    pub utilization_percent: Option<f64>,
}

/// Aggregates over every interface that is in both snapshots.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub window_seconds: f64,
    pub interfaces: usize,
    pub interfaces_up: usize,
    pub rx: DirectionRates,
    pub tx: DirectionRates,
    pub utilization_percent: Option<f64>,
    pub per_interface: Vec<InterfaceRates>,
}

/// Increase of a counter, treating a decrease as a reset to zero.
pub fn increase(old: u64, new: u64) -> u64 {
    if new >= old { new - old } else { new }
}

/// `part` as a percentage of `whole`; all of nothing is 100 %, nothing of nothing 0 %.
pub fn percent(part: u64, whole: u64) -> f64 {
    match (part, whole) {
        (0, _) => 0.0,
        (_, 0) => 100.0,
        _ => part as f64 / whole as f64 * 100.0,
    }
}

/// Counter increases of one direction.
#[derive(Clone, Copy, Debug, Default)]
struct Increase {
    bytes: u64,
    packets: u64,
    errors: u64,
    drops: u64,
}

impl Increase {
    fn add(&mut self, other: Increase) {
        self.bytes += other.bytes;
        self.packets += other.packets;
        self.errors += other.errors;
        self.drops += other.drops;
    }

    fn rates(self, seconds: f64, capacity_mbps: Option<u64>) -> DirectionRates {
        let bits_per_second = self.bytes as f64 * 8.0 / seconds;
        DirectionRates {
            bytes_per_second: self.bytes as f64 / seconds,
            packets_per_second: self.packets as f64 / seconds,
            errors_per_second: self.errors as f64 / seconds,
            drops_per_second: self.drops as f64 / seconds,
            error_rate_percent: percent(self.errors, self.packets),
            drop_rate_percent: percent(self.drops, self.packets),
            utilization_percent: capacity_mbps
                .filter(|c| *c > 0)
                .map(|c| bits_per_second / (c as f64 * 1e6) * 100.0),
        }
    }
}

fn increases(old: &Interface, new: &Interface) -> (Increase, Increase) {
    let (o, n) = (&old.counters, &new.counters);
    (
        Increase {
            bytes: increase(o.rx_bytes, n.rx_bytes),
            packets: increase(o.rx_packets, n.rx_packets),
            errors: increase(o.rx_errors, n.rx_errors),
            drops: increase(o.rx_dropped, n.rx_dropped),
        },
        Increase {
            bytes: increase(o.tx_bytes, n.tx_bytes),
            packets: increase(o.tx_packets, n.tx_packets),
            errors: increase(o.tx_errors, n.tx_errors),
            drops: increase(o.tx_dropped, n.tx_dropped),
        },
    )
}

fn max_utilization(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Rates between two snapshots; `None` when they are not apart in time.
pub fn summarize(old: &Snapshot, new: &Snapshot) -> Option<Summary> {
    let seconds = new.monotonic_seconds - old.monotonic_seconds;
    if seconds <= 0.0 {
        return None;
    }
    let mut per_interface = Vec::new();
    let (mut rx_total, mut tx_total) = (Increase::default(), Increase::default());
    let mut capacity_total = 0u64;
    let mut capacity_bytes = 0u64;
    let previous_of = old.interfaces_by_identity();
    for interface in &new.interfaces {
        // The same name with another index is another interface: no rate across them.
        let Some(previous) = previous_of.get(&(interface.name.as_str(), interface.ifindex)) else {
            continue;
        };
        let (rx, tx) = increases(previous, interface);
        rx_total.add(rx);
        tx_total.add(tx);
        if let Some(capacity) = interface.capacity_mbps.filter(|c| *c > 0) {
            capacity_total += capacity;
            capacity_bytes += rx.bytes.max(tx.bytes);
        }
        let (rx, tx) = (
            rx.rates(seconds, interface.capacity_mbps),
            tx.rates(seconds, interface.capacity_mbps),
        );
        per_interface.push(InterfaceRates {
            interface: interface.name.clone(),
            capacity_mbps: interface.capacity_mbps,
            utilization_percent: max_utilization(rx.utilization_percent, tx.utilization_percent),
            rx,
            tx,
        });
    }
    let aggregate_capacity = (capacity_total > 0).then_some(capacity_total);
    let mut rx = rx_total.rates(seconds, None);
    let mut tx = tx_total.rates(seconds, None);
    // Aggregate utilization only over the interfaces whose capacity is known.
    let utilization = aggregate_capacity
        .map(|c| capacity_bytes as f64 * 8.0 / seconds / (c as f64 * 1e6) * 100.0);
    rx.utilization_percent = None;
    tx.utilization_percent = None;
    Some(Summary {
        window_seconds: seconds,
        interfaces: new.interfaces.len(),
        interfaces_up: new.interfaces.iter().filter(|i| i.up).count(),
        rx,
        tx,
        utilization_percent: utilization,
        per_interface,
    })
}

/// The rates of one interval between two consecutive snapshots.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RatePoint {
    /// When the interval ended (the newer snapshot's time).
    pub timestamp_ms: u64,
    pub seconds: f64,
    pub rx: DirectionRates,
    pub tx: DirectionRates,
}

/// The History as a time series: the rates of every interval between consecutive snapshots,
/// oldest first, of the interface named `interface` or of all interfaces together. An interval
/// in which the interface is missing from either end (or is another interface of the same
/// name) has no point.
pub fn series<'a>(
    snapshots: impl IntoIterator<Item = &'a Snapshot>,
    interface: Option<&str>,
) -> Vec<RatePoint> {
    let snapshots: Vec<&Snapshot> = snapshots.into_iter().collect();
    snapshots
        .windows(2)
        .filter_map(|pair| {
            let (old, new) = (pair[0], pair[1]);
            let seconds = new.monotonic_seconds - old.monotonic_seconds;
            if seconds <= 0.0 {
                return None;
            }
            let (rx, tx, capacity) = match interface {
                Some(name) => {
                    let now = new.interfaces.iter().find(|i| i.name == name)?;
                    let before = old
                        .interfaces
                        .iter()
                        .find(|i| i.name == name && i.ifindex == now.ifindex)?;
                    let (rx, tx) = increases(before, now);
                    (rx, tx, now.capacity_mbps)
                }
                None => {
                    let previous_of = old.interfaces_by_identity();
                    let (mut rx, mut tx) = (Increase::default(), Increase::default());
                    for now in &new.interfaces {
                        if let Some(before) = previous_of.get(&(now.name.as_str(), now.ifindex)) {
                            let (r, t) = increases(before, now);
                            rx.add(r);
                            tx.add(t);
                        }
                    }
                    (rx, tx, None)
                }
            };
            Some(RatePoint {
                timestamp_ms: new.timestamp_ms,
                seconds,
                rx: rx.rates(seconds, capacity),
                tx: tx.rates(seconds, capacity),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InterfaceCounters;

    fn interface(name: &str, ifindex: u32, counters: InterfaceCounters) -> Interface {
        Interface {
            name: name.into(),
            ifindex,
            up: true,
            capacity_mbps: Some(100),
            counters,
            ..Default::default()
        }
    }

    fn snapshot(at: f64, interfaces: Vec<Interface>) -> Snapshot {
        Snapshot {
            monotonic_seconds: at,
            interfaces,
            ..Default::default()
        }
    }

    fn counters(
        rx_bytes: u64,
        rx_packets: u64,
        rx_errors: u64,
        rx_dropped: u64,
    ) -> InterfaceCounters {
        InterfaceCounters {
            rx_bytes,
            rx_packets,
            rx_errors,
            rx_dropped,
            tx_bytes: rx_bytes / 2,
            tx_packets: rx_packets / 2,
            ..Default::default()
        }
    }

    #[test]
    fn computes_rates_percentages_and_utilization() {
        let old = snapshot(10.0, vec![interface("eth0", 2, counters(1_000, 100, 0, 0))]);
        let new = snapshot(
            12.0,
            vec![interface("eth0", 2, counters(2_501_000, 1100, 10, 50))],
        );
        let summary = summarize(&old, &new).unwrap();
        let eth0 = &summary.per_interface[0];
        assert_eq!(eth0.rx.bytes_per_second, 1_250_000.0);
        assert_eq!(eth0.rx.packets_per_second, 500.0);
        assert_eq!(eth0.rx.error_rate_percent, 1.0);
        assert_eq!(eth0.rx.drop_rate_percent, 5.0);
        // 1.25 MB/s = 10 Mbit/s of 100 Mbit/s.
        assert_eq!(eth0.rx.utilization_percent, Some(10.0));
        assert_eq!(eth0.utilization_percent, Some(10.0));
        assert_eq!(summary.rx.bytes_per_second, 1_250_000.0);
        assert_eq!(summary.utilization_percent, Some(10.0));
    }

    #[test]
    fn a_counter_that_went_down_restarts_from_zero() {
        assert_eq!(increase(100, 150), 50);
        assert_eq!(increase(100, 30), 30);
        let old = snapshot(0.0, vec![interface("eth0", 2, counters(10_000, 100, 0, 0))]);
        let new = snapshot(1.0, vec![interface("eth0", 2, counters(400, 4, 0, 0))]);
        let summary = summarize(&old, &new).unwrap();
        assert_eq!(summary.per_interface[0].rx.bytes_per_second, 400.0);
    }

    #[test]
    fn interfaces_that_vanish_or_reappear_have_no_rate() {
        let old = snapshot(
            0.0,
            vec![
                interface("gone", 3, counters(10, 1, 0, 0)),
                interface("eth0", 2, counters(0, 0, 0, 0)),
                interface("veth1", 4, counters(0, 0, 0, 0)),
            ],
        );
        let new = snapshot(
            1.0,
            vec![
                interface("eth0", 2, counters(100, 1, 0, 0)),
                // Same name, new index: a new interface.
                interface("veth1", 9, counters(5_000, 5, 0, 0)),
            ],
        );
        let summary = summarize(&old, &new).unwrap();
        assert_eq!(summary.per_interface.len(), 1);
        assert_eq!(summary.per_interface[0].interface, "eth0");
        assert_eq!(summary.rx.bytes_per_second, 100.0);
        assert_eq!(summary.interfaces, 2);
    }

    #[test]
    fn percentages_of_nothing() {
        assert_eq!(percent(0, 0), 0.0);
        assert_eq!(percent(3, 0), 100.0);
        assert_eq!(percent(1, 4), 25.0);
        assert!(summarize(&snapshot(1.0, vec![]), &snapshot(1.0, vec![])).is_none());
    }

    #[test]
    fn unknown_capacity_gives_no_utilization() {
        let mut a = interface("lo", 1, counters(0, 0, 0, 0));
        a.capacity_mbps = None;
        let mut b = a.clone();
        b.counters = counters(1000, 10, 0, 0);
        let summary = summarize(&snapshot(0.0, vec![a]), &snapshot(1.0, vec![b])).unwrap();
        assert_eq!(summary.per_interface[0].utilization_percent, None);
        assert_eq!(summary.utilization_percent, None);
    }
    #[test]
    fn the_series_has_a_point_an_interval_of_one_interface_or_all() {
        let at = |seconds: f64, eth0: u64, veth: Option<(u32, u64)>| {
            let mut interfaces = vec![interface("eth0", 2, counters(eth0, eth0 / 100, 0, 0))];
            if let Some((ifindex, bytes)) = veth {
                interfaces.push(interface("veth1", ifindex, counters(bytes, 1, 0, 0)));
            }
            Snapshot {
                timestamp_ms: (seconds * 1000.0) as u64,
                ..snapshot(seconds, interfaces)
            }
        };
        let snapshots = [
            at(0.0, 0, Some((4, 0))),
            at(2.0, 2_000, Some((4, 1_000))),
            // veth1 re-created with another index: no point for it in this interval.
            at(4.0, 6_000, Some((9, 50))),
            at(5.0, 6_000, None),
        ];
        let eth0 = series(&snapshots, Some("eth0"));
        let rx: Vec<f64> = eth0.iter().map(|p| p.rx.bytes_per_second).collect();
        assert_eq!(rx, [1_000.0, 2_000.0, 0.0]);
        assert_eq!(eth0[0].timestamp_ms, 2_000);
        assert_eq!(eth0[0].tx.bytes_per_second, 500.0);
        assert_eq!(eth0[0].rx.utilization_percent, Some(0.008));
        let veth = series(&snapshots, Some("veth1"));
        assert_eq!(veth.len(), 1);
        assert_eq!(veth[0].rx.bytes_per_second, 500.0);
        let all: Vec<f64> = series(&snapshots, None)
            .iter()
            .map(|p| p.rx.bytes_per_second)
            .collect();
        assert_eq!(all, [1_500.0, 2_000.0, 0.0]);
        assert!(series(&snapshots, Some("nowhere")).is_empty());
    }
}
