//! The poll: one pass over every collector, producing a Snapshot.
mod drop_samples;
mod kernel_counts;
mod namespaces;
mod pressure;
mod process_io;
mod rotation;
mod runner;

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::MetadataExt as _,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use netmon_common::{
    peers::{PeerCounts, PeerKey},
    samples::DropSample,
    tcp_events::{TcpEvent, TcpEventKey},
};

use crate::{
    config::HostSettings,
    host::{
        addresses::OwnAddresses,
        cgroups::CgroupPaths,
        interfaces::{LinkDetails, OwnLinks},
        kallsyms::KernelSymbols,
        netlink::RouteChanges,
        peer_sockets,
        socket_owners::{self, SocketOwners},
        sockets::{self, TcpSummary, TcpTally},
    },
    model::{
        KernelCounters, ListeningSocket, Owner, Snapshot, SocketHolders,
        drops::DropSampleRecord,
        kernel_tables::{NamespacedCount, TableRead},
        peers::{LivePeers, PeerLedger},
        probes::Hook,
        processes::ProcessLedger,
    },
    probes::{ProbeSettings, Probes},
};
use kernel_counts::Namer;
use namespaces::{NamespaceJudge, Naming, Teardowns};
use runner::run;

/// How long socket owners found in `/proc` are trusted before the descriptor tables are read
/// again; a listener the agent has not seen before triggers a read at once.
const OWNER_RESCAN: Duration = Duration::from_secs(30);

/// The processes holding each socket, by socket inode.
type SocketOwnersByInode = BTreeMap<u32, Vec<Owner>>;

