//! Runs inside the test VM (another kernel): waits for the agent, makes known traffic in a
//! network namespace of its own (loopback only), and checks the agent's counts against the
//! kernel's. What it expects of the kernel (methods, drop reasons, the socket memos) follows
//! the kernel's release and what the agent says in `/api/v1/status`. Prints the status, the
//! method of each probe (`VMCHECK method <probe> <method>`) and the program variant, one
//! `VMCHECK ok|FAIL ...` line per check and `VMCHECK DONE`.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Metrics, closed_info, http_get};

const CONNECTIONS: u64 = 10;
const DATAGRAMS: u64 = 40;
const CLOSED_PORT_DATAGRAMS: u64 = 25;

fn check(name: &str, ok: bool, detail: String) -> bool {
    println!(
        "VMCHECK {} {name}: {detail}",
        if ok { "ok" } else { "FAIL" }
    );
    ok
}

/// Sets loopback up in the calling thread's namespace.
fn loopback_up() {
    // SAFETY: plain ioctls on a socket of our own, with a zeroed ifreq naming "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        libc::close(fd);
    }
}

/// Loopback transmit packets of the calling thread's namespace.
fn lo_tx_packets() -> u64 {
    let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .unwrap();
    let fields: Vec<u64> = line
        .split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    fields[9]
}

/// The workload, in a new network namespace held by a thread until `done` is dropped:
/// returns the namespace's inode and loopback's tx packets.
fn workload(done: std::sync::mpsc::Receiver<()>) -> (u32, u64) {
    let (result_tx, result_rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        // SAFETY: a new network namespace for this thread only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        loopback_up();
        let inode = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino() as u32;
        let listener = TcpListener::bind("127.0.0.1:7000").unwrap();
        let server = {
            let listener = listener.try_clone().unwrap();
            thread::spawn(move || {
                for _ in 0..CONNECTIONS {
                    let (mut s, _) = listener.accept().unwrap();
                    let mut b = [0u8; 4];
                    s.read_exact(&mut b).unwrap();
                    s.write_all(&b).unwrap();
                    let _ = s.read(&mut b);
                }
            })
        };
        for _ in 0..CONNECTIONS {
            let mut s = TcpStream::connect("127.0.0.1:7000").unwrap();
            s.write_all(b"ping").unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).unwrap();
        }
        server.join().unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:7100").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..DATAGRAMS {
            sender.send_to(b"data", "127.0.0.1:7100").unwrap();
        }
        for _ in 0..CLOSED_PORT_DATAGRAMS {
            sender.send_to(b"drop", "127.0.0.1:7101").unwrap();
        }
        let mut b = [0u8; 16];
        for _ in 0..DATAGRAMS {
            receiver.recv(&mut b).unwrap();
        }
        // Let TIME_WAIT and ICMP settle before reading the kernel's count.
        thread::sleep(Duration::from_millis(500));
        drop(listener);
        result_tx.send((inode, lo_tx_packets())).unwrap();
        // Keep the namespace alive until the counts are read.
        let _ = done.recv();
    });
    result_rx.recv().unwrap()
}

/// Opens that fail, and are refused, time out, or find no host.
const REFUSED: u64 = 3;
const TIMEOUTS: u64 = 2;
const UNREACHABLE: u64 = 2;
/// An address on a device whose neighbours never answer: the kernel's neighbour lookup fails
/// and it answers each SYN with an ICMP host unreachable.
const NO_HOST: &str = "10.66.0.2:7005";

/// A device with ARP on which nothing answers (a dummy device drops what it sends), and an
/// address on it, in the calling thread's namespace; one neighbour probe, so that the lookup
/// fails in 200 ms rather than 3 s.
fn silent_subnet() {
    for args in [
        &["link", "add", "nohost0", "type", "dummy"][..],
        &["link", "set", "nohost0", "arp", "on", "up"],
        &["addr", "add", "10.66.0.1/24", "dev", "nohost0"],
    ] {
        let status = std::process::Command::new("ip")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ip {args:?}");
    }
    let neigh = "/proc/sys/net/ipv4/neigh/nohost0";
    std::fs::write(format!("{neigh}/mcast_solicit"), "1").unwrap();
    std::fs::write(format!("{neigh}/retrans_time_ms"), "200").unwrap();
}

