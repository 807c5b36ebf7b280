//! The judged tables named for the Snapshot: interfaces by name, drop reasons and protocols,
//! TCP states and families in words.
use std::collections::BTreeMap;

use netmon_common::{handshakes::HANDSHAKE_ACTIVE, tcp_events::TcpEvent};

use crate::{
    collect::namespaces::Naming,
    config::InterfaceFilter,
    model::{
        DropCount, HandshakeHistogram, KernelCounters, ProgramCounters, TcpEvents, TcpTransition,
        TrafficCount, kernel_tables::TableRead,
    },
    names,
    probes::DropReasonNames,
};

/// What the poll needs to name the tables.
pub struct Namer<'a> {
    pub naming: &'a Naming,
    pub reasons: &'a DropReasonNames,
    /// Interfaces to report; drops without a device stay, as no pattern could name them.
    pub filter: &'a InterfaceFilter,
}

impl Namer<'_> {
    pub fn name(&self, tables: TableRead, programs: ProgramCounters) -> KernelCounters {
        KernelCounters {
            traffic: self.traffic(&tables),
            drops: self.drops(&tables),
            transitions: transitions(&tables),
            handshakes: handshakes(&tables),
            tcp_events: tcp_events(&tables),
            // Folded by the poll, which keeps the ledger of the names given.
            peers: Vec::new(),
            programs,
            map_entries: Vec::new(),
        }
    }

    fn traffic(&self, tables: &TableRead) -> Vec<TrafficCount> {
        let rows = tables.traffic.iter().map(|row| TrafficCount {
            netns: row.key.netns,
            netns_cookie: row.netns_cookie,
            ifindex: row.key.ifindex,
            interface: self.naming.interface(row.key.netns, row.key.ifindex),
            rx_packets: row.value.rx_packets,
            rx_bytes: row.value.rx_bytes,
            tx_packets: row.value.tx_packets,
            tx_bytes: row.value.tx_bytes,
            tx_failed: row.value.tx_failed,
        });
        rows.filter(|t| self.filter.allows(&t.interface)).collect()
    }

    fn drops(&self, tables: &TableRead) -> Vec<DropCount> {
        let rows = tables.drops.iter().map(|row| {
            let (netns, ifindex) = (row.key.interface.netns, row.key.interface.ifindex);
            DropCount {
                key: row.key,
                netns,
                netns_cookie: row.netns_cookie,
                ifindex,
                interface: self.naming.interface(netns, ifindex),
                protocol: names::ethertype_name(row.key.protocol),
                reason: self.reasons.name(row.key.reason),
                count: row.value,
            }
        });
        rows.filter(|d| d.interface.is_empty() || self.filter.allows(&d.interface))
            .collect()
    }
}

fn transitions(tables: &TableRead) -> Vec<TcpTransition> {
    let mut transitions: Vec<TcpTransition> = tables
        .transitions
        .iter()
        .map(|row| TcpTransition {
            netns: row.key.netns,
            netns_cookie: row.netns_cookie,
            family: family_name(row.key.family),
            from: names::tcp_state_name(row.key.old_state.into()),
            to: names::tcp_state_name(row.key.new_state.into()),
            count: row.value,
        })
        .collect();
    transitions.sort_by(|a, b| {
        (a.netns, a.family, &a.from, &a.to).cmp(&(b.netns, b.family, &b.from, &b.to))
    });
    transitions
}

fn handshakes(tables: &TableRead) -> Vec<HandshakeHistogram> {
    let rows = tables.handshakes.iter().map(|row| HandshakeHistogram {
        netns: row.key.netns,
        netns_cookie: row.netns_cookie,
        open: if row.key.open == HANDSHAKE_ACTIVE {
            "active"
        } else {
            "passive"
        },
        buckets: row.value.buckets.to_vec(),
        sum_ns: row.value.sum_ns,
    });
    rows.collect()
}

/// The events of each namespace in one row.
fn tcp_events(tables: &TableRead) -> Vec<TcpEvents> {
    let mut events: BTreeMap<u32, TcpEvents> = BTreeMap::new();
    for row in &tables.tcp_events {
        let of = events.entry(row.key.netns).or_insert_with(|| TcpEvents {
            netns: row.key.netns,
            netns_cookie: row.netns_cookie,
            ..Default::default()
        });
        let count = match row.key.event {
            TcpEvent::Retransmit => &mut of.retransmits,
            TcpEvent::ResetSent => &mut of.resets_sent,
            TcpEvent::ResetReceived => &mut of.resets_received,
        };
        *count += row.value;
    }
    events.into_values().collect()
}

fn family_name(family: u8) -> &'static str {
    if family == libc::AF_INET6 as u8 {
        names::FAMILY_INET6
    } else {
        names::FAMILY_INET
    }
}
