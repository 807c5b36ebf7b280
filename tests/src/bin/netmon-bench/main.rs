//! `cargo xtask bench`: measures netmon against the kernel's floor (an empty program on the
//! same hooks), against a bpftrace one-liner, against node_exporter, and on the packet path,
//! and prints Markdown tables. Runs as root; traffic stays in namespaces it makes itself;
//! every loop is bounded.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

mod footprint;

use netmon_common::{CPU_REGION_MAPS, TABLE_MAPS};
use netmon_tests::{
    Agent, ConfigFile, Netns, Veth, free_port, netmon_bin, request, require_root, send_udp, sh,
    status_mib,
};

/// Datagrams per kernel-cost run.
const DATAGRAMS: u64 = 200_000;
/// Rounds of each kernel-cost run; a round is a tenth of the workload with an agent of its
/// own, and each figure is the median of the rounds (one round's figure moves by a few ns
/// with the machine's state and where the agent's maps are).
const ROUNDS: u64 = 10;
/// Windows a round's datagrams are sent in, each measured on its own: a window in which the
/// virtual machine lost its CPU to the host for a while is an outlier that the median of the
/// windows passes over, where a mean over the whole round would carry it.
const SLICES: u64 = 20;
/// Windows a round's TCP part (lossy transfer, connections, refused ones) is run in, for the
/// same reason: the hooks it drives run a few hundred to a few thousand times a round, and an
/// interrupt that lands in a program (its handler's time counts as the program's) moved a
/// round's mean by tens of ns when the round was one window.
const TCP_SLICES: u64 = 5;
/// Connections made and closed in all rounds (a state change each way, and the handshake):
/// 200 a window. A hook's first runs in a window find its map lines cold; at 40 a window
/// those misses moved the state and reset hooks' figures by about +10 ns, and two runs of
/// one binary against itself differed by up to 7 ns; at 200, by about 1 ns.
const CONNECTIONS: u64 = 10_000;
/// Connections refused (a reset sent and one received each) in all rounds, 200 a window
/// as for [`CONNECTIONS`].
const REFUSED: u64 = 10_000;
/// Rounds of the packet path (one run of each of its [`ARMS`]).
const PATH_PAIRS: usize = 40;
/// How long the packet-path runs wait after starting the agent.
const SETTLE: Duration = Duration::from_secs(2);
/// Seconds each agent-cost measurement lasts.
const MEASURE: Duration = Duration::from_secs(10);

/// Runs the sections named on the command line (`kernel`, `agent`, `memory`, `path`,
/// `footprint`), or all of them.
fn main() {
    require_root();
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let run = |section: &str| wanted.is_empty() || wanted.iter().any(|w| w == section);
    let stats = StatsOff::new();
    let mut out = String::new();
    let _ = writeln!(out, "{}{}", environment(), stats.note());
    if run("kernel") {
        let _ = writeln!(out, "{}", kernel_cost());
    }
    if run("agent") {
        let _ = writeln!(out, "{}", agent_cost());
    }
    if run("memory") {
        let _ = writeln!(out, "{}", kernel_memory());
    }
    if run("path") {
        let _ = writeln!(out, "{}", packet_path());
    }
    if run("footprint") {
        let _ = writeln!(out, "{}", footprint::footprint());
    }
    print!("{out}");
}

fn environment() -> String {
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
    // A virtual machine's CPU may carry a generic name: its family, model and stepping, its
    // caches and the kernel's mitigations of return and indirect-branch speculation (which set
    // what a call, such as a helper's, costs) tell two machines apart, and their figures.
    let caches: Vec<String> = ["index0", "index1", "index2", "index3"]
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
        .collect();
    let mitigations: Vec<String> = ["spec_rstack_overflow", "retbleed", "spectre_v2"]
        .iter()
        .filter_map(|name| {
            std::fs::read_to_string(format!("/sys/devices/system/cpu/vulnerabilities/{name}"))
                .ok()
                .map(|v| format!("{name}: {}", v.trim()))
        })
        .collect();
    format!(
        "## Environment\n\n- kernel: {}\n- CPU: {}, {} cores (family {}, model {}, stepping {}); \
         caches of CPU 0: {}\n- speculation mitigations: {}\n- {memory}\n- netmon: {}\n",
        sh("uname", &["-r"]).trim(),
        cpu_field("model name"),
        thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_field("cpu family"),
        cpu_field("model"),
        cpu_field("stepping"),
        caches.join(", "),
        mitigations.join("; "),
        sh(netmon_bin().to_str().unwrap(), &["--version"]).trim(),
    )
}