/// A connect whose first SYN a full accept queue (port 7004) drops and whose retry succeeds;
/// returns how long the application waited for it.
fn retried_connect() -> Duration {
    let listener = TcpListener::bind("127.0.0.1:7004").unwrap();
    // SAFETY: a listening socket of our own; a backlog of 0 holds one connection.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let queued = TcpStream::connect("127.0.0.1:7004").unwrap();
    let retried = thread::spawn(|| {
        let begin = Instant::now();
        let stream = TcpStream::connect("127.0.0.1:7004").unwrap();
        (stream, begin.elapsed())
    });
    thread::sleep(Duration::from_millis(300));
    let accepted = listener.accept().unwrap();
    let (stream, waited) = retried.join().unwrap();
    drop((queued, accepted, stream));
    waited
}

/// One connection to port 7003 carrying data both ways, closed on both ends: the client's
/// `tcp_info` once the kernel has closed it.
fn closed_connection() -> libc::tcp_info {
    let listener = TcpListener::bind("127.0.0.1:7003").unwrap();
    let mut client = TcpStream::connect("127.0.0.1:7003").unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&[1; 3000]).unwrap();
    server.read_exact(&mut [0; 3000]).unwrap();
    server.write_all(&[2; 1500]).unwrap();
    client.read_exact(&mut [0; 1500]).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(server.read(&mut [0; 1]).unwrap(), 0);
    server.shutdown(std::net::Shutdown::Write).unwrap();
    // The VM emulates its CPU: the closing takes longer than on the host.
    closed_info(&client, Duration::from_secs(30))
}

/// What the peer workload did that the checks compare with.
struct PeerWork {
    netns: u32,
    /// The closed connection's client `tcp_info`.
    closed: libc::tcp_info,
    /// How long the retried connect waited.
    retried: Duration,
    /// `TcpExt: ListenOverflows` of the namespace once the work is done.
    overflows: u64,
}

/// A counter of the calling thread's namespace's `/proc/net/netstat` (`TcpExt`).
fn netstat(counter: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let names = lines.iter().find(|l| l.starts_with("TcpExt:")).unwrap();
    let values = lines.iter().rfind(|l| l.starts_with("TcpExt:")).unwrap();
    let at = names.split_whitespace().position(|n| n == counter).unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// Opens by peer, in a new namespace held by a thread until `done` is dropped: refused by a
/// closed port (7001), timed out on a listener whose accept queue is full (7002: one open
/// fills it, the SYNs after it are dropped), a closed connection (7003), a retried one (7004)
/// and opens to a host that is not there.
fn peer_workload(done: std::sync::mpsc::Receiver<()>) -> PeerWork {
    let (result_tx, result_rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        // SAFETY: a new network namespace for this thread only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        loopback_up();
        // One SYN retry: a timeout takes seconds, not two minutes.
        std::fs::write("/proc/sys/net/ipv4/tcp_syn_retries", "1").unwrap();
        let inode = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino() as u32;
        for _ in 0..REFUSED {
            let err = TcpStream::connect("127.0.0.1:7001").unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        silent_subnet();
        for _ in 0..UNREACHABLE {
            let err = TcpStream::connect(NO_HOST).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH), "{err}");
        }
        let full = TcpListener::bind("127.0.0.1:7002").unwrap();
        // SAFETY: a listening socket of our own; a backlog of 0 holds one connection.
        assert_eq!(unsafe { libc::listen(full.as_raw_fd(), 0) }, 0);
        let queued = TcpStream::connect("127.0.0.1:7002").unwrap();
        // Threads made here stay in this namespace.
        let waits: Vec<_> = (0..TIMEOUTS)
            .map(|_| thread::spawn(|| TcpStream::connect("127.0.0.1:7002").unwrap_err()))
            .collect();
        for wait in waits {
            assert_eq!(wait.join().unwrap().kind(), std::io::ErrorKind::TimedOut);
        }
        drop((queued, full));
        let retried = retried_connect();
        let closed = closed_connection();
        let work = PeerWork {
            netns: inode,
            closed,
            retried,
            overflows: netstat("ListenOverflows"),
        };
        result_tx.send(work).unwrap();
        let _ = done.recv();
    });
    result_rx.recv().unwrap()
}

