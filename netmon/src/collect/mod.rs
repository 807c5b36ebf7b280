//! The poll: one pass over every collector, producing a Snapshot.
mod drop_samples;
mod process_io;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    host::{
        addresses::OwnAddresses,
        cgroups::CgroupPaths,
        interfaces::{LinkDetails, OwnLinks},
        kallsyms::KernelSymbols,
        netlink::RouteChanges,
        netns::{self, InterfaceNames},
        processes::{self, SocketOwners},
        sockets::{self, TcpSummary, TcpTally},
    },
    model::{
        CollectorRun, KernelCounters, ListeningSocket, Owner, Snapshot, SocketHolders, TcpEvents,
        probes::Hook, processes::ProcessLedger,
    },
    probes::{ProbeSettings, Probes},
    settings::HostSettings,
};

/// How long socket owners found in `/proc` are trusted before the descriptor tables are read
/// again; a listener the agent has not seen before triggers a read at once.
const OWNER_RESCAN: Duration = Duration::from_secs(30);

/// How long the counts of a namespace that no process or mount holds are kept without moving,
/// where the kernel tells of teardowns: what the programs counted while a namespace went (a
/// packet on its way in as its devices went) arrives after the notice, and goes after this.
const UNHELD_IDLE: Duration = Duration::from_secs(600);

/// The processes holding each socket, by socket inode.
type SocketOwnersByInode = BTreeMap<u32, Vec<Owner>>;

/// Inode of the agent's own network namespace.
pub fn own_netns() -> u32 {
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino() as u32)
        .unwrap_or(0)
}

/// Owns the kernel programs and collects snapshots. Dropping it detaches the programs.
pub struct Poller {
    probes: Probes,
    host: HostSettings,
    owners: SocketOwners,
    details: LinkDetails,
    /// The kernel's announcements of changed links and addresses in the agent's namespace,
    /// and what was read of them.
    route_changes: RouteChanges,
    links: OwnLinks,
    addresses: OwnAddresses,
    holders: netns::Holders,
    /// Namespaces with counts that no process or mount holds, kept while the kernel has not
    /// torn them down: the total of their counts, and when it last moved.
    unheld: BTreeMap<u32, (u64, Instant)>,
    /// Teardown notices lost so far (a full ring): a poll that sees more lost falls back to
    /// taking every namespace without a holder as gone.
    notices_lost: u64,
    /// Started by the first poll: after the caller has settled its thread's user and
    /// capabilities, which the lister's thread inherits.
    namespaces: Option<netns::NamespaceLister>,
    symbols: KernelSymbols,
    /// Drop samples received since the start.
    drop_samples: u64,
    /// Socket I/O of processes from poll to poll, and the paths of their cgroups.
    ledger: ProcessLedger,
    cgroups: CgroupPaths,
    started: Instant,
}

impl Poller {
    pub fn new(probes: &ProbeSettings, host: HostSettings) -> Self {
        Self {
            probes: Probes::start(probes),
            host,
            owners: SocketOwners::new(OWNER_RESCAN),
            details: LinkDetails::default(),
            route_changes: RouteChanges::default(),
            links: OwnLinks::default(),
            addresses: OwnAddresses::default(),
            holders: netns::Holders::default(),
            unheld: BTreeMap::new(),
            notices_lost: 0,
            namespaces: None,
            symbols: KernelSymbols::open(),
            drop_samples: 0,
            ledger: ProcessLedger::default(),
            cgroups: CgroupPaths::open(),
            started: Instant::now(),
        }
    }