/// Keeps the kernel's BPF run-time statistics off for the whole run (`kernel.bpf_stats_enabled`,
/// which a host may have left on): with them on, every run of every program pays two clock
/// reads, which the packet path and the agent's socket iterator would be measured with. Table 1
/// turns them on for itself through a descriptor, which ends with the table. The sysctl is
/// put back as it was when the run ends.
struct StatsOff {
    was: Option<String>,
}

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl StatsOff {
    fn new() -> Self {
        let was = std::fs::read_to_string(STATS_SYSCTL)
            .ok()
            .map(|v| v.trim().to_string());
        if was.as_deref() == Some("1") {
            std::fs::write(STATS_SYSCTL, "0").expect("turning kernel.bpf_stats_enabled off");
        }
        Self { was }
    }

    fn note(&self) -> String {
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

// ---------------------------------------------------------------- kernel cost per event

/// An empty raw tracepoint program (`r0 = 0; exit`), loaded and attached with raw bpf(2)
/// calls: the floor every program on the hook pays.
struct EmptyProgram {
    _prog: OwnedFd,
    _link: OwnedFd,
    id: u32,
}

fn bpf(cmd: u32, attr: &mut [u8; 128]) -> std::io::Result<i32> {
    // SAFETY: bpf(2) with a zero-filled attribute buffer of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}

/// Loads a program that returns at once (`r0 = 0; exit`) of type `prog_type`, named `name`,
/// with the attach type and BTF target `attach` where its type needs them; returns its
/// descriptor.
fn load_empty_program(prog_type: u32, name: &[u8; 10], attach: Option<(u32, u32)>) -> i32 {
    const BPF_PROG_LOAD: u32 = 5;
    // mov64 r0, 0; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&prog_type.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..58].copy_from_slice(name);
    if let Some((attach_type, btf_id)) = attach {
        attr[68..72].copy_from_slice(&attach_type.to_ne_bytes());
        attr[108..112].copy_from_slice(&btf_id.to_ne_bytes());
    }
    bpf(BPF_PROG_LOAD, &mut attr)
        .unwrap_or_else(|e| panic!("loading the empty program {}: {e}", name.escape_ascii()))
}

impl EmptyProgram {
    fn attach(tracepoint: &str) -> Self {
        const BPF_RAW_TRACEPOINT_OPEN: u32 = 17;
        const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
        const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
        let prog = load_empty_program(BPF_PROG_TYPE_RAW_TRACEPOINT, b"bench_empt", None);
        let name = std::ffi::CString::new(tracepoint).unwrap();
        let mut attr = [0u8; 128];
        attr[0..8].copy_from_slice(&(name.as_ptr() as u64).to_ne_bytes());
        attr[8..12].copy_from_slice(&(prog as u32).to_ne_bytes());
        let link = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr).expect("attaching the empty program");
        // struct bpf_prog_info: type (u32), id (u32), ...
        let mut info = [0u8; 256];
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(prog as u32).to_ne_bytes());
        attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).expect("program info");
        let id = u32::from_ne_bytes(info[4..8].try_into().unwrap());
        // SAFETY: both descriptors were just returned by the kernel and are owned here.
        unsafe {
            Self {
                _prog: OwnedFd::from_raw_fd(prog),
                _link: OwnedFd::from_raw_fd(link),
                id,
            }
        }
    }
}

/// An `iter/tcp` program that returns at once (`r0 = 0; exit`), loaded and linked with raw
/// bpf(2) calls: a walk of it is the kernel's own cost of visiting every TCP socket of a
/// namespace, the floor of netmon's census by state.
struct EmptyTcpIterator {
    _prog: OwnedFd,
    link: OwnedFd,
}

impl EmptyTcpIterator {
    fn load() -> Self {
        const BPF_LINK_CREATE: u32 = 28;
        const BPF_PROG_TYPE_TRACING: u32 = 26;
        const BPF_TRACE_ITER: u32 = 28;
        let btf = aya::Btf::from_sys_fs().expect("the kernel's BTF");
        let target = btf
            .id_by_type_name_kind("bpf_iter_tcp", aya_obj::btf::BtfKind::Func)
            .expect("the kernel's TCP iterator");
        let prog = load_empty_program(
            BPF_PROG_TYPE_TRACING,
            b"bench_walk",
            Some((BPF_TRACE_ITER, target)),
        );
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&(prog as u32).to_ne_bytes());
        attr[8..12].copy_from_slice(&BPF_TRACE_ITER.to_ne_bytes());
        let link = bpf(BPF_LINK_CREATE, &mut attr).expect("linking the empty TCP iterator");
        // SAFETY: both descriptors were just returned by the kernel and are owned here.
        unsafe {
            Self {
                _prog: OwnedFd::from_raw_fd(prog),
                link: OwnedFd::from_raw_fd(link),
            }
        }
    }

    /// Median milliseconds of `walks` walks over the TCP sockets of `ns`, each on a thread
    /// there (a walk counts the sockets of the namespace of the thread that starts it).
    fn walk_ms(&self, ns: &Netns, walks: usize) -> f64 {
        const BPF_ITER_CREATE: u32 = 33;
        let link = self.link.as_raw_fd() as u32;
        let mut times: Vec<f64> = (0..walks)
            .map(|_| {
                ns.run(move || {
                    let mut attr = [0u8; 128];
                    attr[0..4].copy_from_slice(&link.to_ne_bytes());
                    let begin = Instant::now();
                    let fd = bpf(BPF_ITER_CREATE, &mut attr).expect("starting a walk");
                    // SAFETY: a descriptor just returned by the kernel, owned here.
                    let mut walk = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                    let mut out = Vec::new();
                    walk.read_to_end(&mut out).expect("walking the TCP sockets");
                    begin.elapsed().as_secs_f64() * 1000.0
                })
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    }
}

/// (run count, run time in ns) of every loaded program, by id.
fn program_stats() -> Stats {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| {
            (
                p.id(),
                (
                    p.name_as_str().unwrap_or_default().to_string(),
                    p.run_count(),
                    p.run_time().as_nanos() as u64,
                ),
            )
        })
        .collect()
}

fn ns_per_run(before: &Stats, after: &Stats, id: u32) -> Option<(u64, f64)> {
    let (_, c1, t1) = after.get(&id)?;
    let (c0, t0) = before.get(&id).map_or((0, 0), |(_, c, t)| (*c, *t));
    let runs = c1 - c0;
    (runs > 0).then(|| (runs, (t1 - t0) as f64 / runs as f64))
}

const HOOKS: [&str; 9] = [
    "net_dev_xmit",
    "netif_receive_skb",
    "kfree_skb",
    "inet_sock_set_state",
    "tcp_retransmit_skb",
    "tcp_send_reset",
    "tcp_receive_reset",
    "sock_send_length",
    "sock_recv_length",
];

/// Hooks the version measured as "before" (35905cd) does not have.
const PREVIOUSLY_ABSENT: [&str; 2] = ["sock_send_length", "sock_recv_length"];

/// Whether netmon's program for `hook` can be attached by `method` (the socket hooks have
/// `tp_btf` programs only; their fallback is fexit on older kernels).
fn has_method(hook: &str, method: &str) -> bool {
    method == "tp_btf" || !hook.starts_with("sock_")
}

/// Bytes of each of a round's lossy transfers, 16 MiB a round (see [`LOSSY_PORT`]): about a
/// hundred retransmits a window, for the reason given at [`CONNECTIONS`].
const LOSSY_BYTES: usize = (16 << 20) / TCP_SLICES as usize;
/// Bytes the receiver of the lossy transfer asks for at a time.
const RECEIVE_CHUNK: usize = 1024;
/// Port of a bulk transfer one of whose every [`LOSSY_EVERY`] segments `kernel_cost` drops,
/// so that the sender retransmits.
const LOSSY_PORT: u16 = 7002;
const LOSSY_EVERY: &str = "25";