/// The agent's namespace and the (ifindex, name) of its links, as the poll listed them.
type OwnLinkNames = Option<(u32, Vec<(u32, String)>)>;

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
    namespaces: NamespaceJudge,
    symbols: KernelSymbols,
    /// Drop samples received since the start.
    drop_samples: u64,
    /// Socket I/O of processes from poll to poll, and the paths of their cgroups.
    ledger: ProcessLedger,
    /// The peers each namespace has named, from poll to poll.
    peers: PeerLedger,
    /// The number of this poll's walk of the socket iterator, which also counts the agent's
    /// namespace's open connections by peer; none where the socket dump counted them.
    socket_walk: Option<u64>,
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
            namespaces: NamespaceJudge::default(),
            symbols: KernelSymbols::open(),
            drop_samples: 0,
            ledger: ProcessLedger::default(),
            peers: PeerLedger::default(),
            socket_walk: None,
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
        self.namespaces.start();
        let mut snapshot = self.probe_report(begin);
        let own_links = self.own_namespace(&mut snapshot);
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
        let sampled = drop_samples::namespaces(&samples).collect();
        let naming = self.kernel_counters(&mut snapshot, own_links, sampled);
        let (socket_owners, probes) = (&mut self.owners, &mut self.probes);
        snapshot.pressure = pressure::pressure(&mut snapshot, naming.as_ref(), |inodes| {
            socket_owners.owners(inodes, |wanted| socket_holders(probes, wanted))
        });
        let now = snapshot.monotonic_seconds;
        if let Some((processes, in_use)) = run(&mut snapshot.collectors, "process_io", || {
            self.process_io(now)
        }) {
            snapshot.processes = processes;
            snapshot.kernel.map_entries.push(("processes", in_use));
        }
        snapshot.drop_samples = self.resolve_samples(&mut snapshot, samples, naming, &owners);
        snapshot.poll_duration_seconds = begin.elapsed().as_secs_f64();
        snapshot
    }

    /// A snapshot that tells how the probes stand, before anything is collected.
    fn probe_report(&self, begin: Instant) -> Snapshot {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let probes = &self.probes;
        Snapshot {
            timestamp_ms,
            monotonic_seconds: begin.duration_since(self.started).as_secs_f64(),
            netns: own_netns(),
            probes: probes.status().to_vec(),
            probe_load_error: probes.load_error().map(str::to_string),
            socket_iterator_error: probes.socket_iterator_error().map(str::to_string),
            file_iterator_error: probes.file_iterator_error().map(str::to_string),
            drop_sampling_error: probes.drop_sampling_error().map(str::to_string),
            namespace_watch: probes.namespace_watch().ok(),
            namespace_watch_error: probes.namespace_watch().err().map(str::to_string),
            socket_memo_error: probes.socket_memo_error().map(str::to_string),
            program_variant: Some(probes.program_variant()),
            ..Default::default()
        }
    }

    /// The agent's namespace: its interfaces with their details, addresses and capacities,
    /// and its connections. Returns its links, also for naming its kernel counters.
    fn own_namespace(&mut self, snapshot: &mut Snapshot) -> OwnLinkNames {
        let changed = self.route_changes.changed();
        let mut own_links = None;
        if let Some(mut interfaces) = run(&mut snapshot.collectors, "interfaces", || {
            self.links.read(changed)
        }) {
            let names = interfaces.iter().map(|i| (i.ifindex, i.name.clone()));
            own_links = Some((snapshot.netns, names.collect()));
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
                let own = addresses.get(&interface.ifindex);
                interface.addresses = own.cloned().unwrap_or_default();
            }
        }
        for interface in &mut snapshot.interfaces {
            let configured = self.host.link_capacity_mbps.get(&interface.name);
            interface.capacity_mbps = configured.copied().or(interface.speed_mbps);
        }
        if let Some((summary, source)) = run(&mut snapshot.collectors, "connections", || {
            self.tcp_summary()
        }) {
            snapshot.connections_source = Some(source);
            snapshot.connections = summary.states;
            snapshot.ephemeral_ports = summary.ephemeral;
        }
        own_links
    }

    /// Reads the kernel's tables, judges their namespaces, frees what is gone and names the
    /// rest into the snapshot; returns the names, also of the namespaces `sampled`.
    fn kernel_counters(
        &mut self,
        snapshot: &mut Snapshot,
        own_links: OwnLinkNames,
        sampled: BTreeSet<u32>,
    ) -> Option<Naming> {
        let (mut tables, programs) =
            run(&mut snapshot.collectors, "probes", || self.probes.read())?;
        self.own_tcp_events(&mut tables, snapshot);
        let lost = programs.namespace_notices_lost;
        let (judge, probes) = (&mut self.namespaces, &mut self.probes);
        let judged = run(&mut snapshot.collectors, "namespaces", || {
            let (naming, departures) =
                judge.judge(&mut tables, own_links, sampled, || Teardowns {
                    notices: probes.torn_down_namespaces(),
                    lost,
                })?;
            let (removed, entries) = probes.forget(&departures)?;
            if removed > 0 {
                tracing::debug!(removed, "forgot map entries of interfaces that are gone");
            }
            Ok((naming, entries))
        });
        // Where the judge failed, the counts are shown unjudged, their interfaces unnamed.
        let (naming, map_entries) = judged.unzip();
        let unnamed = Naming::default();
        let namer = Namer {
            naming: naming.as_ref().unwrap_or(&unnamed),
            reasons: self.probes.drop_reasons(),
            filter: &self.host.interfaces,
        };
        let mut live = naming
            .as_ref()
            .map(|naming| naming.names().live_peers().clone())
            .unwrap_or_default();
        live.extend(self.own_open_connections(&tables.peers, snapshot));
        let peers = self.peers.fold(
            (&tables.peers, &live),
            &self.host.peers,
            &snapshot.ephemeral_ports,
        );
        snapshot.kernel = KernelCounters {
            peers,
            map_entries: map_entries.unwrap_or_default(),
            ..namer.name(tables, programs)
        };
        naming
    }

    /// The open connections of the agent's namespace by peer: those the socket iterator
    /// counted in the peer table in this poll's walk, or else the socket dump's.
    fn own_open_connections(
        &self,
        rows: &[NamespacedCount<PeerKey, PeerCounts>],
        snapshot: &mut Snapshot,
    ) -> LivePeers {
        if let Some(walk) = self.socket_walk {
            let walked = rows.iter().filter(|row| row.value.open.walk == walk);
            return walked.map(|row| (row.key, row.value.open)).collect();
        }
        let own = snapshot.netns;
        run(&mut snapshot.collectors, "tcp_peers", || {
            peer_sockets::live_peers(own)
        })
        .unwrap_or_default()
    }

    /// The agent's own namespace always shows its TCP events where their hooks are
    /// attached, zeros included: a host without retransmits shows 0, not nothing.
    fn own_tcp_events(&self, tables: &mut TableRead, snapshot: &Snapshot) {
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
        if attached && !tables.tcp_events.iter().any(|e| e.key.netns == own) {
            let zeros = TcpEvent::ALL.map(|event| NamespacedCount {
                key: TcpEventKey { netns: own, event },
                netns_cookie: 0,
                value: 0,
            });
            tables.tcp_events.extend(zeros);
        }
    }

    /// The poll's drop samples made readable: names, times, processes, kernel functions.
    fn resolve_samples(
        &mut self,
        snapshot: &mut Snapshot,
        samples: Vec<DropSample>,
        naming: Option<Naming>,
        owners: &SocketOwnersByInode,
    ) -> Vec<DropSampleRecord> {
        self.drop_samples += samples.len() as u64;
        snapshot.drop_samples_total = self.drop_samples;
        let locations = drop_samples::locations(&samples);
        // Reads the kernel's symbol table, only when a sample comes from a new place.
        run(&mut snapshot.collectors, "kernel_symbols", || {
            self.symbols.learn(&locations)
        });
        let context = drop_samples::Context {
            reasons: self.probes.drop_reasons(),
            names: naming.as_ref().map(Naming::names),
            owners,
            symbols: &self.symbols,
        };
        drop_samples::resolve(samples, &context)
    }

    /// Connections by state from the socket iterator where it is loaded, else (or when a walk
    /// fails) from the socket dump.
    fn tcp_summary(&mut self) -> anyhow::Result<(TcpSummary, &'static str)> {
        self.socket_walk = None;
        match self.probes.tcp_sockets() {
            Some(Ok(tally)) => {
                self.socket_walk = Some(tally.walk);
                return Ok((TcpTally::from(tally).finish(), "socket_iterator"));
            }
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
}

/// The holders of the `wanted` sockets from the socket file iterator where it is loaded, else
/// (or when a walk fails) from `/proc`; and which of the two it was.
fn socket_holders(probes: &mut Probes, wanted: &BTreeSet<u32>) -> (SocketHolders, &'static str) {
    match probes.socket_holders(wanted) {
        Some(Ok(holders)) => return (holders, "file_iterator"),
        Some(Err(err)) => tracing::warn!("socket file iterator: {err:#}; reading /proc"),
        None => {}
    }
    (socket_owners::scan_socket_inodes(wanted), "proc")
}