    /// Replaces the host settings (after a configuration reload).
    pub fn set_host_settings(&mut self, host: HostSettings) {
        self.host = host;
    }

    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// Runs every collector once. A failing collector is reported in the snapshot and the
    /// others still run.
    pub fn poll(&mut self) -> Snapshot {
        let begin = Instant::now();
        if self.namespaces.is_none() {
            self.namespaces = Some(netns::NamespaceLister::start());
        }
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut snapshot = Snapshot {
            timestamp_ms,
            monotonic_seconds: begin.duration_since(self.started).as_secs_f64(),
            netns: own_netns(),
            probes: self.probes.status().to_vec(),
            probe_load_error: self.probes.load_error().map(str::to_string),
            socket_iterator_error: self.probes.socket_iterator_error().map(str::to_string),
            file_iterator_error: self.probes.file_iterator_error().map(str::to_string),
            drop_sampling_error: self.probes.drop_sampling_error().map(str::to_string),
            namespace_watch: self.probes.namespace_watch().ok(),
            namespace_watch_error: self.probes.namespace_watch().err().map(str::to_string),
            socket_memo_error: self.probes.socket_memo_error().map(str::to_string),
            program_variant: Some(self.probes.program_variant()),
            ..Default::default()
        };

        // The links of the agent's namespace, also for naming its kernel counters.
        let changed = self.route_changes.changed();
        let mut own_links = None;
        if let Some(mut interfaces) = run(&mut snapshot.collectors, "interfaces", || {
            self.links.read(changed)
        }) {
            own_links = Some((
                snapshot.netns,
                interfaces
                    .iter()
                    .map(|i| (i.ifindex, i.name.clone()))
                    .collect(),
            ));
            interfaces.retain(|i| self.host.interfaces.allows(&i.name));
            snapshot.interfaces = interfaces;
        }
        run(&mut snapshot.collectors, "link_details", || {
            self.details.fill(&mut snapshot.interfaces)
        });
        if let Some(addresses) = run(&mut snapshot.collectors, "addresses", || {
            self.addresses.read(changed)
        }) {
            for interface in &mut snapshot.interfaces {
                interface.addresses = addresses
                    .get(&interface.ifindex)
                    .cloned()
                    .unwrap_or_default();
            }
        }
        for interface in &mut snapshot.interfaces {
            interface.capacity_mbps = self
                .host
                .link_capacity_mbps
                .get(&interface.name)
                .copied()
                .or(interface.speed_mbps);
        }
        if let Some((summary, source)) = run(&mut snapshot.collectors, "connections", || {
            self.tcp_summary()
        }) {
            snapshot.connections_source = Some(source);
            snapshot.connections = summary.states;
            snapshot.ephemeral_ports = summary.ephemeral;
        }
        let budget = self.host.drop_sample_budget;
        let (samples, suppressed) = run(&mut snapshot.collectors, "drop_samples", || {
            self.probes.drop_samples(budget)
        })
        .unwrap_or_default();
        snapshot.drop_samples_suppressed = suppressed;
        // One look in the descriptor tables finds the listeners' processes and the samples'.
        let mut owners = BTreeMap::new();
        if let Some((listening, found)) = run(&mut snapshot.collectors, "listening", || {
            self.listening(drop_samples::socket_inodes(&samples))
        }) {
            snapshot.listening = listening;
            owners = found;
        }
        snapshot.socket_owners_source = self.owners.source();
        let mut names = None;
        if let Some(kernel) = run(&mut snapshot.collectors, "probes", || self.probes.read()) {
            snapshot.kernel = kernel;
            // The agent's own namespace always shows its TCP events where their hooks are
            // attached, zeros included: a host without retransmits shows 0, not nothing.
            let own = snapshot.netns;
            let tcp_hooks = [
                Hook::TcpRetransmitSkb,
                Hook::TcpSendReset,
                Hook::TcpReceiveReset,
            ];
            let attached = snapshot
                .probes
                .iter()
                .any(|p| tcp_hooks.contains(&p.probe) && p.method.is_some());
            let events = &mut snapshot.kernel.tcp_events;
            if attached && !events.iter().any(|e| e.netns == own) {
                events.push(TcpEvents {
                    netns: own,
                    ..Default::default()
                });
                events.sort_by_key(|e| e.netns);
            }
            let sampled = drop_samples::namespaces(&samples).collect();
            names = run(&mut snapshot.collectors, "namespaces", || {
                self.resolve_namespaces(&mut snapshot.kernel, own_links, sampled)
            });
        }
        let now = snapshot.monotonic_seconds;
        if let Some((processes, in_use)) = run(&mut snapshot.collectors, "process_io", || {
            self.process_io(now)
        }) {
            snapshot.processes = processes;
            snapshot.kernel.map_entries.push(("processes", in_use));
        }
        self.drop_samples += samples.len() as u64;
        snapshot.drop_samples_total = self.drop_samples;
        let locations = drop_samples::locations(&samples);
        // Reads the kernel's symbol table, only when a sample comes from a new place.
        run(&mut snapshot.collectors, "kernel_symbols", || {
            self.symbols.learn(&locations)
        });
        let context = drop_samples::Context {
            reasons: self.probes.drop_reasons(),
            names: names.as_ref(),
            owners: &owners,
            symbols: &self.symbols,
        };
        snapshot.drop_samples = drop_samples::resolve(samples, &context);
        snapshot.poll_duration_seconds = begin.elapsed().as_secs_f64();
        snapshot
    }

