//! Network namespaces of the host, and the interfaces inside each, so that counters keyed by
//! (namespace inode, interface index) get their names, also in namespaces the agent is not in.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs::File,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};

use crate::{
    host::{netlink, peer_sockets, pressure},
    model::{peers::LivePeers, pressure::NamespacePressure},
    privileges,
};

/// Where namespaces made with `ip netns add` are mounted.
const NAMED_NAMESPACES: &str = "/run/netns";

/// Where each namespace the counters name can be opened. A path found once is kept while it
/// still leads to its namespace (one `stat` a poll); `/proc` is walked only when a namespace
/// has no such path, and its threads only when its processes did not do.
#[derive(Debug, Default)]
pub struct Holders {
    paths: BTreeMap<u32, PathBuf>,
    /// Namespaces the last look found no holder of, with the cookie then read under the inode,
    /// and when: a namespace that only a kernel reference keeps alive is looked for again
    /// after [`UNHELD_RECHECK`], not at every poll. The kernel gives a dead namespace's inode
    /// to the next one made, at once: counts under the inode with another cookie are another
    /// namespace's, and it is looked for at once. Where the cookie is not known (0), nothing
    /// tells the two apart, and a namespace without a holder is looked for at every poll.
    unheld: BTreeMap<u32, (u64, Instant)>,
}

/// How long a namespace found without a holder is taken to have none.
const UNHELD_RECHECK: Duration = Duration::from_secs(30);

/// Which of the wanted namespaces were found, and where.
#[derive(Debug, Default)]
pub struct Presence {
    pub found: BTreeMap<u32, PathBuf>,
    /// Wanted, but no named mount, process, thread, descriptor or bind mount of another
    /// mount namespace holds them any more.
    pub gone: BTreeSet<u32>,
}

impl Holders {
    /// Where the `wanted` namespaces are held: each namespace inode with the newest cookie
    /// read under it (0 where the kernel does not tell it).
    pub fn find(&mut self, wanted: &BTreeMap<u32, u64>) -> Presence {
        let inodes: BTreeSet<u32> = wanted.keys().copied().collect();
        self.paths
            .retain(|netns, path| inodes.contains(netns) && inode(path) == Some(*netns));
        let now = Instant::now();
        self.unheld.retain(|netns, (cookie, since)| {
            wanted.get(netns) == Some(cookie) && now.duration_since(*since) < UNHELD_RECHECK
        });
        let missing = |holders: &Self| {
            inodes
                .iter()
                .any(|n| !holders.paths.contains_key(n) && !holders.unheld.contains_key(n))
        };
        if missing(self) {
            self.walk(&inodes, false);
        }
        if missing(self) {
            self.walk(&inodes, true);
        }
        // Held only by an open descriptor, or by a bind mount in another mount namespace (a
        // container's /run/netns): the last places, looked at only for what is still missing.
        if missing(self) {
            self.walk_descriptors_and_mounts(&inodes);
        }
        self.unheld
            .retain(|netns, _| !self.paths.contains_key(netns));
        for (netns, cookie) in wanted {
            if *cookie != 0 && !self.paths.contains_key(netns) {
                self.unheld.entry(*netns).or_insert((*cookie, now));
            }
        }
        Presence {
            found: self.paths.clone(),
            gone: inodes
                .into_iter()
                .filter(|n| !self.paths.contains_key(n))
                .collect(),
        }
    }

    /// Named mounts and processes, or with `threads` every thread but each process's first,
    /// which the process walk saw (a thread may live in a namespace of its own, after unshare
    /// or setns).
    fn walk(&mut self, wanted: &BTreeSet<u32>, threads: bool) {
        let mut add = |path: PathBuf| {
            if let Some(netns) = inode(&path)
                && wanted.contains(&netns)
            {
                self.paths.entry(netns).or_insert(path);
            }
        };
        if !threads && let Ok(entries) = std::fs::read_dir(NAMED_NAMESPACES) {
            for entry in entries.flatten() {
                add(entry.path());
            }
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.as_encoded_bytes().iter().all(u8::is_ascii_digit) {
                continue;
            }
            if !threads {
                add(entry.path().join("ns/net"));
                continue;
            }
            if let Ok(tasks) = std::fs::read_dir(entry.path().join("task")) {
                for task in tasks.flatten() {
                    if task.file_name() != name {
                        add(task.path().join("ns/net"));
                    }
                }
            }
        }
    }