/// (run count, run time) of every program before and after a window of the workload.
type Window = (Stats, Stats);
type Stats = BTreeMap<u32, (String, u64, u64)>;

/// One round of traffic for every hook, in windows measured one by one: [`TCP_SLICES`]
/// windows of TCP (a bulk transfer that loses segments for retransmits, connections and
/// refused ones for state changes and resets), then [`SLICES`] windows of datagrams across
/// the pair to a closed port (transmits, receives and drops). One round: a [`ROUNDS`]th of
/// 200,000 datagrams, [`CONNECTIONS`] connections and [`REFUSED`] refused ones, and 16 MiB.
fn workload(a: &Netns, b: &Netns, veth: &Veth) -> Vec<Window> {
    let mut windows: Vec<Window> = (0..TCP_SLICES)
        .map(|_| {
            let before = program_stats();
            lossy_transfer(a, b, veth);
            connections(a, b, veth);
            (before, program_stats())
        })
        .collect();
    windows.extend((0..SLICES).map(|_| datagram_window(a, veth)));
    windows
}

/// One slice of a round's datagrams across the pair to a closed port, measured on its own.
fn datagram_window(a: &Netns, veth: &Veth) -> Window {
    let before = program_stats();
    send_udp(
        a,
        &veth.a_ip,
        &format!("{}:9", veth.b_ip),
        DATAGRAMS / ROUNDS / SLICES,
        64,
    );
    (before, program_stats())
}

/// A slice of a round's TCP connections, and of its refused ones.
fn connections(a: &Netns, b: &Netns, veth: &Veth) {
    let (addr, closed) = (format!("{}:7000", veth.b_ip), format!("{}:7001", veth.b_ip));
    let listener = {
        let addr = addr.clone();
        b.run(move || TcpListener::bind(addr).unwrap())
    };
    let server = thread::spawn(move || {
        for _ in 0..CONNECTIONS / ROUNDS / TCP_SLICES {
            drop(listener.accept());
        }
    });
    a.run(move || {
        for _ in 0..CONNECTIONS / ROUNDS / TCP_SLICES {
            drop(TcpStream::connect(&addr));
        }
        for _ in 0..REFUSED / ROUNDS / TCP_SLICES {
            let _ = TcpStream::connect(&closed);
        }
    });
    server.join().unwrap();
}

/// Sends [`LOSSY_BYTES`] from `a` to `b` on [`LOSSY_PORT`] and waits until `b` has read
/// them all.
fn lossy_transfer(a: &Netns, b: &Netns, veth: &Veth) {
    let addr = format!("{}:{LOSSY_PORT}", veth.b_ip);
    let listener = {
        let addr = addr.clone();
        b.run(move || TcpListener::bind(addr).unwrap())
    };
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        // Read as a program that handles a message at a time does, so that the receive hook
        // runs thousands of times a round.
        let (mut chunk, mut received) = ([0u8; RECEIVE_CHUNK], 0);
        loop {
            match stream.read(&mut chunk).unwrap() {
                0 => break,
                n => received += n,
            }
        }
        assert_eq!(received, LOSSY_BYTES, "the lossy transfer arrived whole");
    });
    a.run(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(&vec![7u8; LOSSY_BYTES]).unwrap();
    });
    server.join().unwrap();
}

/// Drops every [`LOSSY_EVERY`]th segment that reaches [`LOSSY_PORT`] in `b` while alive.
struct LossyPort<'a>(&'a Netns);

impl<'a> LossyPort<'a> {
    /// Also makes `a` send one segment a packet (no segmentation offload), so that each drop
    /// loses one segment and costs one retransmit.
    fn new(a: &Netns, b: &'a Netns, veth: &Veth) -> Self {
        a.exec(&["ip", "link", "set", "dev", &veth.a_dev, "gso_max_segs", "1"]);
        Self::rule(b, "-A");
        Self(b)
    }

    fn rule(b: &Netns, operation: &str) {
        let port = LOSSY_PORT.to_string();
        b.exec(&[
            "iptables",
            operation,
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            &port,
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            LOSSY_EVERY,
            "--packet",
            "0",
            "-j",
            "DROP",
        ]);
    }
}

impl Drop for LossyPort<'_> {
    fn drop(&mut self) {
        Self::rule(self.0, "-D");
    }
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

/// One hook's figures: per round, netmon's ns/run, the empty program's, and the difference,
/// each the median over the round's windows in which the hook ran.
struct Row {
    hook: String,
    runs: u64,
    ours: Vec<f64>,
    floors: Vec<f64>,
    above: Vec<f64>,
}

impl Row {
    fn median(values: &[f64]) -> f64 {
        if values.is_empty() {
            return f64::NAN;
        }
        median_and_spread(values.to_vec()).0
    }

    /// Median over the rounds of (netmon - empty), and its smallest and largest.
    fn above(&self) -> (f64, f64, f64) {
        if self.above.is_empty() {
            return (f64::NAN, f64::NAN, f64::NAN);
        }
        median_and_spread(self.above.clone())
    }
}

/// The name netmon's program for `hook` starts with (`_btf`, `_raw`, `_tp` follow).
fn program_prefix(hook: &str) -> &'static str {
    match hook {
        "net_dev_xmit" => "nm_xmit",
        "netif_receive_skb" => "nm_recv",
        "kfree_skb" => "nm_drop",
        "inet_sock_set_state" => "nm_state",
        "tcp_retransmit_skb" => "nm_retrans",
        "tcp_send_reset" => "nm_rst_tx",
        "sock_send_length" => "nm_send",
        "sock_recv_length" => "nm_sockrecv",
        _ => "nm_rst_rx",
    }
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

/// The configuration that loads the programs for kernels without `bpf_loop`.
const BOUNDED_WALK: &str = "program_variant = \"bounded_walk\"\n";

