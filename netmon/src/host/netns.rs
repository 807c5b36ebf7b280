//! Network namespaces of the host, and the interfaces inside each, so that counters keyed by
//! (namespace inode, interface index) get their names, also in namespaces the agent is not in.
use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    thread,
};

use anyhow::{Context as _, anyhow};

use crate::host::netlink;

/// Where namespaces made with `ip netns add` are mounted.
const NAMED_NAMESPACES: &str = "/run/netns";

/// Every network namespace reachable through a process, a thread or a named mount: inode ->
/// a path that opens it.
pub fn namespaces() -> BTreeMap<u32, PathBuf> {
    let mut found = BTreeMap::new();
    let mut add = |path: PathBuf| {
        if let Ok(meta) = std::fs::metadata(&path) {
            found.entry(meta.ino() as u32).or_insert(path);
        }
    };
    if let Ok(entries) = std::fs::read_dir(NAMED_NAMESPACES) {
        for entry in entries.flatten() {
            add(entry.path());
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                add(entry.path().join("ns/net"));
                // A thread may live in a namespace of its own (unshare on one thread).
                if let Ok(tasks) = std::fs::read_dir(entry.path().join("task")) {
                    for task in tasks.flatten() {
                        if task.file_name() != entry.file_name() {
                            add(task.path().join("ns/net"));
                        }
                    }
                }
            }
        }
    }
    found
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

    /// Whether an interface is known to be gone: its namespace was listed without it, or the
    /// namespace no longer exists at all.
    pub fn is_gone(&self, netns: u32, ifindex: u32, existing: &BTreeMap<u32, PathBuf>) -> bool {
        if !existing.contains_key(&netns) {
            return true;
        }
        self.listed.contains(&netns) && !self.names.contains_key(&(netns, ifindex))
    }

    pub fn insert(&mut self, netns: u32, ifindex: u32, name: String) {
        self.names.insert((netns, ifindex), name);
    }

    fn mark_listed(&mut self, netns: u32) {
        self.listed.push(netns);
    }
}

/// Lists the links of each wanted namespace from one short-lived thread that enters them in
/// turn, so that no thread of the agent ever changes namespace.
pub fn interface_names(
    wanted: &[u32],
    existing: &BTreeMap<u32, PathBuf>,
) -> anyhow::Result<InterfaceNames> {
    let jobs: Vec<(u32, PathBuf)> = wanted
        .iter()
        .filter_map(|ns| existing.get(ns).map(|path| (*ns, path.clone())))
        .collect();
    thread::Builder::new()
        .name("netmon-netns".into())
        .spawn(move || {
            let mut names = InterfaceNames::default();
            for (netns, path) in jobs {
                match links_in(&path) {
                    Ok(links) => {
                        names.mark_listed(netns);
                        for (ifindex, name) in links {
                            names.insert(netns, ifindex, name);
                        }
                    }
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
        let existing = namespaces();
        let own = own_netns();
        assert!(existing.contains_key(&own));
        let names = interface_names(&[own], &existing).unwrap();
        assert_eq!(names.get(own, 1), Some("lo"));
        assert!(!names.is_gone(own, 1, &existing));
        assert!(names.is_gone(own, 999_999, &existing));
        assert!(names.is_gone(1, 1, &existing));
    }
}
