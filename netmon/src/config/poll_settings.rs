//! What the configuration tells the poll: which interfaces to report, the link capacities
//! the kernel does not know, how many drops to sample and how many processes to name. A
//! reload hands the poll a new one (`netmon/src/serve.rs`).
use std::collections::BTreeMap;

use super::Config;
use crate::{model::peer_names::PeerFolding, probes::SampleBudget};

/// What the operator can tell the collectors.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSettings {
    /// Capacity in Mbit/s per interface name, for links that report no speed (or a wrong one).
    pub link_capacity_mbps: BTreeMap<String, u64>,
    /// Interfaces to report.
    pub interfaces: InterfaceFilter,
    /// How many drops each CPU may sample.
    pub drop_sample_budget: SampleBudget,
    /// Processes with series of their own.
    pub top_processes: usize,
    /// Whether processes are shown with their command lines.
    pub command_lines: bool,
    /// How peers are named and folded.
    pub peers: PeerFolding,
}

impl Config {
    /// What the poll takes of the groups a reload may change.
    pub fn host_settings(&self) -> HostSettings {
        HostSettings {
            link_capacity_mbps: self.interfaces.link_capacity_mbps.clone(),
            interfaces: self.interfaces.filter.clone(),
            drop_sample_budget: self.samples.budget(),
            top_processes: self.processes.top,
            command_lines: self.processes.command_line,
            peers: self.peers.clone(),
        }
    }
}

/// The interfaces the operator wants reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceFilter {
    /// Name patterns to report; empty means all.
    pub include: Vec<String>,
    /// Name patterns to leave out, applied after `include`.
    pub exclude: Vec<String>,
}

impl InterfaceFilter {
    pub fn allows(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob_match(p, name)))
            && !self.exclude.iter().any(|p| glob_match(p, name))
    }
}

/// Whether `name` matches a pattern with `*` (any run) and `?` (any one character).
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("veth*", "veth1234"));
        assert!(glob_match("*0", "eth0"));
        assert!(glob_match("e?h*", "eth0"));
        assert!(!glob_match("veth*", "eth0"));
        assert!(!glob_match("eth", "eth0"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }
}