    /// Descriptors of every process that are network namespaces, and the
    /// namespace bind mounts (`nsfs`) of every other mount namespace, opened through the
    /// process (`/proc/<pid>/fd/<n>`, `/proc/<pid>/root/<mount point>`).
    fn walk_descriptors_and_mounts(&mut self, wanted: &BTreeSet<u32>) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        let own_mounts = inode(Path::new("/proc/self/ns/mnt"));
        let nsfs = std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.dev());
        let mut mounts_seen = BTreeSet::new();
        let net_inode = |text: &str| -> Option<u32> {
            text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
        };
        for entry in entries.flatten() {
            if !entry
                .file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
            {
                continue;
            }
            let process = entry.path();
            if let Ok(descriptors) = std::fs::read_dir(process.join("fd")) {
                // A namespace opened through a bind mount shows that path, not `net:[...]`:
                // the file itself tells, by its file system and inode.
                for descriptor in descriptors.flatten() {
                    let Ok(meta) = std::fs::metadata(descriptor.path()) else {
                        continue;
                    };
                    let netns = meta.ino() as u32;
                    if Some(meta.dev()) == nsfs && wanted.contains(&netns) {
                        self.paths.entry(netns).or_insert(descriptor.path());
                    }
                }
            }
            let mounts = inode(&process.join("ns/mnt"));
            if mounts.is_none() || mounts == own_mounts || !mounts_seen.insert(mounts) {
                continue;
            }
            let Ok(table) = std::fs::read_to_string(process.join("mountinfo")) else {
                continue;
            };
            // mountinfo: id parent major:minor root mount-point options ... - fstype source
            for line in table.lines().filter(|l| l.contains(" - nsfs ")) {
                let fields: Vec<&str> = line.split(' ').collect();
                let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else {
                    continue;
                };
                if let Some(netns) = net_inode(root)
                    && wanted.contains(&netns)
                {
                    let path = process.join("root").join(point.trim_start_matches('/'));
                    self.paths.entry(netns).or_insert(path);
                }
            }
        }
        self.paths.retain(|netns, path| inode(path) == Some(*netns));
    }
}

/// The inode of the namespace at `path`, if it opens one.
fn inode(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|meta| meta.ino() as u32)
}

/// Interface names per namespace: (namespace inode, ifindex) -> name; and the connections
/// of the namespaces the thread listed.
#[derive(Clone, Debug, Default)]
pub struct InterfaceNames {
    names: HashMap<(u32, u32), String>,
    /// Namespaces whose links were listed; keys of other namespaces are unknown, not gone.
    listed: Vec<u32>,
    /// The cookie of each namespace listed where the kernel tells it.
    cookies: HashMap<u32, u64>,
    /// The TCP connections not yet closed of the namespaces the thread listed, by peer.
    peers: LivePeers,
    /// What fills up in each namespace the thread listed.
    pressure: Vec<NamespacePressure>,
    /// The time the thread spent reading it.
    pressure_seconds: f64,
}

impl InterfaceNames {
    pub fn get(&self, netns: u32, ifindex: u32) -> Option<&str> {
        self.names.get(&(netns, ifindex)).map(String::as_str)
    }

    /// Whether an interface is known to be gone: its namespace was listed without it.
    pub fn is_gone(&self, netns: u32, ifindex: u32) -> bool {
        self.listed.contains(&netns) && !self.names.contains_key(&(netns, ifindex))
    }

    /// The cookie of the namespace that has the inode `netns` now, where it was listed and
    /// the kernel tells it (Linux 5.14 and later).
    pub fn cookie(&self, netns: u32) -> Option<u64> {
        self.cookies.get(&netns).copied()
    }

