//! The namespace judge: finds the namespaces the kernel counters were counted in, names their
//! interfaces, and judges which counts belong to namespaces or interfaces that are gone (or to
//! a dead namespace whose inode another took). What is gone leaves the poll's tables, and the
//! probes free its slots. The namespace thread that names the interfaces also reads the
//! namespaces' pressure, in the turn `rotation.rs` gives them.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    collect::rotation::PressureRotation,
    host::netns::{self, InterfaceNames, Presence, Wanted},
    model::{
        kernel_tables::{
            Departures, IdentityRead, Rows, SlotIdentity, TableKey, TableRead, TableValue as _,
            TableVisitor,
        },
        pressure::NamespacePressure,
    },
};

/// How long the counts of a namespace that no process or mount holds are kept without moving,
/// where the kernel tells of teardowns: what the programs counted while a namespace went (a
/// packet on its way in as its devices went) arrives after the notice, and goes after this.
const UNHELD_IDLE: Duration = Duration::from_secs(600);

/// What the kernel tells of teardowns this poll: the namespaces torn down since the last poll
/// (none where the watch is not attached), and the notices lost so far.
pub struct Teardowns {
    pub notices: Option<BTreeSet<u32>>,
    pub lost: u64,
}

/// The judge's memory from poll to poll.
#[derive(Default)]
pub struct NamespaceJudge {
    holders: netns::Holders,
    /// Namespaces with counts that no process or mount holds, kept while the kernel has not
    /// torn them down: the total of their counts, and when it last moved.
    unheld: BTreeMap<u32, (u64, Instant)>,
    /// Teardown notices lost so far (a full ring): a poll that sees more lost falls back to
    /// taking every namespace without a holder as gone.
    notices_lost: u64,
    /// Namespaces told of as torn down in the last poll while it still found their holder:
    /// the holder went between the search for holders and the reading of the notices.
    told_while_held: BTreeSet<u32>,
    /// Started by the first poll: after the caller has settled its thread's user and
    /// capabilities, which the lister's thread inherits.
    lister: Option<netns::NamespaceLister>,
    /// The other namespaces' pressure, which the lister reads in turn.
    pressure: PressureRotation,
}

/// The names of the interfaces counted, by namespace.
#[derive(Default)]
pub struct Naming {
    names: InterfaceNames,
    found: BTreeMap<u32, PathBuf>,
    /// The last pressure read of each namespace found but the agent's own.
    pressure: Vec<NamespacePressure>,
}

impl Naming {
    /// An interface's name; one of a namespace no process or mount holds cannot be listed,
    /// and is named by its index, in a form no interface name takes (names have no ':').
    pub fn interface(&self, netns: u32, ifindex: u32) -> String {
        match self.names.get(netns, ifindex) {
            Some(name) => name.to_string(),
            None if ifindex != 0 && !self.found.contains_key(&netns) => {
                format!("ifindex:{ifindex}")
            }
            None => String::new(),
        }
    }

    pub fn names(&self) -> &InterfaceNames {
        &self.names
    }

    pub fn pressure(&self) -> &[NamespacePressure] {
        &self.pressure
    }
}

impl NamespaceJudge {
    /// Starts the lister's thread, once.
    pub fn start(&mut self) {
        if self.lister.is_none() {
            self.lister = Some(netns::NamespaceLister::start());
        }
    }

