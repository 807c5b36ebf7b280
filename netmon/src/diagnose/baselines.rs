//! Where the pressure rules count from: each namespace's first reading in the window. The
//! kernel's own counters count from the namespace's creation, and the agent reads the other
//! namespaces in turn, so what a namespace moved in the window is what it counted after its
//! first reading there; a namespace read only once has moved nothing yet. (The agent's drop
//! counts, by contrast, start with the agent: `reason_drops` counts from the oldest
//! snapshot.)
use std::{collections::HashMap, sync::Arc};

use crate::model::{Snapshot, pressure::NamespacePressure};

pub(super) struct Baselines<'a> {
    first: HashMap<u32, &'a NamespacePressure>,
}

impl<'a> Baselines<'a> {
    /// The first reading of each namespace in `snapshots`, oldest first.
    pub(super) fn of(snapshots: &[&'a Arc<Snapshot>]) -> Self {
        let mut first = HashMap::new();
        for snapshot in snapshots.iter().rev() {
            for namespace in &snapshot.pressure.namespaces {
                first.insert(namespace.netns, namespace);
            }
        }
        Self { first }
    }

    /// The first reading of namespace `netns` in the window.
    pub(super) fn of_namespace(&self, netns: u32) -> Option<&'a NamespacePressure> {
        self.first.get(&netns).copied()
    }
}
