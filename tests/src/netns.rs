//! Network namespaces made by the tests, the kernel's counters of their interfaces, and
//! processes and threads run inside them.
use std::{
    collections::BTreeMap,
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
};

use crate::machine::{sh, unique_name};

/// A network namespace made by the test, deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = unique_name(&format!("nmt-{tag}"));
        sh("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // No IPv6 autoconfiguration chatter: the tests count every packet.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Inode number of the namespace, the `netns` label netmon uses.
    pub fn inode(&self) -> u32 {
        std::fs::metadata(self.path()).unwrap().ino() as u32
    }

    /// `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend(args);
        sh("ip", &full)
    }

    /// `ip netns exec <ns> ARGS`.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend(args);
        sh("ip", &full)
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens live there.
    /// A counter of the namespace's own SNMP and netstat tables as `nstat` names it
    /// (`TcpExtListenOverflows`), absolute.
    pub fn nstat(&self, counter: &str) -> u64 {
        let out = self.exec(&["nstat", "-asz", counter]);
        out.lines()
            .find_map(|line| line.strip_prefix(counter)?.split_whitespace().next())
            .unwrap_or_else(|| panic!("{counter} in {out}"))
            .parse()
            .unwrap()
    }

    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        run_in(&self.path(), f).unwrap_or_else(|e| panic!("entering {}: {e}", self.name))
    }

    /// Kernel counters of a device in this namespace, as `ip -s link` shows them.
    pub fn link_stats(&self, dev: &str) -> LinkStats {
        let json = self.ip(&["-s", "-j", "link", "show", "dev", dev]);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        LinkStats::from_json(&value[0])
    }

    /// The kernel's counters of every interface in this namespace, by name, read at once.
    pub fn all_link_stats(&self) -> BTreeMap<String, LinkStats> {
        let json = self.ip(&["-s", "-j", "link", "show"]);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|link| {
                let name = link["ifname"].as_str().unwrap().to_owned();
                (name, LinkStats::from_json(link))
            })
            .collect()
    }

    /// Interface index of a device in this namespace.
    pub fn ifindex(&self, dev: &str) -> u32 {
        self.link(dev)["ifindex"].as_u64().unwrap() as u32
    }

    /// `ip -j link show dev <dev>` of a device in this namespace.
    pub(crate) fn link(&self, dev: &str) -> serde_json::Value {
        let json = self.ip(&["-j", "link", "show", "dev", dev]);
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value[0].take()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `f` on a thread that has entered the network namespace at `path`; only that
/// short-lived thread moves, the test's own threads stay where they are.
pub(crate) fn run_in<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let file = File::open(path)?;
    thread::spawn(move || {
        // SAFETY: a valid namespace descriptor, entered by this thread alone.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .unwrap()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub rx_errors: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub tx_errors: u64,
}

impl LinkStats {
    /// One link of `ip -s -j link`.
    fn from_json(link: &serde_json::Value) -> Self {
        let stats = &link["stats64"];
        let get = |dir: &str, key: &str| stats[dir][key].as_u64().unwrap();
        Self {
            rx_packets: get("rx", "packets"),
            rx_bytes: get("rx", "bytes"),
            rx_dropped: get("rx", "dropped"),
            rx_errors: get("rx", "errors"),
            tx_packets: get("tx", "packets"),
            tx_bytes: get("tx", "bytes"),
            tx_dropped: get("tx", "dropped"),
            tx_errors: get("tx", "errors"),
        }
    }
}

/// A python process in `ns` running `code`, which prints one line when it is ready; returns
/// the process and that line.
pub fn spawn_python(ns: &Netns, code: &str) -> (Child, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-u", "-c", code])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    (child, line.trim().to_string())
}
