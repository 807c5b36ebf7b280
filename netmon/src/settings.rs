//! What the configuration tells the collectors: which interfaces to report, the link
//! capacities the kernel does not know and how many drops to sample. The configuration
//! builds these; the poll uses them.
use std::collections::BTreeMap;

use crate::probes::SampleBudget;

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
}

/// Whether `name` matches a pattern with `*` (any run) and `?` (any one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
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

/// The interfaces the operator wants reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl InterfaceFilter {
    pub fn allows(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob_match(p, name)))
            && !self.exclude.iter().any(|p| glob_match(p, name))
    }
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