/// The configuration that turns drop sampling off, to measure what sampling costs.
const NO_SAMPLING: &str = "[drop_samples]\nper_cpu_rate = 0.0\nper_cpu_burst = 0\n";

/// Runs the workload with netmon's programs attached by `method`, with `extra` added to its
/// configuration, once with each agent binary (`None`: the one under test) in every round,
/// their order turning from round to round so that a drift of the machine's speed favours
/// neither. Returns the rows of each binary.
fn netmon_run(
    method: &str,
    extra: &str,
    binaries: &[Option<&std::ffi::OsStr>],
    a: &Netns,
    b: &Netns,
    veth: &Veth,
) -> Vec<Vec<Row>> {
    // The hooks an agent has (a previous version may lack some) and can attach by `method`.
    let hooks = |binary: Option<&std::ffi::OsStr>| -> Vec<&'static str> {
        HOOKS
            .iter()
            .copied()
            .filter(|h| has_method(h, method))
            .filter(|h| binary.is_none() || !PREVIOUSLY_ABSENT.contains(h))
            .collect()
    };
    let configs: Vec<ConfigFile> = binaries
        .iter()
        .map(|binary| {
            ConfigFile::new(&format!(
                "{extra}[probe_methods]\n{}",
                hooks(*binary)
                    .iter()
                    .map(|h| format!("{h} = \"{method}\"\n"))
                    .collect::<String>()
            ))
        })
        .collect();
    let empties: Vec<(String, EmptyProgram)> = HOOKS
        .iter()
        .filter(|h| has_method(h, method))
        .map(|h| (h.to_string(), EmptyProgram::attach(h)))
        .collect();
    let suffix = match method {
        "tp_btf" => "btf",
        "raw_tp" => "raw",
        _ => "tp",
    };
    let names = |binary: Option<&std::ffi::OsStr>| -> Vec<String> {
        hooks(binary)
            .iter()
            .map(|hook| format!("{}_{suffix}", program_prefix(hook)))
            .collect()
    };
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
            let (agent, _) = footprint::start_netmon_with(
                footprint::DEFAULT_POLL,
                &["--config", configs[which].path_str()],
            );
            wait_for_programs(&names(binaries[which]));
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
        .iter()
        .map(|rounds| {
            empties
                .iter()
                .map(|(hook, empty)| {
                    hook_row(
                        hook,
                        &format!("{}_{suffix}", program_prefix(hook)),
                        empty.id,
                        rounds,
                    )
                })
                .collect()
        })
        .collect()
}

/// The figures of program `name` on `hook` beside the empty program `empty` there, from
/// each round's windows.
fn hook_row(hook: &str, name: &str, empty: u32, rounds: &[Vec<Window>]) -> Row {
    let mut row = Row {
        hook: hook.to_string(),
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
            row.ours.push(Row::median(&ours));
            row.floors.push(Row::median(&floors));
            row.above.push(Row::median(&above));
        }
    }
    row
}

/// The way common tools count per interface: a bpftrace hash keyed by interface name.
fn bpftrace_run(a: &Netns, veth: &Veth) -> Option<(u64, f64, f64)> {
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
    let empty = EmptyProgram::attach("net_dev_xmit");
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
    (total > 0).then(|| (total, Row::median(&ours), Row::median(&floors)))
}

/// The issue's targets, in ns above the empty program, by hook.
fn target_ns(hook: &str) -> f64 {
    match hook {
        "net_dev_xmit" | "netif_receive_skb" | "kfree_skb" => 15.0,
        "inet_sock_set_state" => 60.0,
        "sock_send_length" | "sock_recv_length" => 30.0,
        _ => 15.0,
    }
}

/// Why a method's programs cost what they do beyond the tp_btf ones.
fn method_note(method: &str) -> &'static str {
    match method {
        "tp_btf" => "typed loads, no helper call",
        "raw_tp" => "untyped arguments: every field is a bpf_probe_read_kernel call",
        _ => "the record is read with bpf_probe_read_kernel as well as every field",
    }
}

