//! Pressure before loss, put together: each counted namespace's, which the namespace thread
//! read from inside it, the agent's own, and the host-wide CPUs' backlogs and TCP memory;
//! and the processes of the listeners whose queues are full.
use std::collections::BTreeSet;

use super::SocketOwnersByInode;
use crate::{
    collect::{namespaces::Naming, runner::run},
    host::{pressure::namespace_pressure, sockstat, softnet},
    model::{
        CollectorRun, Snapshot,
        pressure::{ListenQueue, NamespacePressure, Pressure},
    },
};

/// The pressure of this poll; `owners` finds the processes of the sockets it is given.
pub(super) fn pressure(
    snapshot: &mut Snapshot,
    naming: Option<&Naming>,
    owners: impl FnOnce(&BTreeSet<u32>) -> SocketOwnersByInode,
) -> Pressure {
    let mut namespaces = naming.map_or_else(Vec::new, |n| n.pressure().to_vec());
    let own = snapshot.netns;
    let collectors = &mut snapshot.collectors;
    // The namespace thread read the others' within the namespaces collector: its share.
    if let Some(naming) = naming {
        collectors.push(CollectorRun {
            collector: "namespace_pressure",
            success: true,
            duration_seconds: naming.names().pressure_seconds(),
            error: None,
        });
    }
    namespaces.extend(run(collectors, "pressure", || Ok(namespace_pressure(own))));
    namespaces.sort_by_key(|n| n.netns);
    if let Some(naming) = naming {
        for namespace in &mut namespaces {
            for qdisc in &mut namespace.qdiscs {
                qdisc.interface = naming.interface(namespace.netns, qdisc.ifindex);
            }
        }
    }
    name_full_listeners(&mut namespaces, owners);
    Pressure {
        namespaces,
        softnet: run(collectors, "softnet", softnet::softnet).unwrap_or_default(),
        tcp_memory: run(collectors, "tcp_memory", sockstat::tcp_memory),
    }
}

/// The listeners whose queues are full.
fn full(namespaces: &mut [NamespacePressure]) -> Vec<&mut ListenQueue> {
    let listeners = namespaces.iter_mut().flat_map(|n| n.listeners.iter_mut());
    listeners.filter(|l| l.is_full()).collect()
}

/// Names the processes of the listeners whose queues are full: the look in the processes'
/// file tables is made only for them, and only when there are some.
fn name_full_listeners(
    namespaces: &mut [NamespacePressure],
    owners: impl FnOnce(&BTreeSet<u32>) -> SocketOwnersByInode,
) {
    let inodes: BTreeSet<u32> = full(namespaces).iter().map(|l| l.inode).collect();
    if inodes.is_empty() {
        return;
    }
    let found = owners(&inodes);
    for listener in full(namespaces) {
        listener.processes = found.get(&listener.inode).cloned().unwrap_or_default();
    }
}