    /// Judges every count in `tables`: what is gone leaves them, counts of one key read under
    /// several cookies are summed, and the slots to free are returned with the names of the
    /// interfaces. `own_links` are the agent's namespace's links as the poll listed them;
    /// `sampled` the namespaces of drop samples, also named; `teardowns` is asked after the
    /// holders were looked for, so that a namespace found without one has been told of.
    pub fn judge(
        &mut self,
        tables: &mut TableRead,
        own_links: Option<(u32, Vec<(u32, String)>)>,
        sampled: BTreeSet<u32>,
        teardowns: impl FnOnce() -> Teardowns,
    ) -> anyhow::Result<(Naming, Departures)> {
        let read = tables.identities();
        let newest = newest_cookies(read.iter().map(|row| row.identity));
        // Counters in namespace 0 could not tell their namespace; they are never "gone". Each
        // namespace with the newest cookie read under its inode: a namespace that takes the
        // inode of one found without a holder is looked for at once.
        let mut wanted: BTreeMap<u32, u64> = newest.clone().into_iter().collect();
        wanted.remove(&0);
        for netns in sampled.into_iter().filter(|netns| *netns != 0) {
            wanted.entry(netns).or_default();
        }
        let mut presence = self.holders.find(&wanted);
        self.keep_unheld(&mut presence, &read, teardowns());
        self.unheld.retain(|netns, _| {
            wanted.contains_key(netns)
                && !presence.found.contains_key(netns)
                && !presence.gone.contains(netns)
        });
        let own_links = own_links.filter(|links| lists_every_counted(links, &read));
        let names = match &self.lister {
            Some(lister) => {
                let wanted = Wanted {
                    tcp: tables.peers.iter().map(|row| row.key.netns).collect(),
                    pressure: self.pressure.order(&presence.found),
                };
                lister.interface_names(&presence.found, own_links, &wanted)?
            }
            None => anyhow::bail!("the namespace lister starts with the first poll"),
        };
        let verdict = Verdict {
            names: &names,
            gone: &presence.gone,
            newest: &newest,
        };
        let departures = verdict.departures(&read);
        tables.visit(&mut Keep(&departures));
        let pressure = self
            .pressure
            .keep(names.pressure(), &presence.found, Instant::now());
        let naming = Naming {
            names,
            found: presence.found,
            pressure,
        };
        Ok((naming, departures))
    }

    /// A namespace that no process or mount holds may still live: a socket, or any other
    /// kernel reference, keeps it. Where the kernel tells of teardowns, only those go (and
    /// what stops moving for [`UNHELD_IDLE`]); the others keep their counts under their inode.
    fn keep_unheld(
        &mut self,
        presence: &mut Presence,
        read: &[IdentityRead],
        teardowns: Teardowns,
    ) {
        let lost = teardowns.lost > self.notices_lost;
        self.notices_lost = teardowns.lost;
        let told_before = std::mem::take(&mut self.told_while_held);
        let Some(notices) = teardowns.notices.filter(|_| !lost) else {
            return;
        };
        // A notice is kept for one poll only: an inode taken again by a namespace that is
        // held does not carry it on.
        self.told_while_held = notices
            .iter()
            .filter(|netns| presence.found.contains_key(netns))
            .copied()
            .collect();
        let mut totals: BTreeMap<u32, u64> = BTreeMap::new();
        for row in read {
            *totals.entry(row.identity.netns).or_default() += row.total;
        }
        let now = Instant::now();
        presence.gone.retain(|netns| {
            let total = totals.get(netns).copied().unwrap_or(0);
            let seen = self.unheld.entry(*netns).or_insert((total, now));
            if seen.0 != total {
                *seen = (total, now);
            }
            notices.contains(netns)
                || told_before.contains(netns)
                || now.duration_since(seen.1) >= UNHELD_IDLE
        });
    }
}

/// The newest cookie read under each namespace inode.
fn newest_cookies(read: impl Iterator<Item = SlotIdentity>) -> HashMap<u32, u64> {
    let mut newest: HashMap<u32, u64> = HashMap::new();
    for identity in read {
        let entry = newest.entry(identity.netns).or_default();
        *entry = (*entry).max(identity.netns_cookie);
    }
    newest
}

