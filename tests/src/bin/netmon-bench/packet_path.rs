//! Table 5: what netmon costs the packet path, iperf3 across a veth pair with nothing, empty
//! programs, netmon and netmon without its socket hooks attached.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    process::{Command, Stdio},
    thread,
    time::Instant,
};

use netmon::model::probes::Hook;
use netmon_tests::{ConfigFile, Netns, Veth};

use crate::{
    bpf::EmptyProgram,
    figures::median_and_spread,
    process::{
        DEFAULT_POLL, SETTLE, cpu_seconds, start_netmon, start_netmon_with, stop, wait_port,
    },
};

/// Rounds of the packet path (one run of each of its [`ARMS`]).
const PATH_PAIRS: usize = 40;

/// Arms of the packet-path section: nothing, empty programs, netmon, netmon without its
/// socket hooks.
const ARMS: usize = 4;

/// The kinds of traffic: name in the table, whether it is UDP, and the target of netmon /
/// without.
const KINDS: [(&str, bool, f64); 2] = [
    ("TCP (Gbit/s)", false, 0.97),
    ("UDP 64 B (datagrams/s)", true, 0.95),
];

/// Datagrams of the warm-up that comes before each arm's measured runs.
const WARM_UP_DATAGRAMS: &str = "20000";

/// Per kind, per round: the rate of each arm.
type Rounds = BTreeMap<&'static str, Vec<[f64; ARMS]>>;

