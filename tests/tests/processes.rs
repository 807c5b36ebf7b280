//! Who uses the network: socket I/O per process and per cgroup, counted exactly against the
//! known workload of processes the tests start in cgroups and namespaces they make.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, UdpSocket},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    thread,
    time::Duration,
};

use netmon::model::probes::Hook;
use netmon_common::socket_memo::SocketMemo;
use netmon_tests::{
    Agent, Cgroup, ConfigFile, Metrics, Netns, Veth, loaded_netmon_programs, probe_status,
    require_root, sh,
};

const TCP_PORT: u16 = 7300;
const UDP_PORT: u16 = 7301;

/// A python process in `ns` that names itself `name`, prints its pid, waits for a line on
/// its standard input, runs `work` and prints its result, then waits for another line.
struct Talker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
}

impl Talker {
    fn start(ns: &Netns, name: &str, work: &str) -> Self {
        let code = format!(
            "import os, socket, sys\n\
             open('/proc/self/comm', 'w').write({name:?})\n\
             print(os.getpid(), flush=True)\n\
             sys.stdin.readline()\n\
             {work}\n\
             sys.stdin.readline()\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-u", "-c", &code])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting python3");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let pid = line.trim().parse().expect("the talker's pid");
        Self {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    /// Lets the talker work; returns what it printed.
    fn work(&mut self) -> String {
        self.stdin.write_all(b"go\n").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    fn finish(mut self) {
        let _ = self.stdin.write_all(b"end\n");
        let _ = self.child.wait();
    }
}

/// Python that sends `sent` bytes over TCP to `ip`, reads the answer to its end, sends
/// `datagrams` datagrams of `size` bytes over UDP, and prints the bytes it read.
fn exchange(ip: &str, sent: usize, datagrams: usize, size: usize) -> String {
    format!(
        "t = socket.create_connection(({ip:?}, {TCP_PORT}))\n\
         t.sendall(b'x' * {sent})\n\
         t.shutdown(socket.SHUT_WR)\n\
         got = 0\n\
         while True:\n    d = t.recv(65536)\n    if not d: break\n    got += len(d)\n\
         t.close()\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range({datagrams}): u.sendto(b'y' * {size}, ({ip:?}, {UDP_PORT}))\n\
         print(got, flush=True)"
    )
}

/// In `b`: answers one TCP connection with `answer` bytes once the peer has sent all it
/// will, and takes `datagrams` datagrams; returns what it read over TCP.
fn serve(b: &Netns, ip: &str, answer: usize, datagrams: usize) -> thread::JoinHandle<usize> {
    let (tcp, udp) = {
        let ip = ip.to_string();
        b.run(move || {
            (
                TcpListener::bind((ip.as_str(), TCP_PORT)).unwrap(),
                UdpSocket::bind((ip.as_str(), UDP_PORT)).unwrap(),
            )
        })
    };
    thread::spawn(move || {
        let (mut stream, _) = tcp.accept().unwrap();
        let mut read = Vec::new();
        stream.read_to_end(&mut read).unwrap();
        stream.write_all(&vec![b'z'; answer]).unwrap();
        drop(stream);
        udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buffer = [0u8; 2048];
        for _ in 0..datagrams {
            udp.recv(&mut buffer).unwrap();
        }
        read.len()
    })
}

fn process_bytes(m: &Metrics, pid: u32, direction: &str, protocol: &str) -> u64 {
    let pid = pid.to_string();
    m.counter(
        "netmon_process_network_bytes_total",
        &[
            ("pid", &pid),
            ("direction", direction),
            ("protocol", protocol),
        ],
    )
}

fn cgroup_bytes(m: &Metrics, cgroup: &Cgroup, direction: &str, protocol: &str) -> u64 {
    m.counter(
        "netmon_cgroup_network_bytes_total",
        &[
            ("cgroup", &cgroup.path),
            ("direction", direction),
            ("protocol", protocol),
        ],
    )
}

#[test]
fn processes_and_cgroups_count_exactly_what_they_send_and_receive() {
    require_root();
    count_what_processes_send_and_receive(&Agent::start(&[]), 230);
}

/// The same with the programs for kernels without `bpf_loop`, whose socket hooks count each
/// call in its slot, without the memo, and take the task with `bpf_get_current_task`.
#[test]
fn processes_count_exactly_with_the_programs_for_kernels_without_bpf_loop() {
    require_root();
    let config = ConfigFile::new("program_variant = \"bounded_walk\"\n");
    let agent = Agent::start(&["--config", config.path_str()]);
    assert_eq!(agent.status()["program_variant"], "bounded_walk");
    count_what_processes_send_and_receive(&agent, 229);
}

/// Two processes of one name in two cgroups send and receive known amounts: each counts
/// exactly, by process and by cgroup, and an exited one's bytes stay in its cgroup.
fn count_what_processes_send_and_receive(agent: &Agent, subnet: u8) {
    let a = Netns::new("proc-a");
    let b = Netns::new("proc-b");
    let veth = Veth::connect(&a, &b, subnet);
    // Two processes of the same name in two cgroups, each with its own amounts.
    let runs = [(100_000, 7, 300, 30_000), (250_000, 3, 1000, 5_000)];
    let mut seen = Vec::new();
    for (sent, datagrams, size, answer) in runs {
        let cgroup = Cgroup::new("talker");
        let mut talker = Talker::start(
            &a,
            "nm-talker",
            &exchange(&veth.b_ip, sent, datagrams, size),
        );
        cgroup.add(talker.pid);
        let server = serve(&b, &veth.b_ip, answer, datagrams);
        assert_eq!(talker.work(), answer.to_string());
        assert_eq!(server.join().unwrap(), sent);
        let m = agent.fresh_metrics();
        let pid = talker.pid;
        assert_eq!(process_bytes(&m, pid, "tx", "tcp"), sent as u64);
        assert_eq!(process_bytes(&m, pid, "rx", "tcp"), answer as u64);
        assert_eq!(
            process_bytes(&m, pid, "tx", "udp"),
            (datagrams * size) as u64
        );
        assert_eq!(
            m.counter(
                "netmon_process_network_calls_total",
                &[
                    ("pid", &pid.to_string()),
                    ("direction", "tx"),
                    ("protocol", "udp")
                ]
            ),
            datagrams as u64
        );
        assert_eq!(
            m.find(
                "netmon_process_network_bytes_total",
                &[("pid", &pid.to_string())]
            )[0]
            .0["process"],
            "nm-talker"
        );
        assert_eq!(cgroup_bytes(&m, &cgroup, "tx", "tcp"), sent as u64);
        assert_eq!(cgroup_bytes(&m, &cgroup, "rx", "tcp"), answer as u64);
        assert_eq!(
            cgroup_bytes(&m, &cgroup, "tx", "udp"),
            (datagrams * size) as u64
        );
        assert_eq!(cgroup_bytes(&m, &cgroup, "rx", "udp"), 0);

        let api: serde_json::Value =
            serde_json::from_str(&agent.get("/api/v1/processes").body).unwrap();
        let item = api["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["pid"] == pid)
            .unwrap_or_else(|| panic!("{pid} not listed: {api}"));
        assert_eq!(item["name"], "nm-talker");
        assert_eq!(item["cgroup"], cgroup.path.as_str());
        assert_eq!(item["netns"], a.inode());
        assert_eq!(item["user"], "root");
        assert!(item["command_line"].is_null(), "off by default: {item}");
        seen.push((pid, cgroup.path.clone()));
        talker.finish();
        // The exited process's bytes stay in its cgroup's counters.
        let m = agent.fresh_metrics();
        let m = if process_bytes(&m, pid, "tx", "tcp") > 0 {
            agent.fresh_metrics()
        } else {
            m
        };
        assert_eq!(
            process_bytes(&m, pid, "tx", "tcp"),
            0,
            "an exited process has no series"
        );
        assert_eq!(cgroup_bytes(&m, &cgroup, "tx", "tcp"), sent as u64);
        drop(cgroup);
    }
    // Same name, told apart by cgroup.
    assert_ne!(seen[0].1, seen[1].1);
    let m = agent.fresh_metrics();
    assert_eq!(
        m.counter("netmon_probe_map_full_total", &[("map", "processes")]),
        0
    );
    assert_eq!(m.counter("netmon_probe_read_failures_total", &[]), 0);
}

/// The hooks remember where each CPU last counted a thread; a thread that moves to another
/// cgroup between two sends must count in the new one from its first send there.
#[test]
fn a_process_that_moves_to_another_cgroup_counts_in_each_what_it_sent_there() {
    require_root();
    const SIZE: usize = 200;
    let (before, after) = (11, 17);
    let agent = Agent::start(&[]);
    let a = Netns::new("proc-move-a");
    let b = Netns::new("proc-move-b");
    let veth = Veth::connect(&a, &b, 232);
    let (first, second) = (Cgroup::new("from"), Cgroup::new("to"));
    let send = |count: usize| {
        format!(
            "for _ in range({count}): u.sendto(b'm' * {SIZE}, ({:?}, {UDP_PORT}))\n",
            veth.b_ip
        )
    };
    // On one CPU, so that the second batch meets the memo the first left there.
    let mut talker = Talker::start(
        &a,
        "nm-mover",
        &format!(
            "os.sched_setaffinity(0, {{0}})\n\
             u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             {}print('first', flush=True)\n\
             sys.stdin.readline()\n\
             {}print('second', flush=True)",
            send(before),
            send(after)
        ),
    );
    first.add(talker.pid);
    assert_eq!(talker.work(), "first");
    second.add(talker.pid);
    assert_eq!(talker.work(), "second");
    let m = agent.fresh_metrics();
    assert_eq!(
        cgroup_bytes(&m, &first, "tx", "udp"),
        (before * SIZE) as u64
    );
    assert_eq!(
        cgroup_bytes(&m, &second, "tx", "udp"),
        (after * SIZE) as u64
    );
    assert_eq!(
        process_bytes(&m, talker.pid, "tx", "udp"),
        ((before + after) * SIZE) as u64
    );
    talker.finish();
}

/// The hooks remember which thread a CPU last counted by where the thread's kernel stack is,
/// and a process that exits leaves its stack to the next one forked on that CPU: the next
/// must count as itself from its first send, and the one gone must keep what it sent.
#[test]
fn a_process_forked_after_another_exits_counts_as_itself() {
    require_root();
    const SIZE: usize = 300;
    let (before, after) = (13, 19);
    let agent = Agent::start(&[]);
    let a = Netns::new("proc-exit-a");
    let b = Netns::new("proc-exit-b");
    let veth = Veth::connect(&a, &b, 233);
    let cgroup = Cgroup::new("heirs");
    // On one CPU: the second child is forked where the first ran, once it is gone, and the
    // kernel hands it the stack the first left in that CPU's cache.
    let mut talker = Talker::start(
        &a,
        "nm-heirs",
        &format!(
            "os.sched_setaffinity(0, {{0}})\n\
             def send(count):\n    \
                 u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    \
                 for _ in range(count): u.sendto(b'e' * {SIZE}, ({ip:?}, {UDP_PORT}))\n\
             first = os.fork()\n\
             if first == 0:\n    \
                 send({before})\n    \
                 os._exit(0)\n\
             os.waitpid(first, 0)\n\
             sent_r, sent_w = os.pipe()\n\
             hold_r, hold_w = os.pipe()\n\
             second = os.fork()\n\
             if second == 0:\n    \
                 os.close(hold_w)\n    \
                 send({after})\n    \
                 os.write(sent_w, b'x')\n    \
                 os.read(hold_r, 1)\n    \
                 os._exit(0)\n\
             os.read(sent_r, 1)\n\
             print(second, flush=True)",
            ip = veth.b_ip,
        ),
    );
    cgroup.add(talker.pid);
    let second: u32 = talker.work().parse().expect("the second child's pid");
    // The memos this test is about are on: the thread watch is attached.
    let status: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/status").body).unwrap();
    assert!(
        status["socket_memo_error"].is_null(),
        "{}",
        status["socket_memo_error"]
    );
    let m = agent.fresh_metrics();
    assert_eq!(
        process_bytes(&m, second, "tx", "udp"),
        (after * SIZE) as u64
    );
    assert_eq!(
        cgroup_bytes(&m, &cgroup, "tx", "udp"),
        ((before + after) * SIZE) as u64
    );
    talker.finish();
}

/// The hooks remember the protocol of a thread's sockets by their protocol operations, which
/// raw sockets of every IP protocol share: a raw socket counts under the protocol it was
/// opened with, however the one before it was.
#[test]
fn raw_sockets_count_under_the_protocol_they_were_opened_with() {
    require_root();
    const SIZE: usize = 60;
    let (tcp, udp) = (9, 14);
    let agent = Agent::start(&[]);
    let a = Netns::new("proc-raw-a");
    let b = Netns::new("proc-raw-b");
    let veth = Veth::connect(&a, &b, 233);
    let raw = |protocol: &str, count: usize| {
        format!(
            "r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.{protocol})\n\
             for _ in range({count}): r.sendto(b'r' * {SIZE}, ({:?}, 0))\n",
            veth.b_ip
        )
    };
    // On one CPU, so that the second socket meets the memo the first left there.
    let mut talker = Talker::start(
        &a,
        "nm-raw",
        &format!(
            "os.sched_setaffinity(0, {{0}})\n{}{}print('sent', flush=True)",
            raw("IPPROTO_TCP", tcp),
            raw("IPPROTO_UDP", udp)
        ),
    );
    assert_eq!(talker.work(), "sent");
    let m = agent.fresh_metrics();
    assert_eq!(
        process_bytes(&m, talker.pid, "tx", "tcp"),
        (tcp * SIZE) as u64
    );
    assert_eq!(
        process_bytes(&m, talker.pid, "tx", "udp"),
        (udp * SIZE) as u64
    );
    talker.finish();
}

/// Two processes take turns on one CPU, one send each, so that nearly every send moves the
/// counts the CPU's memo held to the slot of the process before: what the agent reports never
/// goes back while they run, and is exact once they are done.
#[test]
fn processes_taking_turns_on_a_cpu_count_exactly_and_never_back() {
    require_root();
    const SENDS: usize = 100_000;
    const SIZE: usize = 10;
    let agent = Agent::start(&[]);
    let host = Netns::new("proc-turns");
    let talkers: Vec<Talker> = (0..2)
        .map(|_| {
            Talker::start(
                &host,
                "nm-turns",
                &format!(
                    "os.sched_setaffinity(0, {{0}})\n\
                     u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                     for _ in range({SENDS}):\n    \
                         u.sendto(b't' * {SIZE}, ('127.0.0.1', 9))\n    \
                         os.sched_yield()\n\
                     print('sent', flush=True)"
                ),
            )
        })
        .collect();
    let pids: Vec<u32> = talkers.iter().map(|t| t.pid).collect();
    let moves_before = memo_fields(std::mem::offset_of!(SocketMemo, moves), 8);
    let running: Vec<_> = talkers
        .into_iter()
        .map(|mut talker| {
            thread::spawn(move || {
                let said = talker.work();
                (talker, said)
            })
        })
        .collect();
    let mut last = vec![0u64; pids.len()];
    let mut reads = 0;
    while running.iter().any(|handle| !handle.is_finished()) {
        let m = Metrics::parse(&agent.get("/metrics").body);
        for (pid, last) in pids.iter().zip(&mut last) {
            let bytes = process_bytes(&m, *pid, "tx", "udp");
            assert!(
                bytes >= *last,
                "process {pid} went back from {last} to {bytes}"
            );
            *last = bytes;
        }
        reads += 1;
        thread::sleep(Duration::from_millis(50));
    }
    let mut done = Vec::new();
    for handle in running {
        let (talker, said) = handle.join().unwrap();
        assert_eq!(said, "sent");
        done.push(talker);
    }
    let m = agent.fresh_metrics();
    for pid in &pids {
        assert_eq!(
            process_bytes(&m, *pid, "tx", "udp"),
            (SENDS * SIZE) as u64,
            "process {pid}"
        );
    }
    assert_eq!(m.counter("netmon_probe_read_failures_total", &[]), 0);
    // They did take turns: CPU 0's send memo moved at least once for every send of one.
    let moves_after = memo_fields(std::mem::offset_of!(SocketMemo, moves), 8);
    let moved = (moves_after[0] - moves_before[0]) / 2;
    assert!(moved >= SENDS as u64, "{moved} moves in {reads} reads");
    for talker in done {
        talker.finish();
    }
}

/// The names of the socket hooks, the ones that count each process's bytes.
fn socket_hooks() -> impl Iterator<Item = &'static str> {
    Hook::ALL
        .into_iter()
        .filter(|hook| matches!(hook, Hook::SockSendLength | Hook::SockRecvLength))
        .map(Hook::as_str)
}

#[test]
fn socket_hooks_turned_off_are_not_loaded_and_say_so() {
    require_root();
    let quoted: Vec<String> = socket_hooks().map(|hook| format!("\"{hook}\"")).collect();
    let config = ConfigFile::new(&format!("disabled_probes = [{}]\n", quoted.join(", ")));
    let agent = Agent::start(&["--config", config.path_str()]);
    let a = Netns::new("proc-off-a");
    let b = Netns::new("proc-off-b");
    let veth = Veth::connect(&a, &b, 231);
    let mut talker = Talker::start(&a, "nm-quiet", &exchange(&veth.b_ip, 5000, 2, 100));
    let server = serve(&b, &veth.b_ip, 700, 2);
    assert_eq!(talker.work(), "700");
    assert_eq!(server.join().unwrap(), 5000);
    let m = agent.fresh_metrics();
    for probe in socket_hooks() {
        assert_eq!(
            m.value(
                "netmon_probe_attached",
                &[("probe", probe), ("method", "off")]
            ),
            Some(0.0),
            "{probe}"
        );
    }
    assert_eq!(
        m.value(
            "netmon_probe_attached",
            &[("probe", "net_dev_xmit"), ("method", "tp_btf")]
        ),
        Some(1.0)
    );
    let loaded = loaded_netmon_programs();
    assert!(
        !loaded
            .iter()
            .any(|name| name.starts_with("nm_send") || name.starts_with("nm_sockrecv")),
        "{loaded:?}"
    );
    assert!(
        loaded.iter().any(|name| name.starts_with("nm_xmit")),
        "{loaded:?}"
    );
    assert_eq!(process_bytes(&m, talker.pid, "tx", "tcp"), 0);
    let status = agent.status();
    let probe = probe_status(&status, "sock_send_length");
    assert_eq!(probe["off"], true, "{probe}");
    assert!(probe["failures"].as_array().unwrap().is_empty(), "{probe}");
    talker.finish();
}

#[test]
fn thousands_of_short_lived_processes_leave_bounded_series_and_an_exact_cgroup() {
    require_root();
    const TOP: usize = 5;
    const PROCESSES: usize = 5000;
    const BATCH: usize = 100;
    const SIZE: usize = 100;
    let config = ConfigFile::new(&format!("[processes]\ntop = {TOP}\ncommand_line = true\n"));
    let agent = Agent::start(&["--config", config.path_str()]);
    let host = Netns::new("proc-host");
    let cgroup = Cgroup::new("many");
    // Batches a few polls apart, so that the slots of the exited are freed as they go.
    let mut forker = Talker::start(
        &host,
        "nm-forker",
        &format!(
            "import time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.sendto(b'q' * {SIZE}, ('127.0.0.1', 9))\n\
             for batch in range({PROCESSES} // {BATCH}):\n    \
                 for i in range({BATCH}):\n        \
                     if os.fork() == 0:\n            \
                         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n            \
                         s.sendto(b'q' * {SIZE}, ('127.0.0.1', 9))\n            \
                         os._exit(0)\n    \
                 for i in range({BATCH}): os.wait()\n    \
                 time.sleep(0.5)\n\
             print('done', flush=True)"
        ),
    );
    cgroup.add(forker.pid);
    assert_eq!(forker.work(), "done");
    agent.fresh_metrics();
    let m = agent.fresh_metrics();
    // Every process found a slot (a batch fills a tenth of the table at most) ...
    assert_eq!(
        m.counter("netmon_probe_map_full_total", &[("map", "processes")]),
        0
    );
    // ... and the cgroup has every datagram of every exited process, and the forker's.
    assert_eq!(
        cgroup_bytes(&m, &cgroup, "tx", "udp"),
        ((PROCESSES + 1) * SIZE) as u64
    );
    // The forker sent one datagram itself: it is listed, with its command line (asked for).
    let api: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/processes").body).unwrap();
    let forker_item = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["pid"] == forker.pid)
        .unwrap_or_else(|| panic!("the forker is not listed: {api}"));
    assert_eq!(forker_item["name"], "nm-forker");
    assert!(
        forker_item["command_line"]
            .as_str()
            .is_some_and(|line| line.contains("python3 -u -c") && line.contains("nm-forker")),
        "{forker_item}"
    );
    let pids: std::collections::BTreeSet<&String> = m
        .find("netmon_process_network_bytes_total", &[])
        .into_iter()
        .filter_map(|(labels, _)| labels.get("pid"))
        .collect();
    assert!(pids.len() <= TOP, "{} processes with series", pids.len());
    assert!(
        !m.find(
            "netmon_process_network_bytes_total",
            &[("process", "other")]
        )
        .is_empty()
    );
    // Only the living keep slots: the forker's, and those of the host's other processes.
    let entries = m
        .value("netmon_probe_map_entries", &[("map", "processes")])
        .expect("the process table's slots in use");
    assert!(
        (1.0..100.0).contains(&entries),
        "{entries} slots still in use"
    );
    // Freeing the slots of the exited outdated every CPU's socket memos, so that none counts
    // in a slot that may since count another process.
    let epochs = memo_epochs();
    assert!(
        !epochs.is_empty() && epochs.iter().all(|epoch| *epoch > 0),
        "memo epochs {epochs:?}"
    );
    forker.finish();
}

/// The epoch of each of the running agent's socket memos (see `netmon-common`).
fn memo_epochs() -> Vec<u32> {
    memo_fields(std::mem::offset_of!(SocketMemo, epoch), 4)
        .into_iter()
        .map(|epoch| epoch as u32)
        .collect()
}

/// A field of each of the running agent's socket memos (at `offset`, of `width` bytes), read
/// with `bpftool` from the newest map of that name (older agents' maps may linger a moment).
fn memo_fields(offset: usize, width: usize) -> Vec<u64> {
    let maps: serde_json::Value =
        serde_json::from_str(&sh("bpftool", &["map", "show", "--json"])).unwrap();
    let id = maps
        .as_array()
        .unwrap()
        .iter()
        .filter(|map| map["name"] == "SOCKET_MEMOS")
        .filter_map(|map| map["id"].as_u64())
        .max()
        .unwrap_or_else(|| panic!("no SOCKET_MEMOS map is loaded: {maps}"))
        .to_string();
    let dump: serde_json::Value =
        serde_json::from_str(&sh("bpftool", &["map", "dump", "id", &id, "--json"])).unwrap();
    dump.as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let mut bytes = [0u8; 8];
            for (i, byte) in bytes.iter_mut().take(width).enumerate() {
                let hex = entry["value"][offset + i].as_str().unwrap();
                *byte = u8::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap();
            }
            u64::from_le_bytes(bytes)
        })
        .collect()
}