/// Checks the peer workload's counts by peer; whether all hold.
fn check_peers(m: &Metrics, work: &PeerWork) -> bool {
    let ns = work.netns.to_string();
    let closed = &work.closed;
    let count = |peer: &str, port: &str, result: &str| {
        let labels = [
            ("netns", ns.as_str()),
            ("role", "client"),
            ("peer", peer),
            ("port", port),
            ("result", result),
        ];
        m.counter("netmon_tcp_peer_connects_total", &labels)
    };
    let mut all = true;
    let (no_host, _) = NO_HOST.split_once(':').unwrap();
    for (peer, port, result, expected) in [
        ("127.0.0.1", "7001", "refused", REFUSED),
        ("127.0.0.1", "7002", "ok", 1),
        ("127.0.0.1", "7002", "timeout", TIMEOUTS),
        ("127.0.0.1", "7003", "ok", 1),
        ("127.0.0.1", "7004", "ok", 2),
        (no_host, "7005", "unreachable", UNREACHABLE),
    ] {
        let n = count(peer, port, result);
        all &= check(
            &format!("connects to {port} {result}"),
            n == expected,
            format!("{n} (expected {expected})"),
        );
    }
    for (direction, expected) in [
        ("sent", closed.tcpi_bytes_acked),
        ("received", closed.tcpi_bytes_received),
    ] {
        let labels = [
            ("netns", ns.as_str()),
            ("role", "client"),
            ("peer", "127.0.0.1"),
            ("port", "7003"),
            ("direction", direction),
        ];
        let n = m.counter("netmon_tcp_peer_bytes_total", &labels);
        all &= check(
            &format!("bytes {direction} of a closed connection"),
            n == expected && expected > 0,
            format!("{n} (tcp_info {expected})"),
        );
    }
    all & check_retried(m, &ns, work.retried)
}

/// The retried connect is timed from its first SYN: the time the application waited, within
/// the kernel's millisecond stamp and the other connect's round trip.
fn check_retried(m: &Metrics, ns: &str, waited: Duration) -> bool {
    let series = [
        ("netns", ns),
        ("role", "client"),
        ("peer", "127.0.0.1"),
        ("port", "7004"),
    ];
    let name = "netmon_tcp_peer_connect_duration_seconds";
    let fast = [&series[..], &[("le", "0.524288")]].concat();
    let fast = m.counter(&format!("{name}_bucket"), &fast);
    let sum = m.value(&format!("{name}_sum"), &series).unwrap_or(0.0);
    let waited = waited.as_secs_f64();
    check(
        "a retried connect timed from its first SYN",
        fast == 1 && (sum - waited).abs() < 0.05,
        format!("{fast} under 0.52 s, {sum} s timed, {waited} s waited"),
    )
}

/// The peer workload's namespace under pressure, read while it lives: its overflowing
/// accept queues as its own `netstat` counts them, and connection tracking, which this VM
/// does not load, named as missing while the rest is shown; whether both hold.
fn check_pressure(agent: SocketAddr, work: &PeerWork) -> bool {
    let ns = work.netns.to_string();
    let labels = [
        ("netns", ns.as_str()),
        ("counter", "TcpExt_ListenOverflows"),
    ];
    // The other namespaces are read in turn within a budget of each poll, which this emulated
    // CPU may spend on one namespace: the reading after the work may come a few polls on.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut shown = 0;
    while shown != work.overflows && Instant::now() < deadline {
        shown = fresh(agent).counter("netmon_netstat_total", &labels);
    }
    let mut all = check(
        "listen overflows of a namespace",
        shown == work.overflows && shown > 0,
        format!("{shown} (netstat {})", work.overflows),
    );
    let body = http_get(agent, &format!("/api/v1/pressure?netns={ns}"), &[])
        .map(|r| r.body)
        .unwrap_or_default();
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let missing = answer["namespaces"][0]["missing"]["conntrack"].as_str();
    all &= check(
        "connection tracking named missing",
        missing.is_some_and(|why| why.contains("not loaded")),
        body,
    );
    all
}