    /// The TCP connections of the namespaces the thread listed (not the agent's own).
    pub fn live_peers(&self) -> &LivePeers {
        &self.peers
    }

    /// What fills up in each namespace the thread listed (not the agent's own).
    pub fn pressure(&self) -> &[NamespacePressure] {
        &self.pressure
    }

    /// The time the thread spent reading the namespaces' pressure.
    pub fn pressure_seconds(&self) -> f64 {
        self.pressure_seconds
    }

    /// Every link of `netns`, its cookie where known, and its connections.
    fn add_listing(&mut self, netns: u32, listing: Listing) {
        let Listing {
            links,
            cookie,
            peers,
            pressure,
        } = listing;
        self.peers.extend(peers);
        self.pressure.extend(pressure);
        self.listed.push(netns);
        if let Some(cookie) = cookie {
            self.cookies.insert(netns, cookie);
        }
        for (ifindex, name) in links {
            self.names.insert((netns, ifindex), name);
        }
    }
}

/// What the lister's thread learns of a namespace, from inside it.
struct Listing {
    /// (ifindex, name) of every link.
    links: Vec<(u32, String)>,
    cookie: Option<u64>,
    /// Its TCP connections by peer; none where the dump failed.
    peers: LivePeers,
    /// What fills up in it; none for the agent's own, which the poll reads.
    pressure: Option<NamespacePressure>,
}

/// The listings of some namespaces, by namespace, and the time spent reading their pressure.
type Listings = (Vec<(u32, Listing)>, Duration);
/// Namespaces to list (with what else to read there), and where to send the listings.
type Job = (Vec<(u32, PathBuf, Extras)>, mpsc::Sender<Listings>);

/// What the thread reads in a namespace besides its links.
#[derive(Clone, Copy, Debug)]
struct Extras {
    /// Its TCP connections by peer.
    tcp: bool,
    /// What fills up in it.
    pressure: bool,
}

/// The namespaces to read more of than their links (see [`NamespaceLister::interface_names`]).
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    /// Namespaces whose TCP connections to dump.
    pub tcp: BTreeSet<u32>,
    /// Namespaces whose pressure to read, in the order to read them.
    pub pressure: Vec<u32>,
}

/// The time a job may spend on pressure: the namespaces past it are left for the next poll,
/// which reads them first, so that a poll stays cheap however many namespaces there are.
pub const PRESSURE_BUDGET: Duration = Duration::from_millis(8);

/// What the namespace thread keeps: opening another process's `/proc/<pid>/ns/net` takes
/// `CAP_SYS_PTRACE`, entering the namespace `CAP_SYS_ADMIN`, listing its links nothing.
pub const NAMESPACE_THREAD_CAPABILITIES: [u32; 2] =
    [privileges::CAP_SYS_ADMIN, privileges::CAP_SYS_PTRACE];

/// A thread of its own that enters other namespaces to list their links, so that no other
/// thread of the agent ever changes namespace. It is started once, by the first poll, and
/// keeps only [`NAMESPACE_THREAD_CAPABILITIES`]: at any moment after start-up the agent's
/// threads and their capabilities are the same.
pub struct NamespaceLister {
    jobs: Option<mpsc::Sender<Job>>,
    worker: Option<thread::JoinHandle<()>>,
    /// Why the thread could not start, when it could not.
    error: Option<String>,
}

