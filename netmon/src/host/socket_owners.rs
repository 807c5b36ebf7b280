//! Which processes hold which sockets: a scan the caller gives (the kernel's file tables
//! walked by a program), or `/proc/<pid>/fd` links, name socket inodes; sysinfo names the
//! processes.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    time::{Duration, Instant},
};

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::model::{Owner, SocketHolders};

/// The holders of the `wanted` sockets, from every process's descriptor table in `/proc`.
pub fn scan_socket_inodes(wanted: &BTreeSet<u32>) -> SocketHolders {
    let mut owners = SocketHolders::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return owners;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit while it is read: skip what cannot be read.
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            if wanted.contains(&inode) {
                owners.entry(inode).or_default().insert(pid);
            }
        }
    }
    owners
}

/// Finds the owners of socket inodes, rescanning the descriptor tables only when a socket it
/// has not seen appears, or when its answer is older than `max_age`.
pub struct SocketOwners {
    system: System,
    cache: HashMap<u32, Vec<Owner>>,
    scanned: Option<Instant>,
    max_age: Duration,
    /// What the newest scan read.
    source: Option<&'static str>,
}

impl SocketOwners {
    pub fn new(max_age: Duration) -> Self {
        Self {
            system: System::new(),
            cache: HashMap::new(),
            scanned: None,
            max_age,
            source: None,
        }
    }

    /// The owners of `inodes`; `scan` finds the holders of the sockets it is given, and names
    /// what it read.
    pub fn owners(
        &mut self,
        inodes: &BTreeSet<u32>,
        scan: impl FnOnce(&BTreeSet<u32>) -> (SocketHolders, &'static str),
    ) -> BTreeMap<u32, Vec<Owner>> {
        let stale = self.scanned.is_none_or(|t| t.elapsed() > self.max_age);
        if stale || inodes.iter().any(|i| !self.cache.contains_key(i)) {
            let (holders, source) = scan(inodes);
            self.source = Some(source);
            self.rescan(inodes, &holders);
        }
        inodes
            .iter()
            .map(|i| (*i, self.cache.get(i).cloned().unwrap_or_default()))
            .collect()
    }

    /// What the newest scan read, once one has run.
    pub fn source(&self) -> Option<&'static str> {
        self.source
    }

    fn rescan(&mut self, inodes: &BTreeSet<u32>, pids_by_inode: &SocketHolders) {
        let pids: Vec<Pid> = pids_by_inode
            .values()
            .flatten()
            .map(|pid| Pid::from_u32(*pid))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing(),
        );
        self.cache = inodes
            .iter()
            .map(|inode| {
                let owners = pids_by_inode
                    .get(inode)
                    .into_iter()
                    .flatten()
                    .map(|pid| Owner {
                        pid: *pid,
                        name: self
                            .system
                            .process(Pid::from_u32(*pid))
                            .map(|p| p.name().to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    })
                    .collect();
                (*inode, owners)
            })
            .collect();
        self.scanned = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::sockets;

    #[test]
    fn finds_this_process_behind_its_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inode = sockets::listeners()
            .unwrap()
            .into_iter()
            .find(|l| l.port == port)
            .unwrap()
            .inode;
        let mut owners = SocketOwners::new(Duration::from_secs(30));
        let found = owners.owners(&BTreeSet::from([inode]), |wanted| {
            (scan_socket_inodes(wanted), "proc")
        });
        let me = std::process::id();
        assert!(
            found[&inode]
                .iter()
                .any(|o| o.pid == me && !o.name.is_empty())
        );
    }
}