fn kernel_cost() -> String {
    let stats =
        aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enabling BPF run-time statistics");
    let a = Netns::new("bench-a");
    let b = Netns::new("bench-b");
    let veth = Veth::connect(&a, &b, 250);
    let lossy = LossyPort::new(&a, &b, &veth);
    let before_bin = std::env::var_os("NETMON_BEFORE_BIN");
    let mut out = format!(
        "## 1. Kernel cost per event\n\nFrom the kernel's BPF statistics (`run_time_ns / \
         run_cnt`), with an empty raw tracepoint program attached to the same hook in the same \
         run as the floor. Workload: 200,000 UDP datagrams across a veth pair to a closed port, \
         {CONNECTIONS} TCP connections, {REFUSED} refused ones, and {} transfers of {} KiB that lose \
         one segment in {LOSSY_EVERY} (retransmits) read {RECEIVE_CHUNK} bytes at a time, in {ROUNDS} rounds, each with a freshly \
         started agent (default poll interval, {}), measured {} s after its programs are \
         attached. A round is measured in windows, {TCP_SLICES} slices of its TCP part and \
         {SLICES} of its datagrams, and its figure is the median of (netmon - empty) over the windows in \
         which the hook ran; each figure below is the median of the rounds, with the smallest \
         and largest round beside it. \"before\" is {}, its rounds taking turns with \
         this version's in the same run.\n\n\
         | method | hook | runs | netmon ns/run | empty ns/run | above empty | rounds | target | before | |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        ROUNDS * TCP_SLICES,
        LOSSY_BYTES >> 10,
        footprint::DEFAULT_POLL,
        SETTLE.as_secs(),
        if before_bin.is_some() {
            "the previous version's agent (`cargo xtask bench --before REV`), measured the same way"
        } else {
            "not measured (`cargo xtask bench --before REV` measures it)"
        }
    );
    let mut per_packet_above = BTreeMap::new();
    let methods = std::env::var("NETMON_BENCH_METHODS")
        .unwrap_or_else(|_| "tp_btf raw_tp tracepoint".to_string());
    for method in methods.split_whitespace() {
        let mut binaries = vec![None];
        binaries.extend(before_bin.as_deref().map(Some));
        let mut runs = netmon_run(method, "", &binaries, &a, &b, &veth).into_iter();
        let rows = runs.next().unwrap_or_default();
        let before: BTreeMap<String, f64> = runs
            .next()
            .unwrap_or_default()
            .into_iter()
            .map(|row| (row.hook.clone(), row.above().0))
            .filter(|(_, above)| !above.is_nan())
            .collect();
        for row in rows {
            let (above, low, high) = row.above();
            let target = target_ns(&row.hook);
            let verdict = if above.is_nan() {
                "no events"
            } else if above <= target {
                "met"
            } else if method == "tp_btf" {
                "missed"
            } else {
                method_note(method)
            };
            let _ = writeln!(
                out,
                "| {method} | {} | {} | {:.1} | {:.1} | **{above:+.1}** | {low:+.1} .. {high:+.1} | \
                 +{target:.0} | {} | {verdict} |",
                row.hook,
                row.runs,
                Row::median(&row.ours),
                Row::median(&row.floors),
                before
                    .get(&row.hook)
                    .map_or("-".to_string(), |b| format!("{b:+.1}")),
            );
            if method == "tp_btf" && (row.hook == "net_dev_xmit" || row.hook == "netif_receive_skb")
            {
                per_packet_above.insert(row.hook, above);
            }
        }
    }
    // What sampling drops costs: the drop hook again with sampling off.
    if methods.split_whitespace().any(|m| m == "tp_btf") {
        let rows = netmon_run("tp_btf", NO_SAMPLING, &[None], &a, &b, &veth);
        if let Some(row) = rows[0].iter().find(|row| row.hook == "kfree_skb") {
            let (above, low, high) = row.above();
            let _ = writeln!(
                out,
                "| tp_btf, drop sampling off | kfree_skb | {} | {:.1} | {:.1} | **{above:+.1}** | \
                 {low:+.1} .. {high:+.1} | +15 | - | {} |",
                row.runs,
                Row::median(&row.ours),
                Row::median(&row.floors),
                if above <= 15.0 { "met" } else { "missed" }
            );
        }
        // The programs for kernels without `bpf_loop` (before 5.17), forced on this kernel:
        // the same hooks, whose socket hooks keep no memo.
        let rows = netmon_run("tp_btf", BOUNDED_WALK, &[None], &a, &b, &veth);
        for row in &rows[0] {
            let (above, low, high) = row.above();
            let _ = writeln!(
                out,
                "| tp_btf, bounded_walk | {} | {} | {:.1} | {:.1} | **{above:+.1}** | \
                 {low:+.1} .. {high:+.1} | - | - | kernels before 5.17 |",
                row.hook,
                row.runs,
                Row::median(&row.ours),
                Row::median(&row.floors),
            );
        }
        out.push_str(
            "\nThe tp_btf, bounded_walk rows load the programs for kernels without `bpf_loop` \
             (`program_variant = \"bounded_walk\"`), which Linux 5.10 to 5.16 run: their slot \
             walk and claim differ only when an identity is new, and their socket hooks count \
             each call in its slot, without the per-CPU memo. They have no target: they are \
             what an older kernel pays.\n",
        );
        out.push_str(
            "\nThe kfree_skb rows above sample drops with the default budget (a burst of 200 \
             samples per CPU, then 100 a second): a fresh agent each round sends about 400 \
             samples of the round's 20,000 drops, each a ring-buffer record with the packet's \
             headers copied (a few hundred ns); the row with sampling off is the drop hook's \
             counting alone.\n\n",
        );
    }
    out.push_str("## 2. Against a bpftrace one-liner\n\n");
    match bpftrace_run(&a, &veth) {
        Some((runs, ns, floor)) => {
            let ours = per_packet_above.values().sum::<f64>() / per_packet_above.len() as f64;
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
    drop(lossy);
    drop(stats);
    out
}

// ---------------------------------------------------------------- agent cost

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Peak resident set size in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:").unwrap_or(0.0)
}

/// Scrapes `path` once a second from inside `ns` for `MEASURE`, and returns the process's CPU
/// time per second and peak RSS over that time.
fn measure(ns: &Netns, pid: u32, addr: SocketAddr, path: &str) -> (f64, f64, usize) {
    thread::sleep(Duration::from_secs(2));
    let start_cpu = cpu_seconds(pid);
    let begin = Instant::now();
    let mut size = 0;
    let path = path.to_string();
    while begin.elapsed() < MEASURE {
        let p = path.clone();
        let tick = Instant::now();
        size = ns
            .run(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                request(&mut s, addr, &p, &[("Connection", "close")]).map(|r| r.body.len())
            })
            .unwrap_or(0);
        thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    let cpu = (cpu_seconds(pid) - start_cpu) / begin.elapsed().as_secs_f64();
    (cpu, peak_rss_mib(pid), size)
}

/// Holds `count` TCP sockets (half clients, half servers) inside `ns`, spread over processes
/// because one process may hold at most 20,000 files.
fn hold_sockets(ns: &Netns, count: usize, first_port: u16) -> Vec<Child> {
    let mut children = Vec::new();
    let mut left = count / 2;
    let mut port = first_port;
    while left > 0 {
        let connections = left.min(5000);
        left -= connections;
        let code = format!(
            "import resource, socket, threading, time\n\
             resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))\n\
             l = socket.socket(); l.bind(('127.0.0.1', {port})); l.listen(8192)\n\
             held = []\n\
             def accept():\n    for _ in range({connections}):\n        held.append(l.accept()[0])\n\
             t = threading.Thread(target=accept); t.start()\n\
             for _ in range({connections}):\n    held.append(socket.create_connection(('127.0.0.1', {port})))\n\
             t.join(); print('ready', flush=True); time.sleep(3600)"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", &code])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        children.push(child);
        port += 1;
    }
    children
}

/// Adds veth pairs `from..to` between `x` and `y`.
fn add_interfaces(x: &Netns, y: &Netns, from: usize, to: usize) {
    let mut batch = String::new();
    for i in from..to {
        batch.push_str(&format!(
            "link add nmk{i} type veth peer name nmq{i} netns {}\nlink set nmk{i} up\n",
            y.name
        ));
    }
    let path = std::env::temp_dir().join(format!("{}.batch", x.name));
    std::fs::write(&path, batch).unwrap();
    sh("ip", &["-n", &x.name, "-batch", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(path);
}

fn interface_count(ns: &Netns) -> usize {
    ns.exec(&["ls", "/sys/class/net"])
        .split_whitespace()
        .count()
}

struct NetmonInNs {
    child: Child,
    addr: SocketAddr,
}

/// netmon in `ns`, polling every `poll`.
fn start_netmon(ns: &Netns, poll: &str) -> NetmonInNs {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(netmon_bin())
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--poll-interval",
            poll,
        ])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(ns, addr);
    NetmonInNs { child, addr }
}

fn wait_port(ns: &Netns, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ns.run(move || TcpStream::connect(addr).is_ok()) {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn stop(mut child: Child) {
    // SAFETY: stopping our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// p50 and p99 in ms of 1,000 scrapes by 50 scrapers that take gzip, as Prometheus does, how
/// many, and the compressed body's size.
fn latency(ns: &Netns, addr: SocketAddr) -> (f64, f64, usize, usize) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let compressed = Arc::new(Mutex::new(0));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let samples = samples.clone();
            let compressed = compressed.clone();
            let path = ns.path();
            thread::spawn(move || {
                let file = std::fs::File::open(path).unwrap();
                // SAFETY: entering the bench's namespace on this thread only.
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
                let mut stream = TcpStream::connect(addr).unwrap();
                for _ in 0..20 {
                    let begin = Instant::now();
                    let gzip = [("Accept-Encoding", "gzip")];
                    let response = request(&mut stream, addr, "/metrics", &gzip).unwrap();
                    assert_eq!(response.status, 200);
                    *compressed.lock().unwrap() = response.bytes.len();
                    samples
                        .lock()
                        .unwrap()
                        .push(begin.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut samples = samples.lock().unwrap().clone();
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    let compressed = *compressed.lock().unwrap();
    (at(0.5), at(0.99), samples.len(), compressed)
}

/// node_exporter with the collectors that cover what netmon reports, in `ns`, scraped the
/// same way as netmon.
fn node_exporter(ns: &Netns) -> Option<(f64, f64, usize)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "prometheus-node-exporter"])
        .arg(format!("--web.listen-address={addr}"))
        .args([
            "--collector.disable-defaults",
            "--collector.netdev",
            "--collector.netclass",
            "--collector.tcpstat",
            "--collector.sockstat",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_port(ns, addr);
    let result = measure(ns, child.id(), addr, "/metrics");
    stop(child);
    Some(result)
}

fn agent_cost() -> String {
    let x = Netns::new("bench-x");
    let y = Netns::new("bench-y");
    let mut out = String::from(
        "## 6. How cost grows\n\nnetmon (poll interval 1 s) in a namespace with the given \
         interfaces and TCP sockets, scraped once a second for 10 s after 2 s of warm-up. \
         \"socket owners\" is the time of the listening collector in the poll that finds a \
         new listener: that poll looks for the processes holding sockets (so does one every \
         30 s), and the processes of the table hold every socket. \"empty walk\" is the \
         floor of the census by state: the kernel's walk of the same sockets with an iterator \
         program that returns at once (median of 15, netmon stopped).\n\n\
         | interfaces | TCP sockets | CPU (s/s) | peak RSS (MiB) | /metrics size (bytes) | \
         socket dump (ms) | empty walk (ms) | interfaces (ms) | poll (ms) | socket owners (ms) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut holders = Vec::new();
    let mut made = 0;
    let mut sockets = 0;
    let mut port = 20000;
    let mut busy = None;
    let mut node_result = None;
    let empty_walk = EmptyTcpIterator::load();
    for (interfaces, socket_target) in [
        (10, 1000),
        (100, 1000),
        (1000, 1000),
        (1000, 10_000),
        (1000, 50_000),
        (1000, 100_000),
    ] {
        // Each pair puts one interface in x; loopback is the last one.
        let pairs = interfaces - 1;
        if pairs > made {
            add_interfaces(&x, &y, made, pairs);
            made = pairs;
        }
        if socket_target > sockets {
            let more = socket_target - sockets;
            let new = hold_sockets(&x, more, port);
            port += new.len() as u16;
            holders.extend(new);
            sockets = socket_target;
        }
        let floor = empty_walk.walk_ms(&x, 15);
        let netmon = start_netmon(&x, "1s");
        let (cpu, rss, size) = measure(&x, netmon.child.id(), netmon.addr, "/metrics");
        let durations = collector_ms(&x, netmon.addr);
        let owners = owner_scan_ms(&x, netmon.addr);
        let _ = writeln!(
            out,
            "| {} | {} | {cpu:.4} | {rss:.1} | {size} | {:.1} | {floor:.1} | {:.1} | {:.1} | \
             {owners:.1} |",
            interface_count(&x),
            ss_count(&x),
            durations.0,
            durations.1,
            durations.2
        );
        if socket_target == 50_000 {
            let (p50, p99, n, gzipped) = latency(&x, netmon.addr);
            stop(netmon.child);
            // The agent as an operator runs it, beside the rows' poll of a second.
            let default = start_netmon(&x, footprint::DEFAULT_POLL);
            let (default_cpu, default_rss, _) =
                measure(&x, default.child.id(), default.addr, "/metrics");
            stop(default.child);
            busy = Some(Busy {
                default: (default_cpu, default_rss),
                fast: (cpu, rss),
                size,
                latency: (p50, p99, n, gzipped),
                floor,
            });
            node_result = node_exporter(&x);
            continue;
        }
        stop(netmon.child);
    }
    let Busy {
        default: (cpu, rss),
        fast: (fast_cpu, fast_rss),
        size,
        latency: (p50, p99, n, gzipped),
        floor,
    } = busy.unwrap();

    let mut comparison = format!(
        "## 3. Agent cost on a busy host\n\n1,000 interfaces and 50,000 TCP sockets in one \
         namespace; one scrape a second for 10 s after 2 s of warm-up; CPU is user + system \
         time per second of wall time, RSS the peak (VmHWM). netmon runs as an operator runs \
         it, polling every {DEFAULT_POLL} (its default), and again polling every second (1s) as \
         in table 6.\n\n\
         | agent | CPU (s/s) | peak RSS (MiB) | scrape size (bytes) |\n|---|---|---|---|\n",
        DEFAULT_POLL = footprint::DEFAULT_POLL,
    );
    let _ = writeln!(
        comparison,
        "| netmon (all hooks attached, poll {}) | {cpu:.4} | {rss:.1} | {size} |\n\
         | netmon (all hooks attached, poll 1s) | {fast_cpu:.4} | {fast_rss:.1} | {size} |",
        footprint::DEFAULT_POLL,
    );
    match node_result {
        Some((ncpu, nrss, nsize)) => {
            let peak = rss.max(fast_rss);
            let _ = writeln!(
                comparison,
                "| node_exporter (netdev, netclass, tcpstat, sockstat) | {ncpu:.4} | {nrss:.1} | {nsize} |\n\n\
                 netmon / node_exporter: CPU **{:.3}x** at the default poll (target at most \
                 0.05x: {}), {:.3}x polling every second; peak RSS **{:.2}x** (the larger of \
                 the two; target at most 0.5x: {}).\n",
                cpu / ncpu,
                if cpu / ncpu <= 0.05 { "met" } else { "missed" },
                fast_cpu / ncpu,
                peak / nrss,
                if peak / nrss <= 0.5 { "met" } else { "missed" },
            );
            // The walk is all kernel time, once a poll.
            let walk = floor / 1000.0;
            let _ = writeln!(
                comparison,
                "The floor of the census by state, measured: the kernel's walk of these 50,000 \
                 sockets with an iterator program that returns at once takes {floor:.1} ms, \
                 {walk:.4} s/s at one poll a second, **{:.3}x** node_exporter's CPU by itself \
                 (half that at the default poll); everything else netmon does polling every \
                 second costs {:.4} s/s ({:.3}x).\n",
                walk / ncpu,
                fast_cpu - walk,
                (fast_cpu - walk) / ncpu,
            );
        }
        None => {
            let _ = writeln!(comparison, "\nnode_exporter could not start here.\n");
        }
    }
    let _ = writeln!(
        comparison,
        "## 4. /metrics latency under 50 concurrent scrapers\n\nSame busy host; 50 kept-alive \
         connections that take gzip as Prometheus does, 20 scrapes each ({n} in all).\n\n\
         | p50 (ms) | p99 (ms) | target p99 (ms) | body (bytes) | gzip body (bytes) |\n\
         |---|---|---|---|---|\n| {p50:.1} | {p99:.1} | 50 | {size} | {gzipped} |\n"
    );
    for child in holders {
        stop(child);
    }
    format!("{comparison}\n{out}")
}

/// What table 3 reports of the busy host.
struct Busy {
    /// CPU (s/s) and peak RSS (MiB) polling at the default interval.
    default: (f64, f64),
    /// The same polling every second.
    fast: (f64, f64),
    size: usize,
    /// p50 and p99 (ms) under 50 scrapers, scrapes, and the gzip body's bytes.
    latency: (f64, f64, usize, usize),
    /// The empty walk of the sockets (ms).
    floor: f64,
}

/// The agent's metrics, scraped from inside `ns` (empty when it does not answer).
fn scrape_in(ns: &Netns, addr: SocketAddr) -> netmon_tests::Metrics {
    let body = ns
        .run(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            request(&mut s, addr, "/metrics", &[("Connection", "close")]).map(|r| r.body)
        })
        .unwrap_or_default();
    netmon_tests::Metrics::parse(&body)
}

/// Milliseconds the newest poll spent on the socket dump, on interfaces, and in all.
fn collector_ms(ns: &Netns, addr: SocketAddr) -> (f64, f64, f64) {
    let metrics = scrape_in(ns, addr);
    let collector = |name: &str| {
        metrics
            .value("netmon_collector_duration_seconds", &[("collector", name)])
            .unwrap_or(f64::NAN)
            * 1000.0
    };
    (
        collector("connections"),
        collector("interfaces") + collector("link_details"),
        metrics
            .value("netmon_poll_duration_seconds", &[])
            .unwrap_or(f64::NAN)
            * 1000.0,
    )
}

/// Milliseconds of the listening collector in the poll that finds a listener opened now,
/// which looks for the holders of sockets.
fn owner_scan_ms(ns: &Netns, addr: SocketAddr) -> f64 {
    let listener = ns.run(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let port = listener.local_addr().unwrap().port().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let metrics = scrape_in(ns, addr);
        let found = !metrics
            .find("netmon_listening_socket_info", &[("port", &port)])
            .is_empty();
        if found {
            return metrics
                .value(
                    "netmon_collector_duration_seconds",
                    &[("collector", "listening")],
                )
                .unwrap_or(f64::NAN)
                * 1000.0;
        }
        thread::sleep(Duration::from_millis(100));
    }
    f64::NAN
}

fn ss_count(ns: &Netns) -> usize {
    ns.exec(&["ss", "-tanH"]).lines().count()
}

// ---------------------------------------------------------------- kernel memory

/// Bytes a map takes with `cpus` CPUs, from its definition: an array holds its values (a
/// memory-mappable one in whole pages), a per-CPU array a copy per CPU (each value rounded up
/// to 8 bytes) and a pointer per entry; an array of per-CPU regions a region per CPU.
fn map_bytes_for(map: &serde_json::Value, cpus: u64) -> u64 {
    let name = map["name"].as_str().unwrap_or_default();
    let entries = match CPU_REGION_MAPS.iter().find(|(region, _)| *region == name) {
        Some((_, per_cpu)) => u64::from(*per_cpu) * cpus,
        None => map["max_entries"].as_u64().unwrap_or(0),
    };
    let value = map["bytes_value"].as_u64().unwrap_or(0).div_ceil(8) * 8;
    match map["type"].as_str() {
        Some("percpu_array") => entries * (value * cpus + 8),
        // The data pages, and about four pages of header and positions, whatever the CPUs.
        Some("ringbuf") => entries + 4 * 4096,
        _ => (entries * value).div_ceil(4096) * 4096,
    }
}

fn kernel_memory() -> String {
    let agent = Agent::start(&[]);
    let maps: Vec<serde_json::Value> =
        serde_json::from_str(&sh("bpftool", &["map", "show", "--json"])).unwrap_or_default();
    drop(agent);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mut out = format!(
        "## 7. Kernel memory\n\nnetmon's maps with the default configuration: what the kernel \
         charges here ({cpus} CPUs, `bpftool map show`, bytes_memlock) and what the same \
         definitions take on larger hosts.\n\n\
         | table | here (MiB) | 2 CPUs (MiB) | 16 CPUs (MiB) | 128 CPUs (MiB) |\n|---|---|---|---|---|\n"
    );
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let mut totals = [0u64; 4];
    for (table, names) in TABLE_MAPS {
        let ours: Vec<&serde_json::Value> = maps
            .iter()
            .filter(|m| names.contains(&m["name"].as_str().unwrap_or_default()))
            .collect();
        let row = [
            ours.iter()
                .map(|m| m["bytes_memlock"].as_u64().unwrap_or(0))
                .sum(),
            ours.iter().map(|m| map_bytes_for(m, 2)).sum(),
            ours.iter().map(|m| map_bytes_for(m, 16)).sum(),
            ours.iter().map(|m| map_bytes_for(m, 128)).sum::<u64>(),
        ];
        for (total, value) in totals.iter_mut().zip(row) {
            *total += value;
        }
        let _ = writeln!(
            out,
            "| {table} | {:.2} | {:.2} | {:.2} | {:.2} |",
            mib(row[0]),
            mib(row[1]),
            mib(row[2]),
            mib(row[3])
        );
    }
    let _ = writeln!(
        out,
        "| **all** | **{:.2}** | {:.2} | {:.2} | **{:.2}** |\n\nTargets: at most 4 MiB here \
         ({}), at most 32 MiB for 128 CPUs ({}).\n",
        mib(totals[0]),
        mib(totals[1]),
        mib(totals[2]),
        mib(totals[3]),
        if mib(totals[0]) <= 4.0 {
            "met"
        } else {
            "missed"
        },
        if mib(totals[3]) <= 32.0 {
            "met"
        } else {
            "missed"
        },
    );
    out
}

// ---------------------------------------------------------------- packet path

/// Datagrams of the warm-up that comes before each arm's measured runs.
const WARM_UP_DATAGRAMS: &str = "20000";

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

fn median_and_spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// Arms of the packet-path section: nothing, empty programs, netmon, netmon without its
/// socket hooks.
const ARMS: usize = 4;

/// The configuration of netmon without its socket hooks.
const SOCKET_HOOKS_OFF: &str = "disabled_probes = [\"sock_send_length\", \"sock_recv_length\"]\n";

fn packet_path() -> String {
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
    let kinds = [
        ("TCP (Gbit/s)", false, 0.97),
        ("UDP 64 B (datagrams/s)", true, 0.95),
    ];
    // Per kind, per round: the rate without anything attached, with empty programs on every
    // hook netmon uses (the cost of hooking at all), with netmon, and with netmon without its
    // two socket hooks (the packet path alone).
    let mut rounds: BTreeMap<&str, Vec<[f64; ARMS]>> = BTreeMap::new();
    let without_sockets = ConfigFile::new(SOCKET_HOOKS_OFF);
    // The agent's own CPU while its arm's traffic runs, and the wall time of those runs.
    let (mut agent_cpu, mut agent_wall) = (0.0, 0.0);
    for round in 0..PATH_PAIRS {
        // Rotate the order within a round, so that a drift of the machine's speed favours
        // no arm.
        let mut measured = [[0.0; ARMS]; 2];
        for step in 0..ARMS {
            let arm = (round + step) % ARMS;
            // netmon as an operator runs it: default configuration, polling every 2 s.
            let agent = match arm {
                2 => Some(footprint::start_netmon(footprint::DEFAULT_POLL)),
                3 => Some(footprint::start_netmon_with(
                    footprint::DEFAULT_POLL,
                    &["--config", without_sockets.path_str()],
                )),
                _ => None,
            };
            let empties: Vec<EmptyProgram> = if arm == 1 {
                HOOKS
                    .iter()
                    .map(|hook| EmptyProgram::attach(hook))
                    .collect()
            } else {
                Vec::new()
            };
            // The steady state is what counts: the agent's start (BTF, attaching, its first
            // polls) is over before the traffic begins.
            if agent.is_some() {
                thread::sleep(SETTLE);
            }
            warm_up(&a, &veth.b_ip);
            let cpu = agent.as_ref().map(|(agent, _)| cpu_seconds(agent.id()));
            let begin = Instant::now();
            for (k, (_, udp, _)) in kinds.iter().enumerate() {
                measured[k][arm] = iperf(&a, &veth.b_ip, *udp);
            }
            if let (2, Some(cpu), Some((agent, _))) = (arm, cpu, &agent) {
                agent_cpu += cpu_seconds(agent.id()) - cpu;
                agent_wall += begin.elapsed().as_secs_f64();
            }
            drop(empties);
            if let Some((agent, _)) = agent {
                stop(agent);
            }
        }
        for (k, (kind, _, _)) in kinds.iter().enumerate() {
            rounds.entry(kind).or_default().push(measured[k]);
        }
    }
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
         {:.4} s of CPU a second.\n\n\
         | test | median without | netmon / without | empty / without | netmon / empty | netmon without socket hooks / without | target (netmon / without) |\n\
         |---|---|---|---|---|---|---|\n",
        HOOKS.len(),
        SETTLE.as_secs(),
        SOCKET_HOOKS_OFF.trim(),
        agent_cpu / agent_wall.max(f64::EPSILON),
    );
    for (kind, _, target) in kinds {
        let values = &rounds[kind];
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
    out
}