impl NamespaceLister {
    pub fn start() -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let worker = thread::Builder::new()
            .name("netmon-netns".into())
            .spawn(move || {
                if let Err(err) = privileges::keep_only(&NAMESPACE_THREAD_CAPABILITIES) {
                    tracing::warn!("cannot reduce the namespace thread's capabilities: {err}");
                }
                // Back home after each job: a namespace the thread stayed in would be held
                // alive by the agent itself, and never reported gone.
                let home = File::open("/proc/thread-self/ns/net");
                for (namespaces, answer) in queue {
                    let mut spent = Duration::ZERO;
                    let listings = namespaces
                        .into_iter()
                        .filter_map(|(netns, path, extras)| {
                            match list(netns, &path, extras, &mut spent) {
                                Ok(listing) => Some((netns, listing)),
                                Err(err) => {
                                    tracing::debug!(netns, "cannot list links: {err:#}");
                                    None
                                }
                            }
                        })
                        .collect();
                    let back = home.as_ref().map_err(|e| e.to_string()).and_then(enter);
                    if let Err(err) = back {
                        tracing::warn!("the namespace thread cannot return home: {err}");
                    }
                    let _ = answer.send((listings, spent));
                }
            });
        match worker {
            Ok(worker) => Self {
                jobs: Some(jobs),
                worker: Some(worker),
                error: None,
            },
            Err(err) => Self {
                jobs: None,
                worker: None,
                error: Some(format!("starting the namespace thread: {err}")),
            },
        }
    }

    /// Names the links of each namespace in `found`: those of `own` (the agent's namespace,
    /// whose links the poll listed already) as given, the others listed by the thread, which
    /// also dumps the TCP connections of those `wanted` names (a dump walks every socket
    /// table of the host, however few sockets the namespace has: only where TCP was
    /// counted), and reads the pressure of those it names, in its order, within
    /// [`PRESSURE_BUDGET`].
    pub fn interface_names(
        &self,
        found: &BTreeMap<u32, PathBuf>,
        own: Option<(u32, Vec<(u32, String)>)>,
        wanted: &Wanted,
    ) -> anyhow::Result<InterfaceNames> {
        let mut names = InterfaceNames::default();
        let own_netns = own.as_ref().map(|(netns, _)| *netns);
        if let Some((netns, links)) = own {
            // The agent's own namespace outlives it: its inode cannot pass to another.
            names.add_listing(
                netns,
                Listing {
                    links,
                    cookie: None,
                    peers: LivePeers::new(),
                    pressure: None,
                },
            );
        }
        let place: HashMap<u32, usize> = (wanted.pressure.iter().enumerate())
            .map(|(place, netns)| (*netns, place))
            .collect();
        let extras = |netns: &u32| Extras {
            tcp: wanted.tcp.contains(netns),
            pressure: place.contains_key(netns),
        };
        // The namespaces whose pressure is wanted first, in the order asked.
        let mut jobs: Vec<(u32, PathBuf, Extras)> = found
            .iter()
            .filter(|(netns, _)| Some(**netns) != own_netns)
            .map(|(netns, path)| (*netns, path.clone(), extras(netns)))
            .collect();
        jobs.sort_by_key(|(netns, _, _)| place.get(netns).copied().unwrap_or(usize::MAX));
        if jobs.is_empty() {
            return Ok(names);
        }
        let queue = self
            .jobs
            .as_ref()
            .ok_or_else(|| anyhow!("{}", self.error.as_deref().unwrap_or("no namespace thread")))?;
        let (answer, listings) = mpsc::channel();
        queue
            .send((jobs, answer))
            .map_err(|_| anyhow!("the namespace thread has ended"))?;
        let (listings, spent) = listings
            .recv()
            .map_err(|_| anyhow!("the namespace thread panicked"))?;
        for (netns, listing) in listings {
            names.add_listing(netns, listing);
        }
        names.pressure_seconds = spent.as_secs_f64();
        Ok(names)
    }
}