    /// Connections by state from the socket iterator where it is loaded, else (or when a walk
    /// fails) from the socket dump.
    fn tcp_summary(&mut self) -> anyhow::Result<(TcpSummary, &'static str)> {
        match self.probes.tcp_sockets() {
            Some(Ok(tally)) => return Ok((TcpTally::from(tally).finish(), "socket_iterator")),
            Some(Err(err)) => tracing::warn!("socket iterator: {err:#}; reading the socket dump"),
            None => {}
        }
        Ok((sockets::tcp_summary()?, "socket_dump"))
    }

    /// The listening sockets with their processes, and the processes of the sockets
    /// `also` names.
    fn listening(
        &mut self,
        also: BTreeSet<u32>,
    ) -> anyhow::Result<(Vec<ListeningSocket>, SocketOwnersByInode)> {
        let listeners = sockets::listeners()?;
        let mut inodes = also;
        inodes.extend(listeners.iter().map(|l| l.inode));
        let probes = &mut self.probes;
        let owners = self
            .owners
            .owners(&inodes, |wanted| socket_holders(probes, wanted));
        let listening = listeners
            .into_iter()
            .map(|l| ListeningSocket {
                protocol: l.protocol,
                address: l.address.to_string(),
                port: l.port,
                processes: owners.get(&l.inode).cloned().unwrap_or_default(),
            })
            .collect();
        Ok((listening, owners))
    }