/// Waits until no traffic of namespace `ns` is reported; whether that came within 60 s.
fn forgotten(agent: SocketAddr, ns: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = fresh(agent);
        if m.find("netmon_kernel_packets_total", &[("netns", ns)])
            .is_empty()
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// A namespace that only its sockets keep alive: a thread makes it, binds two sockets there
/// and goes back to its first namespace, so no process, thread or mount holds it. Datagrams
/// between the sockets count under its inode, its loopback named by index; the namespace and
/// its counts go when the sockets close. Returns whether each step held.
fn socket_held_namespace(agent: SocketAddr) -> bool {
    const SENT: u64 = 12;
    let (inode, sockets) = thread::spawn(|| {
        let first = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
        // SAFETY: a new network namespace for this thread only, left again below.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        loopback_up();
        let inode = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino() as u32;
        let receiver = UdpSocket::bind("127.0.0.1:7200").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        // SAFETY: back to the namespace the thread started in, by a descriptor of it.
        assert_eq!(
            unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&first), libc::CLONE_NEWNET) },
            0
        );
        (inode, (receiver, sender))
    })
    .join()
    .unwrap();
    for _ in 0..SENT {
        sockets.1.send_to(b"kept", "127.0.0.1:7200").unwrap();
    }
    let ns = inode.to_string();
    let counted = |m: &Metrics, direction: &str| {
        m.counter(
            "netmon_kernel_packets_total",
            &[
                ("netns", &ns),
                ("interface", "ifindex:1"),
                ("direction", direction),
            ],
        )
    };
    let mut ok = true;
    for poll in 0..3 {
        let m = fresh(agent);
        let (tx, rx) = (counted(&m, "tx"), counted(&m, "rx"));
        ok &= check(
            &format!("a namespace only sockets hold, poll {poll}"),
            tx == SENT && rx == SENT,
            format!("tx {tx}, rx {rx} (expected {SENT} each)"),
        );
    }
    drop(sockets);
    ok & check(
        "its counts go with its teardown",
        forgotten(agent, &ns),
        format!("netns {ns}"),
    )
}

fn metrics(agent: SocketAddr) -> Metrics {
    Metrics::parse(&http_get(agent, "/metrics", &[]).unwrap().body)
}