pub(crate) fn packet_path() -> String {
    let a = Netns::new("iperf-a");
    let b = Netns::new("iperf-b");
    let veth = Veth::connect(&a, &b, 251);
    let server = Command::new("ip")
        .args(["netns", "exec", &b.name, "iperf3", "-s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(&b, format!("{}:5201", veth.b_ip).parse().unwrap());
    let (rounds, agent_cpu) = run_rounds(&a, &veth);
    stop(server);
    let mut out = format!(
        "## 5. Packet-path impact\n\niperf3 across a veth pair between two namespaces, 1 s \
         runs with the client on the first CPU and the server on the second, {PATH_PAIRS} \
         rounds of four arms in rotating order: nothing attached, empty programs on the {} \
         hooks netmon uses (what hooking at all costs), netmon (all hooks, tp_btf, default \
         configuration, {} s after it first answers), and netmon without its two socket hooks \
         (`{}`: the packet path alone), each after an unmeasured warm-up of \
         {WARM_UP_DATAGRAMS} datagrams. Ratios are taken within a round; the \
         machine's speed moves by tens of percent between runs, so the ratios are the measure \
         and their median the figure. While its arm's traffic ran, the agent itself used \
         {agent_cpu:.4} s of CPU a second.\n\n\
         | test | median without | netmon / without | empty / without | netmon / empty | netmon without socket hooks / without | target (netmon / without) |\n\
         |---|---|---|---|---|---|---|\n",
        Hook::ALL.len(),
        SETTLE.as_secs(),
        socket_hooks_off().trim(),
    );
    for (kind, _, target) in KINDS {
        kind_row(&mut out, kind, &rounds[kind], target);
    }
    out
}

/// The hooks on socket calls rather than on packets: netmon without them measures the packet
/// path alone.
fn is_socket_hook(hook: Hook) -> bool {
    matches!(hook, Hook::SockSendLength | Hook::SockRecvLength)
}

/// The configuration of netmon without its socket hooks.
fn socket_hooks_off() -> String {
    let hooks: Vec<String> = Hook::ALL
        .into_iter()
        .filter(|hook| is_socket_hook(*hook))
        .map(|hook| format!("\"{}\"", hook.as_str()))
        .collect();
    format!("disabled_probes = [{}]\n", hooks.join(", "))
}

/// The rates of every round, and the CPU (s/s) netmon used while its arm's traffic ran.
fn run_rounds(a: &Netns, veth: &Veth) -> (Rounds, f64) {
    let mut rounds = Rounds::new();
    let without_sockets = ConfigFile::new(&socket_hooks_off());
    // The agent's own CPU while its arm's traffic runs, and the wall time of those runs.
    let (mut agent_cpu, mut agent_wall) = (0.0, 0.0);
    for round in 0..PATH_PAIRS {
        // Rotate the order within a round, so that a drift of the machine's speed favours
        // no arm.
        let mut measured = [[0.0; ARMS]; 2];
        for step in 0..ARMS {
            let arm = (round + step) % ARMS;
            let (rates, used) = run_arm(arm, a, veth, &without_sockets);
            for (k, rate) in rates.into_iter().enumerate() {
                measured[k][arm] = rate;
            }
            if let Some((cpu, wall)) = used {
                agent_cpu += cpu;
                agent_wall += wall;
            }
        }
        for (k, (kind, _, _)) in KINDS.iter().enumerate() {
            rounds.entry(kind).or_default().push(measured[k]);
        }
    }
    (rounds, agent_cpu / agent_wall.max(f64::EPSILON))
}

/// The rate of each kind with `arm` attached: without anything, with empty programs on every
/// hook netmon uses (the cost of hooking at all), with netmon, and with netmon without its
/// two socket hooks (the packet path alone). With netmon, also the CPU seconds it used and
/// the wall seconds the runs took.
fn run_arm(
    arm: usize,
    a: &Netns,
    veth: &Veth,
    without_sockets: &ConfigFile,
) -> ([f64; 2], Option<(f64, f64)>) {
    // netmon as an operator runs it: default configuration, polling every 2 s.
    let agent = match arm {
        2 => Some(start_netmon(DEFAULT_POLL)),
        3 => Some(start_netmon_with(
            DEFAULT_POLL,
            &["--config", without_sockets.path_str()],
        )),
        _ => None,
    };
    let empties: Vec<EmptyProgram> = if arm == 1 {
        Hook::ALL.into_iter().map(EmptyProgram::attach).collect()
    } else {
        Vec::new()
    };
    // The steady state is what counts: the agent's start (BTF, attaching, its first
    // polls) is over before the traffic begins.
    if agent.is_some() {
        thread::sleep(SETTLE);
    }
    warm_up(a, &veth.b_ip);
    let cpu = agent.as_ref().map(|(agent, _)| cpu_seconds(agent.id()));
    let begin = Instant::now();
    let rates = KINDS.map(|(_, udp, _)| iperf(a, &veth.b_ip, udp));
    let used = match (arm, cpu, &agent) {
        (2, Some(cpu), Some((agent, _))) => {
            Some((cpu_seconds(agent.id()) - cpu, begin.elapsed().as_secs_f64()))
        }
        _ => None,
    };
    drop(empties);
    if let Some((agent, _)) = agent {
        stop(agent);
    }
    (rates, used)
}

/// Sends [`WARM_UP_DATAGRAMS`] to the iperf3 server, unmeasured: what the agent does once for
/// the first drops it sees (reading the kernel's symbols to name where they died) is then
/// behind it, as it is for an agent that has been running for a while.
fn warm_up(a: &Netns, server: &str) {
    a.exec(&[
        "iperf3",
        "-c",
        server,
        "-u",
        "-l",
        "64",
        "-b",
        "0",
        "-k",
        WARM_UP_DATAGRAMS,
        "-A",
        "0,1",
    ]);
}

fn iperf(a: &Netns, server: &str, udp: bool) -> f64 {
    // The client on the first CPU, the server on the second: where the scheduler puts them
    // moves a 1-s run's rate by tens of percent on this machine.
    let mut args = vec!["iperf3", "-c", server, "-t", "1", "-J", "-A", "0,1"];
    if udp {
        args.extend(["-u", "-l", "64", "-b", "0"]);
    }
    let json: serde_json::Value = serde_json::from_str(&a.exec(&args)).unwrap();
    if udp {
        // Datagrams per second that arrived.
        let sum = &json["end"]["sum"];
        let packets = sum["packets"].as_f64().unwrap_or(0.0);
        let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
        (packets - lost) / sum["seconds"].as_f64().unwrap_or(1.0)
    } else {
        json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e9
    }
}

/// The row of one kind of traffic, from the rates of every round.
fn kind_row(out: &mut String, kind: &str, values: &[[f64; ARMS]], target: f64) {
    let column = |f: &dyn Fn(&[f64; ARMS]) -> f64| {
        let (median, low, high) = median_and_spread(values.iter().map(f).collect());
        (median, format!("**{median:.3}** ({low:.3} .. {high:.3})"))
    };
    let without = median_and_spread(values.iter().map(|v| v[0]).collect()).0;
    let (ratio, ours) = column(&|v| v[2] / v[0]);
    let (_, empty) = column(&|v| v[1] / v[0]);
    let (_, above) = column(&|v| v[2] / v[1]);
    let (packets_only, alone) = column(&|v| v[3] / v[0]);
    let verdict = |ratio: f64| if ratio >= target { "met" } else { "missed" };
    let _ = writeln!(
        out,
        "| {kind} | {without:.2} | {ours} | {empty} | {above} | {alone} | at least \
         {target:.2} ({} with all hooks, {} without socket hooks) |",
        verdict(ratio),
        verdict(packets_only),
    );
}