    /// Gives the kernel counters their interface names, in whatever namespace they are, and
    /// forgets the counters of interfaces and namespaces that are gone; returns the names,
    /// also of the namespaces `sampled` (of drop samples).
    fn resolve_namespaces(
        &mut self,
        kernel: &mut KernelCounters,
        own_links: Option<(u32, Vec<(u32, String)>)>,
        sampled: BTreeSet<u32>,
    ) -> anyhow::Result<InterfaceNames> {
        // Counters in namespace 0 could not tell their namespace; they are never "gone". Each
        // namespace with the newest cookie read under its inode: a namespace that takes the
        // inode of one found without a holder is looked for at once.
        let mut wanted: BTreeMap<u32, u64> = BTreeMap::new();
        let counted = kernel
            .traffic
            .iter()
            .map(|t| (t.netns, t.netns_cookie))
            .chain(kernel.drops.iter().map(|d| (d.netns, d.netns_cookie)))
            .chain(kernel.transitions.iter().map(|t| (t.netns, t.netns_cookie)))
            .chain(kernel.handshakes.iter().map(|h| (h.netns, h.netns_cookie)))
            .chain(kernel.tcp_events.iter().map(|e| (e.netns, e.netns_cookie)))
            .chain(sampled.into_iter().map(|netns| (netns, 0)));
        for (netns, cookie) in counted.filter(|(netns, _)| *netns != 0) {
            let newest = wanted.entry(netns).or_default();
            *newest = (*newest).max(cookie);
        }
        let mut presence = self.holders.find(&wanted);
        // A namespace that no process or mount holds may still live: a socket, or any other
        // kernel reference, keeps it. Where the kernel tells of teardowns, only those go (and
        // what stops moving for UNHELD_IDLE); the others keep their counts under their inode.
        let notices = self.probes.torn_down_namespaces();
        let lost = kernel.namespace_notices_lost > self.notices_lost;
        self.notices_lost = kernel.namespace_notices_lost;
        if let Some(notices) = notices
            && !lost
        {
            let now = Instant::now();
            let totals = namespace_totals(kernel);
            presence.gone.retain(|netns| {
                let total = totals.get(netns).copied().unwrap_or(0);
                let seen = self.unheld.entry(*netns).or_insert((total, now));
                if seen.0 != total {
                    *seen = (total, now);
                }
                notices.contains(netns) || now.duration_since(seen.1) >= UNHELD_IDLE
            });
        }
        self.unheld.retain(|netns, _| {
            wanted.contains_key(netns)
                && !presence.found.contains_key(netns)
                && !presence.gone.contains(netns)
        });
        // The poll listed the agent's own links before it read the maps: an interface made in
        // between has counts but no name there, and is listed again rather than taken as gone.
        let own_links = own_links.filter(|(own, links)| {
            let indexes: HashSet<u32> = links.iter().map(|(ifindex, _)| *ifindex).collect();
            let listed = |ifindex: u32| ifindex == 0 || indexes.contains(&ifindex);
            kernel
                .traffic
                .iter()
                .map(|t| (t.netns, t.ifindex))
                .chain(kernel.drops.iter().map(|d| (d.netns, d.ifindex)))
                .all(|(netns, ifindex)| netns != *own || listed(ifindex))
        });
        let names = match &self.namespaces {
            Some(lister) => lister.interface_names(&presence.found, own_links)?,
            None => anyhow::bail!("the namespace lister starts with the first poll"),
        };
        // Only interfaces read from the maps were looked for: a slot claimed since may count
        // an interface made after its namespace was listed, and is judged by the next poll.
        let read: HashSet<(u32, u32, u64)> = kernel
            .traffic
            .iter()
            .map(|t| (t.netns, t.ifindex, t.netns_cookie))
            .chain(
                kernel
                    .drops
                    .iter()
                    .map(|d| (d.netns, d.ifindex, d.netns_cookie)),
            )
            .collect();
        let tcp_read: HashSet<(u32, u64)> = kernel
            .transitions
            .iter()
            .map(|t| (t.netns, t.netns_cookie))
            .chain(kernel.tcp_events.iter().map(|e| (e.netns, e.netns_cookie)))
            .chain(kernel.handshakes.iter().map(|h| (h.netns, h.netns_cookie)))
            .collect();
        // A namespace made after another died may get its inode (and its devices' addresses
        // and indexes): counts under a cookie other than the namespace's own are the dead
        // one's. Where the namespace was not listed, the newest cookie read is its own: two
        // namespaces never hold one inode at once.
        let mut newest: HashMap<u32, u64> = HashMap::new();
        let device_cookies = read.iter().map(|&(netns, _, cookie)| (netns, cookie));
        for (netns, cookie) in device_cookies.chain(tcp_read.iter().copied()) {
            let entry = newest.entry(netns).or_default();
            *entry = (*entry).max(cookie);
        }
        let replaced = |netns: u32, cookie: u64| {
            cookie != 0
                && match names.cookie(netns) {
                    Some(live) => cookie != live,
                    None => newest.get(&netns).is_some_and(|newest| cookie < *newest),
                }
        };
        let gone = |netns: u32, ifindex: u32, cookie: u64| {
            presence.gone.contains(&netns)
                || (ifindex != 0 && names.is_gone(netns, ifindex))
                || replaced(netns, cookie)
        };
        kernel
            .traffic
            .retain(|t| !gone(t.netns, t.ifindex, t.netns_cookie));
        kernel
            .drops
            .retain(|d| !gone(d.netns, d.ifindex, d.netns_cookie));
        // A slot whose cookie could not be read (0) is never judged replaced, so an interface
        // may still be read under two cookies: their counts are summed.
        merge(
            &mut kernel.traffic,
            |a, b| (a.netns, a.ifindex).cmp(&(b.netns, b.ifindex)),
            |kept, later| {
                kept.rx_packets += later.rx_packets;
                kept.rx_bytes += later.rx_bytes;
                kept.tx_packets += later.tx_packets;
                kept.tx_bytes += later.tx_bytes;
                kept.tx_failed += later.tx_failed;
            },
        );
        merge(
            &mut kernel.drops,
            |a, b| a.key.cmp(&b.key),
            |kept, later| kept.count += later.count,
        );
        // An interface of a namespace no process or mount holds cannot be listed: it is named
        // by its index, in a form no interface name takes (names have no ':').
        let name = |netns: u32, ifindex: u32| match names.get(netns, ifindex) {
            Some(name) => name.to_string(),
            None if ifindex != 0 && !presence.found.contains_key(&netns) => {
                format!("ifindex:{ifindex}")
            }
            None => String::new(),
        };
        for traffic in &mut kernel.traffic {
            traffic.interface = name(traffic.netns, traffic.ifindex);
        }
        for drop in &mut kernel.drops {
            drop.interface = name(drop.netns, drop.ifindex);
        }
        let filter = &self.host.interfaces;
        kernel.traffic.retain(|t| filter.allows(&t.interface));
        // Drops without a device stay: they belong to no interface a pattern could name.
        kernel
            .drops
            .retain(|d| d.interface.is_empty() || filter.allows(&d.interface));
        let (removed, entries) = self.probes.forget(
            &|key, cookie| {
                read.contains(&(key.netns, key.ifindex, cookie))
                    && gone(key.netns, key.ifindex, cookie)
            },
            &|netns, cookie| {
                presence.gone.contains(&netns)
                    || (tcp_read.contains(&(netns, cookie)) && replaced(netns, cookie))
            },
        )?;
        let kept =
            |netns: u32, cookie: u64| !presence.gone.contains(&netns) && !replaced(netns, cookie);
        kernel.transitions.retain(|t| kept(t.netns, t.netns_cookie));
        merge(
            &mut kernel.transitions,
            |a, b| (a.netns, a.family, &a.from, &a.to).cmp(&(b.netns, b.family, &b.from, &b.to)),
            |kept, later| kept.count += later.count,
        );
        kernel.handshakes.retain(|h| kept(h.netns, h.netns_cookie));
        merge(
            &mut kernel.handshakes,
            |a, b| (a.netns, a.open).cmp(&(b.netns, b.open)),
            |kept, later| {
                for (total, count) in kept.buckets.iter_mut().zip(&later.buckets) {
                    *total += count;
                }
                kept.sum_ns += later.sum_ns;
            },
        );
        kernel.tcp_events.retain(|e| kept(e.netns, e.netns_cookie));
        merge(
            &mut kernel.tcp_events,
            |a, b| a.netns.cmp(&b.netns),
            |kept, later| {
                kept.retransmits += later.retransmits;
                kept.resets_sent += later.resets_sent;
                kept.resets_received += later.resets_received;
            },
        );
        if removed > 0 {
            tracing::debug!(removed, "forgot map entries of interfaces that are gone");
        }
        kernel.map_entries = entries;
        Ok(names)
    }
}

