//! The report's first section, the machine it was measured on, and the kernel's BPF
//! statistics kept off while it is measured.
use std::thread;

use netmon_tests::{netmon_bin, sh};

pub(crate) fn environment() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    // The first processor's value of `field`.
    let cpu_field = |field: &str| {
        cpuinfo
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                (name.trim() == field).then(|| value.trim().to_string())
            })
            .unwrap_or_default()
    };
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    format!(
        "## Environment\n\n- kernel: {}\n- CPU: {}, {} cores (family {}, model {}, stepping {}); \
         caches of CPU 0: {}\n- speculation mitigations: {}\n- {memory}\n- netmon: {}\n",
        sh("uname", &["-r"]).trim(),
        cpu_field("model name"),
        thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_field("cpu family"),
        cpu_field("model"),
        cpu_field("stepping"),
        caches().join(", "),
        mitigations().join("; "),
        sh(netmon_bin().to_str().unwrap(), &["--version"]).trim(),
    )
}

// A virtual machine's CPU may carry a generic name: its family, model and stepping, its caches
// and the kernel's mitigations of return and indirect-branch speculation (which set what a
// call, such as a helper's, costs) tell two machines apart, and their figures.

/// The caches of CPU 0 (`L1d 48K`...).
fn caches() -> Vec<String> {
    ["index0", "index1", "index2", "index3"]
        .iter()
        .filter_map(|index| {
            let read = |file: &str| {
                std::fs::read_to_string(format!(
                    "/sys/devices/system/cpu/cpu0/cache/{index}/{file}"
                ))
                .ok()
                .map(|v| v.trim().to_string())
            };
            let kind = match read("type")?.as_str() {
                "Data" => "d",
                "Instruction" => "i",
                _ => "",
            };
            Some(format!("L{}{kind} {}", read("level")?, read("size")?))
        })
        .collect()
}

/// The kernel's mitigations of return and indirect-branch speculation.
fn mitigations() -> Vec<String> {
    ["spec_rstack_overflow", "retbleed", "spectre_v2"]
        .iter()
        .filter_map(|name| {
            std::fs::read_to_string(format!("/sys/devices/system/cpu/vulnerabilities/{name}"))
                .ok()
                .map(|v| format!("{name}: {}", v.trim()))
        })
        .collect()
}

/// Keeps the kernel's BPF run-time statistics off for the whole run (`kernel.bpf_stats_enabled`,
/// which a host may have left on): with them on, every run of every program pays two clock
/// reads, which the packet path and the agent's socket iterator would be measured with. Table 1
/// turns them on for itself through a descriptor, which ends with the table. The sysctl is
/// put back as it was when the run ends.
pub(crate) struct StatsOff {
    was: Option<String>,
}

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl StatsOff {
    pub(crate) fn new() -> Self {
        let was = std::fs::read_to_string(STATS_SYSCTL)
            .ok()
            .map(|v| v.trim().to_string());
        if was.as_deref() == Some("1") {
            std::fs::write(STATS_SYSCTL, "0").expect("turning kernel.bpf_stats_enabled off");
        }
        Self { was }
    }

    pub(crate) fn note(&self) -> String {
        match self.was.as_deref() {
            Some("1") => "- BPF run-time statistics: left on by this host \
                          (`kernel.bpf_stats_enabled`); off for the run except while table 1 \
                          measures with them\n"
                .to_string(),
            _ => "- BPF run-time statistics: off except while table 1 measures with them\n"
                .to_string(),
        }
    }
}

impl Drop for StatsOff {
    fn drop(&mut self) {
        if self.was.as_deref() == Some("1") {
            let _ = std::fs::write(STATS_SYSCTL, "1");
        }
    }
}
