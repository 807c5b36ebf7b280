//! What fills up in the calling thread's namespace, read from inside it: the listeners'
//! accept queues, the namespace's own counters, connection tracking and the queueing
//! disciplines. Each source is read on its own: one that cannot be read is noted with why,
//! and the rest go on.
use crate::{
    host::{conntrack, netstat, qdiscs, sockets},
    model::pressure::NamespacePressure,
};

/// The pressure of the calling thread's namespace, whose inode is `netns`.
pub fn namespace_pressure(netns: u32) -> NamespacePressure {
    let mut pressure = NamespacePressure {
        netns,
        ..NamespacePressure::default()
    };
    let missing = &mut pressure.missing;
    let mut noted = |source: &'static str, err: anyhow::Error| {
        missing.insert(source, format!("{err:#}"));
    };
    match netstat::counters() {
        Ok(counters) => pressure.counters = counters.into_iter().collect(),
        Err(err) => noted("netstat", err),
    }
    match sockets::listen_queues() {
        Ok(listeners) => pressure.listeners = listeners,
        Err(err) => noted("listeners", err),
    }
    match conntrack::conntrack() {
        Ok(conntrack) => pressure.conntrack = Some(conntrack),
        Err(err) => noted("conntrack", err),
    }
    match qdiscs::qdiscs() {
        Ok(qdiscs) => pressure.qdiscs = qdiscs,
        Err(err) => noted("qdiscs", err),
    }
    pressure
}