impl Drop for NamespaceLister {
    fn drop(&mut self) {
        // The thread ends when its queue closes.
        self.jobs = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Moves the calling thread into the network namespace of `file`.
fn enter(file: &File) -> Result<(), String> {
    // SAFETY: setns on a valid namespace descriptor; it changes only the calling thread, the
    // namespace thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(())
}

/// Lists the links of the namespace at `path`, from inside it, its TCP connections and its
/// pressure where `extras` asks; the pressure while the job has `spent` less than
/// [`PRESSURE_BUDGET`] on it, and adds its reading's time.
fn list(netns: u32, path: &Path, extras: Extras, spent: &mut Duration) -> anyhow::Result<Listing> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    enter(&file).map_err(|e| anyhow!("entering {}: {e}", path.display()))?;
    let peers = if extras.tcp {
        peer_sockets::live_peers(netns).unwrap_or_else(|err| {
            tracing::debug!(netns, "cannot dump the TCP connections: {err:#}");
            LivePeers::new()
        })
    } else {
        LivePeers::new()
    };
    let pressure = (extras.pressure && *spent < PRESSURE_BUDGET).then(|| {
        let start = Instant::now();
        let pressure = pressure::namespace_pressure(netns);
        *spent += start.elapsed();
        pressure
    });
    Ok(Listing {
        links: netlink::links()?,
        cookie: own_cookie(),
        peers,
        pressure,
    })
}

/// The cookie of the calling thread's network namespace (`SO_NETNS_COOKIE` on a socket made
/// there); `None` where the kernel does not tell it.
fn own_cookie() -> Option<u64> {
    // SAFETY: a plain socket call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie = 0u64;
    let mut length = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `length` are valid for the kernel to write.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut length,
        )
    };
    (rc == 0).then_some(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::own_netns;

    #[test]
    fn finds_the_own_namespace_and_its_loopback() {
        let own = own_netns();
        let unknown = 1;
        let presence = Holders::default().find(&BTreeMap::from([(own, 0), (unknown, 0)]));
        assert!(presence.found.contains_key(&own));
        assert_eq!(presence.gone, BTreeSet::from([unknown]));
        let lister = NamespaceLister::start();
        let names = lister
            .interface_names(&presence.found, None, &Wanted::default())
            .unwrap();
        assert_eq!(names.get(own, 1), Some("lo"));
        assert!(!names.is_gone(own, 1));
        assert!(names.is_gone(own, 999_999));
        let given = lister
            .interface_names(
                &presence.found,
                Some((own, vec![(1, "lo".into())])),
                &Wanted::default(),
            )
            .unwrap();
        assert_eq!(given.get(own, 1), Some("lo"));
    }

    /// A thread in a network namespace of its own, which only it holds: the namespace's inode,
    /// the sender that lets the thread end, and the thread.
    fn namespace_of_a_thread() -> (u32, std::sync::mpsc::Sender<()>, thread::JoinHandle<()>) {
        let (entered, holder) = std::sync::mpsc::channel();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            // SAFETY: a new namespace for this thread only.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            entered
                .send(inode(Path::new("/proc/thread-self/ns/net")))
                .unwrap();
            let _ = wait.recv();
        });
        (holder.recv().unwrap().unwrap(), release, thread)
    }

    #[test]
    fn finds_a_namespace_that_only_a_thread_holds() {
        let (netns, release, thread) = namespace_of_a_thread();
        let mut holders = Holders::default();
        let presence = holders.find(&BTreeMap::from([(netns, 0)]));
        assert!(presence.found.contains_key(&netns), "{presence:?}");
        // Found again through the kept path, without a walk.
        assert_eq!(
            holders.find(&BTreeMap::from([(netns, 0)])).found,
            presence.found
        );
        release.send(()).unwrap();
        thread.join().unwrap();
        assert_eq!(
            holders.find(&BTreeMap::from([(netns, 0)])).gone,
            BTreeSet::from([netns])
        );
    }

    /// The kernel gives a dead namespace's inode to the next namespace made. One found without
    /// a holder is not looked for again before the recheck while its cookie stays; counts
    /// under its inode with another cookie are another namespace's, looked for at once.
    #[test]
    fn a_namespace_that_takes_the_inode_of_one_without_holder_is_looked_for_at_once() {
        let (netns, release, thread) = namespace_of_a_thread();
        // The namespace that had the inode before, under cookie 7, was found without a holder.
        let mut holders = Holders {
            unheld: BTreeMap::from([(netns, (7, Instant::now()))]),
            ..Default::default()
        };
        let dead = holders.find(&BTreeMap::from([(netns, 7)]));
        assert_eq!(dead.gone, BTreeSet::from([netns]), "{dead:?}");
        let new = holders.find(&BTreeMap::from([(netns, 8)]));
        assert!(new.found.contains_key(&netns), "{new:?}");
        release.send(()).unwrap();
        thread.join().unwrap();
    }
}