/// Metrics of a snapshot taken after this call began: a poll that reads the kernel's symbol
/// table (the first drop sample from a new place) takes seconds in the emulated VM.
fn fresh(agent: SocketAddr) -> Metrics {
    let asked = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = metrics(agent);
        let taken = m.value("netmon_snapshot_timestamp_seconds", &[]);
        if taken >= Some(asked) || Instant::now() > deadline {
            return m;
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// The running kernel's major and minor version.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

fn main() {
    let agent: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9469".into())
        .parse()
        .unwrap();
    // The second run has the kprobe fallbacks of the state and drop hooks.
    let kprobe_run = std::env::args().nth(2).as_deref() == Some("kprobe");
    let deadline = Instant::now() + Duration::from_secs(240);
    while !http_get(agent, "/healthz", &[]).is_ok_and(|r| r.status == 200) {
        if Instant::now() > deadline {
            check("agent", false, "no answer in 240 s".into());
            println!("VMCHECK DONE");
            return;
        }
        thread::sleep(Duration::from_millis(500));
    }
    let status = http_get(agent, "/api/v1/status", &[]).unwrap().body;
    println!("VMCHECK status {status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    let probes = status["probes"].as_array().cloned().unwrap_or_default();
    for probe in &probes {
        println!(
            "VMCHECK method {} {}",
            probe["probe"].as_str().unwrap_or("?"),
            probe["method"].as_str().unwrap_or("none")
        );
    }
    let variant = status["program_variant"].clone();
    println!(
        "VMCHECK program_variant {}",
        variant.as_str().unwrap_or("none")
    );
    let probe = |name: &str| {
        probes
            .iter()
            .find(|p| p["probe"] == name)
            .cloned()
            .unwrap_or_default()
    };
    let kernel = kernel_version();
    let (done, hold) = std::sync::mpsc::channel();
    let (netns, kernel_lo_tx) = workload(hold);
    let (peers_done, peers_hold) = std::sync::mpsc::channel();
    let peer_work = peer_workload(peers_hold);
    let m = fresh(agent);
    let mut all = check_pressure(agent, &peer_work);
    drop((done, peers_done));
    let ns = netns.to_string();
    println!(
        "VMCHECK slots in use: {:?}",
        m.find("netmon_probe_map_entries", &[])
    );
    let transition = |from: &str, to: &str| {
        m.counter(
            "netmon_tcp_state_transitions_total",
            &[
                ("netns", &ns),
                ("family", "inet"),
                ("from", from),
                ("to", to),
            ],
        )
    };
    let unattached: Vec<&serde_json::Value> =
        probes.iter().filter(|p| p["method"].is_null()).collect();
    all &= check(
        "every probe attached",
        !probes.is_empty() && unattached.is_empty(),
        format!("{} probes, not attached: {unattached:?}", probes.len()),
    );
    for (from, to) in [("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED")] {
        let n = transition(from, to);
        all &= check(
            &format!("transition {from}->{to}"),
            n == CONNECTIONS,
            format!("{n} (expected {CONNECTIONS})"),
        );
    }
    let handshakes = |open: &str| {
        m.counter(
            "netmon_tcp_handshake_duration_seconds_count",
            &[("netns", &ns), ("open", open)],
        )
    };
    all &= check(
        "active handshakes",
        handshakes("active") == CONNECTIONS,
        format!("{}", handshakes("active")),
    );
    // Passive opens: both methods see SYN_RECV -> ESTABLISHED and time the handshake; the
    // kprobe of tcp_set_state cannot see LISTEN -> SYN_RECV (the kernel sets that state of a
    // new connection without it), and status says so.
    for (from, to, expected) in [
        ("SYN_RECV", "ESTABLISHED", CONNECTIONS),
        (
            "LISTEN",
            "SYN_RECV",
            if kprobe_run { 0 } else { CONNECTIONS },
        ),
    ] {
        let n = transition(from, to);
        all &= check(
            &format!("transition {from}->{to}"),
            n == expected,
            format!("{n} (expected {expected})"),
        );
    }
    all &= check(
        "passive handshakes",
        handshakes("passive") == CONNECTIONS,
        format!("{}", handshakes("passive")),
    );
    // Each open by peer: the client's to 127.0.0.1:7000, the server's from 127.0.0.1 to its
    // listening port.
    for role in ["client", "server"] {
        let labels = [
            ("netns", ns.as_str()),
            ("role", role),
            ("peer", "127.0.0.1"),
            ("port", "7000"),
            ("result", "ok"),
        ];
        let n = m.counter("netmon_tcp_peer_connects_total", &labels);
        all &= check(
            &format!("{role} connects by peer"),
            n == CONNECTIONS,
            format!("{n} (expected {CONNECTIONS})"),
        );
    }
    all &= check_peers(&m, &peer_work);
    let state_probe = probe("inet_sock_set_state");
    let limits = state_probe["limits"].as_str().unwrap_or_default();
    all &= check(
        "the state hook's limits in status",
        limits.contains("LISTEN -> SYN_RECV") == kprobe_run,
        format!("{state_probe}"),
    );
    // Kernels before 5.17 give no drop reason: the drop hook's limits say so, and its drops
    // count as "unknown".
    let drop_probe = probe("kfree_skb");
    let reason = if drop_probe["limits"]
        .as_str()
        .is_some_and(|l| l.contains("no drop reason"))
    {
        "unknown"
    } else {
        "NO_SOCKET"
    };
    let no_socket = m.counter(
        "netmon_kernel_drops_total",
        &[
            ("netns", &ns),
            ("interface", "lo"),
            ("reason", reason),
            ("protocol", "ipv4"),
        ],
    );
    let drops: Vec<String> = m
        .find("netmon_kernel_drops_total", &[("netns", &ns)])
        .iter()
        .map(|(labels, value)| format!("{labels:?}={value}"))
        .collect();
    println!("VMCHECK drops in the namespace: {drops:?}");
    all &= check(
        &format!("{reason} drops (the closed port's)"),
        no_socket == CLOSED_PORT_DATAGRAMS,
        format!("{no_socket} (expected {CLOSED_PORT_DATAGRAMS})"),
    );
    // Each drop was sampled (the default budget is well above them), with its flow and the
    // function that freed it, under this kernel's own reason names.
    let recent = http_get(
        agent,
        &format!("/api/v1/drops/recent?netns={ns}&port=7101"),
        &[],
    )
    .unwrap()
    .body;
    let samples: Vec<serde_json::Value> = serde_json::from_str::<serde_json::Value>(&recent)
        .ok()
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default();
    let described = samples.iter().all(|s| {
        s["reason"] == reason
            && s["protocol"] == "udp"
            && s["destination"] == "127.0.0.1"
            && s["destination_port"] == 7101
            && s["location"].as_str().is_some_and(|l| {
                // The drop function's kprobe cannot tell where it was called from.
                if kprobe_run {
                    l.is_empty()
                } else {
                    l.contains("+0x")
                }
            })
    });
    println!("VMCHECK first drop sample: {:?}", samples.first());
    all &= check(
        "drop samples",
        samples.len() as u64 == CLOSED_PORT_DATAGRAMS && described,
        format!(
            "{} (expected {CLOSED_PORT_DATAGRAMS}), all described: {described}",
            samples.len()
        ),
    );
    let lo_tx = m.counter(
        "netmon_kernel_packets_total",
        &[("netns", &ns), ("interface", "lo"), ("direction", "tx")],
    );
    all &= check(
        "loopback tx packets",
        lo_tx == kernel_lo_tx,
        format!("{lo_tx} (kernel {kernel_lo_tx})"),
    );
    // The socket hooks: the tracepoints since Linux 6.3, fexit programs on the inet send and
    // receive functions before.
    let socket_method = if kernel >= (6, 3) { "tp_btf" } else { "fexit" };
    for name in ["sock_send_length", "sock_recv_length"] {
        let method = probe(name)["method"].clone();
        all &= check(
            &format!("{name} method on Linux {}.{}", kernel.0, kernel.1),
            method == socket_method,
            format!("{method} (expected {socket_method})"),
        );
    }
    // This process's own datagrams, counted by the socket hooks, whichever method. Its TCP
    // also carries its requests to the agent; its UDP is only the workload's.
    let pid = std::process::id().to_string();
    let udp = |direction: &str| {
        m.counter(
            "netmon_process_network_bytes_total",
            &[("pid", &pid), ("direction", direction), ("protocol", "udp")],
        )
    };
    let (sent, received) = ((DATAGRAMS + CLOSED_PORT_DATAGRAMS) * 4, DATAGRAMS * 4);
    all &= check(
        "process udp bytes",
        udp("tx") == sent && udp("rx") == received,
        format!(
            "tx {} (expected {sent}), rx {} (expected {received})",
            udp("tx"),
            udp("rx")
        ),
    );
    let watch = status["namespace_watch"].clone();
    all &= check(
        "namespace teardown watched",
        watch == "fentry" || watch == "kprobe",
        format!("{watch}"),
    );
    // The programs take bpf_loop where the kernel has it (5.17), a bounded walk before.
    let expected_variant = if kernel >= (5, 17) {
        "bpf_loop"
    } else {
        "bounded_walk"
    };
    all &= check(
        &format!("program variant on Linux {}.{}", kernel.0, kernel.1),
        variant == expected_variant,
        format!("{variant} (expected {expected_variant})"),
    );
    // With bpf_loop the socket hooks keep memos (thread exits and cgroup moves are
    // watched); the bounded walk has none, and status says why.
    let memo_error = status["socket_memo_error"].clone();
    if variant == "bounded_walk" {
        all &= check(
            "socket memos off without bpf_loop, and status says why",
            memo_error
                .as_str()
                .is_some_and(|e| e.contains("Linux >= 5.17")),
            format!("{memo_error}"),
        );
    } else {
        all &= check(
            "thread exits and cgroup moves watched (socket memos on)",
            memo_error.is_null(),
            format!("{memo_error}"),
        );
    }
    // Kernels since 5.8 walk the processes' file tables for the holders of sockets.
    let owners = status["socket_owners_source"].clone();
    all &= check(
        "socket holders found by the file iterator",
        owners == "file_iterator",
        format!("{owners}"),
    );
    // The workload's namespace went with its thread: its counts go at the kernel's word, and
    // its inode is free again (the next namespace may well take it).
    all &= check(
        "the workload's namespace is forgotten at its teardown",
        forgotten(agent, &ns),
        format!("netns {ns}"),
    );
    all &= socket_held_namespace(agent);
    check("all", all, String::new());
    println!("VMCHECK DONE");
}
