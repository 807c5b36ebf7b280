//! Network namespaces of the host, and the interfaces inside each, so that counters keyed by
//! (namespace inode, interface index) get their names, also in namespaces the agent is not in.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    thread,
};

use anyhow::{Context as _, anyhow};

use crate::host::netlink;

/// Where namespaces made with `ip netns add` are mounted.
const NAMED_NAMESPACES: &str = "/run/netns";

/// Where each namespace the counters name can be opened. A path found once is kept while it
/// still leads to its namespace (one `stat` a poll); `/proc` is walked only when a namespace
/// has no such path, and its threads only when its processes did not do.
#[derive(Debug, Default)]
pub struct Holders {
    paths: BTreeMap<u32, PathBuf>,
}

/// Which of the wanted namespaces were found, and where.
#[derive(Debug, Default)]
pub struct Presence {
    pub found: BTreeMap<u32, PathBuf>,
    /// Wanted, but no named mount, process or thread holds them any more.
    pub gone: BTreeSet<u32>,
}

impl Holders {
    pub fn find(&mut self, wanted: &BTreeSet<u32>) -> Presence {
        self.paths
            .retain(|netns, path| wanted.contains(netns) && inode(path) == Some(*netns));
        let missing =
            |paths: &BTreeMap<u32, PathBuf>| wanted.iter().any(|n| !paths.contains_key(n));
        if missing(&self.paths) {
            self.walk(wanted, false);
        }
        if missing(&self.paths) {
            self.walk(wanted, true);
        }
        Presence {
            found: self.paths.clone(),
            gone: wanted
                .iter()
                .filter(|n| !self.paths.contains_key(n))
                .copied()
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
}

/// The inode of the namespace at `path`, if it opens one.
fn inode(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|meta| meta.ino() as u32)
}

/// Interface names per namespace: (namespace inode, ifindex) -> name.
#[derive(Clone, Debug, Default)]
pub struct InterfaceNames {
    names: HashMap<(u32, u32), String>,
    /// Namespaces whose links were listed; keys of other namespaces are unknown, not gone.
    listed: Vec<u32>,
}

impl InterfaceNames {
    pub fn get(&self, netns: u32, ifindex: u32) -> Option<&str> {
        self.names.get(&(netns, ifindex)).map(String::as_str)
    }

    /// Whether an interface is known to be gone: its namespace was listed without it.
    pub fn is_gone(&self, netns: u32, ifindex: u32) -> bool {
        self.listed.contains(&netns) && !self.names.contains_key(&(netns, ifindex))
    }

    /// Every link of `netns`.
    fn add_listing(&mut self, netns: u32, links: Vec<(u32, String)>) {
        self.listed.push(netns);
        for (ifindex, name) in links {
            self.names.insert((netns, ifindex), name);
        }
    }
}

/// Names the links of each namespace in `found`: those of `own` (the agent's namespace, whose
/// links the poll listed already) as given, the others listed from one short-lived thread that
/// enters them in turn, so that no thread of the agent ever changes namespace.
pub fn interface_names(
    found: &BTreeMap<u32, PathBuf>,
    own: Option<(u32, Vec<(u32, String)>)>,
) -> anyhow::Result<InterfaceNames> {
    let mut names = InterfaceNames::default();
    let own_netns = own.as_ref().map(|(netns, _)| *netns);
    if let Some((netns, links)) = own {
        names.add_listing(netns, links);
    }
    let jobs: Vec<(u32, PathBuf)> = found
        .iter()
        .filter(|(netns, _)| Some(**netns) != own_netns)
        .map(|(netns, path)| (*netns, path.clone()))
        .collect();
    if jobs.is_empty() {
        return Ok(names);
    }
    thread::Builder::new()
        .name("netmon-netns".into())
        .spawn(move || {
            for (netns, path) in jobs {
                match links_in(&path) {
                    Ok(links) => names.add_listing(netns, links),
                    Err(err) => tracing::debug!(netns, "cannot list links: {err:#}"),
                }
            }
            names
        })
        .context("starting the namespace thread")?
        .join()
        .map_err(|_| anyhow!("the namespace thread panicked"))
}

fn links_in(path: &Path) -> anyhow::Result<Vec<(u32, String)>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: setns on a valid namespace descriptor; it changes only this thread, which
    // exits when the listing is done.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("entering {}", path.display()));
    }
    netlink::links()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::own_netns;

    #[test]
    fn finds_the_own_namespace_and_its_loopback() {
        let own = own_netns();
        let unknown = 1;
        let presence = Holders::default().find(&BTreeSet::from([own, unknown]));
        assert!(presence.found.contains_key(&own));
        assert_eq!(presence.gone, BTreeSet::from([unknown]));
        let names = interface_names(&presence.found, None).unwrap();
        assert_eq!(names.get(own, 1), Some("lo"));
        assert!(!names.is_gone(own, 1));
        assert!(names.is_gone(own, 999_999));
        let given = interface_names(&presence.found, Some((own, vec![(1, "lo".into())]))).unwrap();
        assert_eq!(given.get(own, 1), Some("lo"));
    }

    #[test]
    fn finds_a_namespace_that_only_a_thread_holds() {
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
        let netns = holder.recv().unwrap().unwrap();
        let mut holders = Holders::default();
        let presence = holders.find(&BTreeSet::from([netns]));
        assert!(presence.found.contains_key(&netns), "{presence:?}");
        // Found again through the kept path, without a walk.
        assert_eq!(holders.find(&BTreeSet::from([netns])).found, presence.found);
        release.send(()).unwrap();
        thread.join().unwrap();
        assert_eq!(
            holders.find(&BTreeSet::from([netns])).gone,
            BTreeSet::from([netns])
        );
    }
}