/// The poll listed the agent's own links before it read the maps: an interface made in
/// between has counts but no name there, and is listed again rather than taken as gone.
fn lists_every_counted((own, links): &(u32, Vec<(u32, String)>), read: &[IdentityRead]) -> bool {
    let indexes: HashSet<u32> = links.iter().map(|(ifindex, _)| *ifindex).collect();
    read.iter()
        .map(|row| &row.identity)
        .filter(|identity| identity.netns == *own && identity.ifindex != 0)
        .all(|identity| indexes.contains(&identity.ifindex))
}

/// What the judge found this poll.
struct Verdict<'a> {
    names: &'a InterfaceNames,
    /// Namespaces gone: no holder, and torn down where the kernel tells of teardowns.
    gone: &'a BTreeSet<u32>,
    /// The newest cookie read under each inode.
    newest: &'a HashMap<u32, u64>,
}

impl Verdict<'_> {
    /// A namespace made after another died may get its inode (and its devices' addresses
    /// and indexes): counts under a cookie other than the namespace's own are the dead
    /// one's. Where the namespace was not listed, the newest cookie read is its own: two
    /// namespaces never hold one inode at once. A cookie that could not be read (0) is never
    /// judged replaced.
    fn replaced(&self, netns: u32, cookie: u64) -> bool {
        cookie != 0
            && match self.names.cookie(netns) {
                Some(live) => cookie != live,
                None => self
                    .newest
                    .get(&netns)
                    .is_some_and(|newest| cookie < *newest),
            }
    }

    fn is_gone(&self, identity: &SlotIdentity) -> bool {
        self.gone.contains(&identity.netns)
            || (identity.ifindex != 0 && self.names.is_gone(identity.netns, identity.ifindex))
            || self.replaced(identity.netns, identity.netns_cookie)
    }

    /// The slots to free: only those read were judged; a slot claimed since may count an
    /// interface made after its namespace was listed, and is judged by the next poll.
    fn departures(&self, read: &[IdentityRead]) -> Departures {
        let mut departures = Departures {
            torn_down: self.gone.clone(),
            ..Departures::default()
        };
        for row in read.iter().filter(|row| self.is_gone(&row.identity)) {
            if row.by_device {
                departures.devices.insert(row.identity);
            } else {
                departures.namespaces.insert(row.identity);
            }
        }
        departures
    }
}

/// Drops the rows judged gone from each table, and sums the rows of one key read under more
/// than one cookie (a cookie that could not be read is never judged replaced) into the first.
struct Keep<'a>(&'a Departures);

impl TableVisitor for Keep<'_> {
    fn table<K: TableKey>(&mut self, rows: &mut Rows<K>) {
        rows.retain(|row| !self.0.judged(&row.identity(), K::BY_DEVICE));
        rows.sort_by_key(|row| row.key);
        rows.dedup_by(|later, kept| {
            let same = later.key == kept.key;
            if same {
                kept.value.absorb(&later.value);
            }
            same
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(found: &[u32], gone: &[u32]) -> Presence {
        Presence {
            found: found.iter().map(|netns| (*netns, PathBuf::new())).collect(),
            gone: gone.iter().copied().collect(),
        }
    }

    fn told(notices: &[u32]) -> Teardowns {
        Teardowns {
            notices: Some(notices.iter().copied().collect()),
            lost: 0,
        }
    }

    /// The thread that held a namespace ends after the poll found it and before the poll read
    /// the notices: the next poll, which finds no holder, still knows it torn down.
    #[test]
    fn a_teardown_told_while_the_holder_was_found_counts_next_poll() {
        let mut judge = NamespaceJudge::default();
        let mut first = presence(&[7], &[]);
        judge.keep_unheld(&mut first, &[], told(&[7]));
        let mut second = presence(&[], &[7, 8]);
        judge.keep_unheld(&mut second, &[], told(&[]));
        // 8 has no holder and no notice: a socket may keep it alive.
        assert_eq!(second.gone, BTreeSet::from([7]));
        let mut third = presence(&[], &[7]);
        judge.keep_unheld(&mut third, &[], told(&[]));
        assert!(third.gone.is_empty(), "a notice counts for one poll after");
    }
}
