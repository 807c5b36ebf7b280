//! Table 2: the way common tools count per interface, a bpftrace one-liner, on the kernel-cost
//! section's datagrams.
use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use netmon::model::probes::Hook;
use netmon_tests::{Netns, Veth};

use crate::{
    bpf::{EmptyProgram, ns_per_run, program_stats},
    figures::median,
    workload::{DATAGRAMS, ROUNDS, SLICES, Window, datagram_window},
};

/// Table 2, with `per_packet_above`, netmon's tp_btf figures on the transmit and receive
/// hooks from table 1.
pub(crate) fn against_bpftrace(a: &Netns, veth: &Veth, per_packet_above: &[f64]) -> String {
    let mut out = String::from("## 2. Against a bpftrace one-liner\n\n");
    match bpftrace_run(a, veth) {
        Some((runs, ns, floor)) => {
            let ours = per_packet_above.iter().sum::<f64>() / per_packet_above.len() as f64;
            let _ = writeln!(
                out,
                "`bpftrace -e 'tracepoint:net:net_dev_xmit {{ @[str(args->name)] = count(); }} \
                 tracepoint:net:netif_receive_skb {{ @[str(args->name)] = count(); }}'`, same \
                 traffic (200,000 datagrams, medians over windows of {} as above).\n\n\
                 | counter | runs | ns/run | empty ns/run | above empty |\n|---|---|---|---|---|\n\
                 | bpftrace (hash keyed by name) | {runs} | {ns:.1} | {floor:.1} | {:+.1} |\n\
                 | netmon tp_btf (mean of both hooks, from table 1) | | | | {ours:+.1} |\n\n\
                 Ratio of costs above the empty program: bpftrace / netmon = **{:.1}x** \
                 (target: at least 20x).\n",
                DATAGRAMS / ROUNDS / SLICES,
                ns - floor,
                (ns - floor) / ours
            );
        }
        None => out.push_str("bpftrace could not run here; not measured.\n"),
    }
    out
}

/// The one-liner's runs, its mean ns/run and the empty program's, over windows as in
/// netmon's rounds; none when bpftrace cannot run.
fn bpftrace_run(a: &Netns, veth: &Veth) -> Option<(u64, f64, f64)> {
    let (mut child, ids) = start_bpftrace()?;
    let empty = EmptyProgram::attach(Hook::NetDevXmit);
    // Windows as in netmon's rounds; the figures are medians over them.
    let windows: Vec<Window> = (0..ROUNDS * SLICES)
        .map(|_| datagram_window(a, veth))
        .collect();
    // SAFETY: stopping our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    let (mut total, mut ours, mut floors) = (0u64, Vec::new(), Vec::new());
    for (before, after) in &windows {
        let (mut runs, mut time) = (0u64, 0f64);
        for id in &ids {
            if let Some((r, ns)) = ns_per_run(before, after, *id) {
                runs += r;
                time += ns * r as f64;
            }
        }
        if let (true, Some((_, floor))) = (runs > 0, ns_per_run(before, after, empty.id)) {
            total += runs;
            ours.push(time / runs as f64);
            floors.push(floor);
        }
    }
    (total > 0).then(|| (total, median(&ours), median(&floors)))
}

/// bpftrace counting transmits and receives in a hash keyed by interface name, and the ids of
/// its programs once both are attached (or when 20 s have passed).
fn start_bpftrace() -> Option<(Child, Vec<u32>)> {
    let before_ids: Vec<u32> = program_stats().keys().copied().collect();
    let mut child = Command::new("bpftrace")
        .args([
            "-e",
            "tracepoint:net:net_dev_xmit { @[str(args->name)] = count(); } \
             tracepoint:net:netif_receive_skb { @[str(args->name)] = count(); }",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .ok()?;
    // "Attaching 2 probes..." comes before the attach: wait for both programs.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ids = loop {
        let ids: Vec<u32> = program_stats()
            .keys()
            .copied()
            .filter(|id| !before_ids.contains(id))
            .collect();
        if ids.len() >= 2 || Instant::now() > deadline {
            break ids;
        }
        thread::sleep(Duration::from_millis(100));
    };
    Some((child, ids))
}