/// Sums the items of one key (equal by `order`) read under more than one namespace cookie
/// into the first: `add(kept, later)`.
fn merge<T>(
    items: &mut Vec<T>,
    order: impl Fn(&T, &T) -> std::cmp::Ordering,
    add: impl Fn(&mut T, &T),
) {
    items.sort_by(&order);
    items.dedup_by(|later, kept| {
        let same = order(later, kept).is_eq();
        if same {
            add(kept, later);
        }
        same
    });
}

/// The total of every count of each namespace, to tell whether a namespace's counts moved.
fn namespace_totals(kernel: &KernelCounters) -> BTreeMap<u32, u64> {
    let mut totals = BTreeMap::new();
    let counts = kernel
        .traffic
        .iter()
        .map(|t| (t.netns, t.rx_packets + t.tx_packets + t.tx_failed))
        .chain(kernel.drops.iter().map(|d| (d.netns, d.count)))
        .chain(kernel.transitions.iter().map(|t| (t.netns, t.count)))
        .chain(kernel.handshakes.iter().map(|h| (h.netns, h.count())))
        .chain(
            kernel
                .tcp_events
                .iter()
                .map(|e| (e.netns, e.retransmits + e.resets_sent + e.resets_received)),
        );
    for (netns, count) in counts {
        *totals.entry(netns).or_insert(0u64) += count;
    }
    totals
}

/// Runs one collector, recording how it went. A collector that fails or panics is reported
/// and the poll goes on with the others.
fn run<T>(
    runs: &mut Vec<CollectorRun>,
    collector: &'static str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> Option<T> {
    let begin = Instant::now();
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(anyhow::anyhow!("panicked: {message}"))
        });
    let duration_seconds = begin.elapsed().as_secs_f64();
    match result {
        Ok(value) => {
            runs.push(CollectorRun {
                collector,
                success: true,
                duration_seconds,
                error: None,
            });
            Some(value)
        }
        Err(err) => {
            tracing::warn!(collector, "collector failed: {err:#}");
            runs.push(CollectorRun {
                collector,
                success: false,
                duration_seconds,
                error: Some(format!("{err:#}")),
            });
            None
        }
    }
}

/// The holders of the `wanted` sockets from the socket file iterator where it is loaded, else
/// (or when a walk fails) from `/proc`; and which of the two it was.
fn socket_holders(probes: &mut Probes, wanted: &BTreeSet<u32>) -> (SocketHolders, &'static str) {
    match probes.socket_holders(wanted) {
        Some(Ok(holders)) => return (holders, "file_iterator"),
        Some(Err(err)) => tracing::warn!("socket file iterator: {err:#}; reading /proc"),
        None => {}
    }
    (processes::scan_socket_inodes(wanted), "proc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_or_panicking_collector_is_reported_and_the_rest_go_on() {
        let mut runs = Vec::new();
        assert_eq!(run(&mut runs, "good", || Ok(1)), Some(1));
        assert_eq!(
            run::<u8>(&mut runs, "bad", || anyhow::bail!("no such file")),
            None
        );
        assert_eq!(
            run::<u8>(&mut runs, "broken", || panic!("index out of range")),
            None
        );
        assert_eq!(run(&mut runs, "after", || Ok(2)), Some(2));
        let outcome: Vec<(&str, bool)> = runs.iter().map(|r| (r.collector, r.success)).collect();
        assert_eq!(
            outcome,
            [
                ("good", true),
                ("bad", false),
                ("broken", false),
                ("after", true)
            ]
        );
        assert_eq!(runs[1].error.as_deref(), Some("no such file"));
        assert_eq!(
            runs[2].error.as_deref(),
            Some("panicked: index out of range")
        );
    }
}
