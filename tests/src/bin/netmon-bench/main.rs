//! `cargo xtask bench`: measures netmon against the kernel's floor (an empty program on the
//! same hooks), against a bpftrace one-liner, against node_exporter, and on the packet path,
//! and prints Markdown tables. Runs as root; traffic stays in namespaces it makes itself;
//! every loop is bounded.
use std::fmt::Write as _;

mod agent_cost;
mod bpf;
mod bpftrace;
mod busy_host;
mod environment;
mod figures;
mod footprint;
mod kernel_cost;
mod kernel_rounds;
mod memory;
mod packet_path;
mod process;
mod workload;

use netmon_tests::require_root;

/// What measures a section and writes its tables.
type Section = fn() -> String;

/// The sections, in the order they are printed, by the name that asks for one on the command
/// line.
const SECTIONS: [(&str, Section); 5] = [
    ("kernel", kernel_cost::kernel_cost),
    ("agent", agent_cost::agent_cost),
    ("memory", memory::kernel_memory),
    ("path", packet_path::packet_path),
    ("footprint", footprint::footprint),
];

/// Runs the sections named on the command line (`kernel`, `agent`, `memory`, `path`,
/// `footprint`), or all of them.
fn main() {
    require_root();
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let stats = environment::StatsOff::new();
    let mut out = String::new();
    let _ = writeln!(out, "{}{}", environment::environment(), stats.note());
    for (section, run) in SECTIONS {
        if wanted.is_empty() || wanted.iter().any(|w| w == section) {
            let _ = writeln!(out, "{}", run());
        }
    }
    print!("{out}");
}
