//! Table 1's measurement: netmon's agents run the workload round by round, beside an empty
//! program on each hook, and each hook's figures are taken from the kernel's statistics.
use std::{
    ffi::OsStr,
    thread,
    time::{Duration, Instant},
};

use netmon::model::probes::{AttachMethod, Hook};
use netmon_tests::{ConfigFile, Netns, Veth};

use crate::{
    bpf::{EmptyProgram, ns_per_run, program_stats},
    figures::{median, median_and_spread},
    process::{DEFAULT_POLL, SETTLE, start_netmon_with, stop},
    workload::{ROUNDS, Window, workload},
};

/// One hook's figures: per round, netmon's ns/run, the empty program's, and the difference,
/// each the median over the round's windows in which the hook ran.
pub(crate) struct Row {
    pub(crate) hook: Hook,
    pub(crate) runs: u64,
    pub(crate) ours: Vec<f64>,
    pub(crate) floors: Vec<f64>,
    above: Vec<f64>,
}

impl Row {
    /// Median over the rounds of (netmon - empty), and its smallest and largest.
    pub(crate) fn above(&self) -> (f64, f64, f64) {
        if self.above.is_empty() {
            return (f64::NAN, f64::NAN, f64::NAN);
        }
        median_and_spread(self.above.clone())
    }
}

/// Whether the version measured as "before" (35905cd) has `hook`: it lacks the socket hooks.
fn previously_present(hook: Hook) -> bool {
    !matches!(hook, Hook::SockSendLength | Hook::SockRecvLength)
}

/// The hooks an agent can attach by `method`, of those it has (`before`: the previous
/// version, which may lack some).
fn hooks(method: AttachMethod, before: bool) -> impl Iterator<Item = Hook> {
    Hook::ALL
        .into_iter()
        .filter(move |hook| hook.offers(method) && (!before || previously_present(*hook)))
}

/// The name of netmon's program for `hook` attached by `method`, which the hook offers.
fn program(hook: Hook, method: AttachMethod) -> String {
    hook.program(method)
        .expect("a hook that offers a method has a program for it")
}

/// Runs the workload with netmon's programs attached by `method`, with `extra` added to its
/// configuration, once with each agent binary (`None`: the one under test) in every round,
/// their order turning from round to round so that a drift of the machine's speed favours
/// neither. Returns the rows of each binary, one for every hook that offers `method`.
pub(crate) fn netmon_run(
    method: AttachMethod,
    extra: &str,
    binaries: &[Option<&OsStr>],
    a: &Netns,
    b: &Netns,
    veth: &Veth,
) -> Vec<Vec<Row>> {
    let configs: Vec<ConfigFile> = binaries
        .iter()
        .map(|binary| {
            ConfigFile::new(&format!(
                "{extra}[probe_methods]\n{}",
                hooks(method, binary.is_some())
                    .map(|hook| format!("{} = \"{method}\"\n", hook.as_str()))
                    .collect::<String>()
            ))
        })
        .collect();
    let empties: Vec<(Hook, EmptyProgram)> = hooks(method, false)
        .map(|hook| (hook, EmptyProgram::attach(hook)))
        .collect();
    let rounds = run_rounds(method, &configs, binaries, a, b, veth);
    rounds
        .iter()
        .map(|rounds| {
            empties
                .iter()
                .map(|(hook, empty)| hook_row(*hook, &program(*hook, method), empty.id, rounds))
                .collect()
        })
        .collect()
}

/// The windows of every round, by binary, each agent started with its configuration in
/// `configs`.
fn run_rounds(
    method: AttachMethod,
    configs: &[ConfigFile],
    binaries: &[Option<&OsStr>],
    a: &Netns,
    b: &Netns,
    veth: &Veth,
) -> Vec<Vec<Vec<Window>>> {
    let under_test = std::env::var_os("NETMON_BIN");
    // The workload runs on one CPU (its threads inherit this thread's affinity), the agent
    // wherever the scheduler puts it: a round then does not depend on where it ran.
    let all_cpus = pin_to_last_cpu();
    // A fresh agent each round: where its maps land in memory moves a program's cost by a few
    // ns from one start to the next, and the median over starts is the agent's figure.
    let mut rounds: Vec<Vec<Vec<Window>>> = vec![Vec::new(); binaries.len()];
    for round in 0..ROUNDS as usize {
        for step in 0..binaries.len() {
            let which = (round + step) % binaries.len();
            let binary = binaries[which].or(under_test.as_deref());
            if let Some(binary) = binary {
                // SAFETY: the bench is single-threaded here; the agent launcher reads it.
                unsafe { std::env::set_var("NETMON_BIN", binary) };
            }
            // As an operator runs it (the default poll interval), measured once its start
            // (BTF, attaching, first polls) is over, as the packet-path section does: the
            // figures are of the steady state, not of a start overlapping the TCP part.
            let (agent, _) =
                start_netmon_with(DEFAULT_POLL, &["--config", configs[which].path_str()]);
            let names: Vec<String> = hooks(method, binaries[which].is_some())
                .map(|hook| program(hook, method))
                .collect();
            wait_for_programs(&names);
            thread::sleep(SETTLE);
            rounds[which].push(workload(a, b, veth));
            stop(agent);
        }
    }
    if let Some(binary) = &under_test {
        // SAFETY: as above.
        unsafe { std::env::set_var("NETMON_BIN", binary) };
    }
    set_affinity(&all_cpus);
    rounds
}

/// Waits until programs of all these names are loaded (the agent answers before it has
/// attached them).
fn wait_for_programs(names: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let loaded = program_stats();
        if names
            .iter()
            .all(|name| loaded.values().any(|(n, _, _)| n == name))
        {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("netmon did not load {names:?} within 30 s");
}

/// The figures of program `name` on `hook` beside the empty program `empty` there, from
/// each round's windows.
fn hook_row(hook: Hook, name: &str, empty: u32, rounds: &[Vec<Window>]) -> Row {
    let mut row = Row {
        hook,
        runs: 0,
        ours: Vec::new(),
        floors: Vec::new(),
        above: Vec::new(),
    };
    for windows in rounds {
        let (mut ours, mut floors, mut above) = (Vec::new(), Vec::new(), Vec::new());
        for (before, after) in windows {
            let id = after
                .iter()
                .find(|(_, (n, _, _))| n == name)
                .map(|(id, _)| *id);
            let floor = ns_per_run(before, after, empty).map(|(_, ns)| ns);
            if let (Some((runs, ns)), Some(floor)) =
                (id.and_then(|id| ns_per_run(before, after, id)), floor)
            {
                row.runs += runs;
                ours.push(ns);
                floors.push(floor);
                above.push(ns - floor);
            }
        }
        if !above.is_empty() {
            row.ours.push(median(&ours));
            row.floors.push(median(&floors));
            row.above.push(median(&above));
        }
    }
    row
}

/// Pins the calling thread to the last CPU; returns the affinity it had.
fn pin_to_last_cpu() -> libc::cpu_set_t {
    // SAFETY: plain calls with a cpu_set_t owned here.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut old);
        let last = (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&cpu| libc::CPU_ISSET(cpu, &old))
            .unwrap_or(0);
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(last, &mut one);
        set_affinity(&one);
        old
    }
}

fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: a valid cpu_set_t for the calling thread.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) };
}
