//! Who cannot reach whom: each TCP open's result by remote endpoint, against what the
//! connecting application was told and what the kernel's own SNMP counters say, with every
//! method the state hook has; and the folding that keeps a busy namespace's series bounded.
use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    os::fd::AsRawFd,
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{
    Agent, ConfigFile, LinkedNamespaces, Metrics, closed_info, require_root, sh, tcp_info,
};

/// The ports of `b` the workload connects to: a listener, a closed port, one whose SYNs are
/// dropped and one that answers with an ICMP host unreachable.
const LISTENING: u16 = 5432;
const CLOSED: u16 = 5435;
const DROPPED: u16 = 5433;
const REJECTED: u16 = 5434;
/// Connects of each kind.
const OK: u64 = 5;
const REFUSED: u64 = 3;
const TIMEOUT: u64 = 2;
const UNREACHABLE: u64 = 2;

/// `b`'s filter: SYNs to one port dropped, to another rejected with ICMP host unreachable.
const RULES: &str = "table ip netmon_peers {
    chain input {
        type filter hook input priority 0;
        tcp dport 5433 drop
        tcp dport 5434 reject with icmp type host-unreachable
    }
}
";

/// Runs the workload from `a` to `b`, checking each connect's error as the application sees
/// it. The successful connections are closed on both sides before the failing ones start: a
/// state change in a softirq (a reset, an ICMP error) that interrupts the state hook's program
/// on the same CPU (a close in process context) is skipped by the kernel, and only counted as
/// missed.
fn connect_workload(pair: &LinkedNamespaces) {
    let b_ip = pair.veth.b_ip.clone();
    let listening = format!("{b_ip}:{LISTENING}");
    let listener = pair.b.run(move || TcpListener::bind(listening).unwrap());
    let server = thread::spawn(move || {
        for _ in 0..OK {
            drop(listener.accept().unwrap());
        }
    });
    let to = b_ip.clone();
    pair.a.run(move || {
        for _ in 0..OK {
            drop(TcpStream::connect((to.as_str(), LISTENING)).unwrap());
        }
    });
    server.join().unwrap();
    thread::sleep(Duration::from_millis(200));
    pair.a.run(move || failing_connects(&b_ip));
}

/// The connects that fail, from the namespace the caller is in.
fn failing_connects(b_ip: &str) {
    let connect = |port: u16| TcpStream::connect((b_ip, port));
    for _ in 0..REFUSED {
        let err = connect(CLOSED).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    }
    for _ in 0..UNREACHABLE {
        let err = connect(REJECTED).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH), "{err}");
    }
    // The SYN retries take seconds: the timeouts wait side by side.
    let waits: Vec<_> = (0..TIMEOUT)
        .map(|_| {
            let to = b_ip.to_string();
            thread::spawn(move || {
                let err = TcpStream::connect((to.as_str(), DROPPED)).unwrap_err();
                err.raw_os_error()
            })
        })
        .collect();
    for wait in waits {
        assert_eq!(wait.join().unwrap(), Some(libc::ETIMEDOUT));
    }
}

/// The state hook's events the kernel skipped, as netmon reports them; equal to the kernel's
/// own count for the attached program (`bpftool prog show`, which names the count when there
/// is one).
fn missed(m: &Metrics, program: &str) -> u64 {
    let reported = m.counter(
        "netmon_probe_missed_total",
        &[("probe", "inet_sock_set_state")],
    );
    let shown = sh("bpftool", &["prog", "show", "name", program, "--json"]);
    let kernel: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let kernel = kernel["recursion_misses"].as_u64().unwrap_or(0);
    assert!(reported <= kernel, "netmon {reported}, the kernel {kernel}");
    reported
}

/// Every result counted by peer, equal to the workload and to the kernel's SNMP counters, but
/// for what the kernel skipped and counted as missed (none, unless other TCP work on the host
/// nests with the workload's); `method` pins the state hook's attach method.
fn results_match_the_kernel(method: Option<&str>, tag: &str, subnet: u8) {
    require_root();
    let text = method.map_or(String::new(), |m| {
        format!("[probe_methods]\ninet_sock_set_state = \"{m}\"\n")
    });
    let config = ConfigFile::new(&text);
    let agent = Agent::start(&["--config", config.path_str()]);
    let pair = LinkedNamespaces::new(tag, subnet);
    // One SYN retry: a timeout takes 3 s, not 127.
    pair.a
        .exec(&["sysctl", "-qw", "net.ipv4.tcp_syn_retries=1"]);
    let rules = ConfigFile::with_extension(RULES, "nft");
    pair.b.exec(&["nft", "-f", rules.path_str()]);
    let program = match method.unwrap_or("tp_btf") {
        "tp_btf" => "nm_state_btf",
        "raw_tp" => "nm_state_raw",
        _ => "nm_state_tp",
    };
    let before = missed(&agent.fresh_metrics(), program);
    connect_workload(&pair);
    let m = agent.fresh_metrics();
    let lost = missed(&m, program) - before;
    if let Some(method) = method {
        let attached = [("probe", "inet_sock_set_state"), ("method", method)];
        assert_eq!(m.value("netmon_probe_attached", &attached), Some(1.0));
    }
    let (na, nb) = (pair.netns_a(), pair.netns_b());
    let b_ip = pair.veth.b_ip.as_str();
    let client = |port: u16, result: &str| {
        let port = port.to_string();
        let labels = [
            ("netns", na.as_str()),
            ("role", "client"),
            ("peer", b_ip),
            ("port", port.as_str()),
            ("result", result),
        ];
        m.counter("netmon_tcp_peer_connects_total", &labels)
    };
    let counted = || {
        let families = [
            "netmon_tcp_peer_connects_total",
            "netmon_tcp_state_transitions_total",
        ];
        let series = families.map(|family| m.find(family, &[("netns", na.as_str())]));
        format!("{series:?}")
    };
    let exact = |count: u64, expected: u64| {
        let within = count <= expected && count + lost >= expected;
        assert!(
            within,
            "{count} of {expected}, {lost} missed: {}",
            counted()
        );
    };
    exact(client(LISTENING, "ok"), OK);
    exact(client(CLOSED, "refused"), REFUSED);
    exact(client(DROPPED, "timeout"), TIMEOUT);
    exact(client(REJECTED, "unreachable"), UNREACHABLE);
    // Nothing else, and what the kernel counted: every open, and every failed one.
    let of_a = |result: Option<&str>| -> u64 {
        let mut labels = vec![("netns", na.as_str()), ("role", "client")];
        labels.extend(result.map(|r| ("result", r)));
        let series = m.find("netmon_tcp_peer_connects_total", &labels);
        series.iter().map(|(_, v)| *v as u64).sum()
    };
    exact(of_a(None), pair.a.nstat("TcpActiveOpens"));
    exact(
        of_a(None) - of_a(Some("ok")),
        pair.a.nstat("TcpAttemptFails"),
    );
    exact(of_a(None), OK + REFUSED + TIMEOUT + UNREACHABLE);
    let server = [
        ("netns", nb.as_str()),
        ("role", "server"),
        ("peer", pair.veth.a_ip.as_str()),
        ("port", "5432"),
        ("result", "ok"),
    ];
    exact(m.counter("netmon_tcp_peer_connects_total", &server), OK);
    assert_eq!(OK, pair.b.nstat("TcpPassiveOpens"));
    // Every retransmit of `a` is a SYN (how many a failing open takes is the kernel's
    // choice: an ICMP unreachable may bring one at once), counted as its socket closed.
    let retransmits = m.find(
        "netmon_tcp_peer_retransmits_total",
        &[("netns", na.as_str())],
    );
    let retransmits = retransmits.iter().map(|(_, v)| *v as u64).sum();
    exact(retransmits, pair.a.nstat("TcpRetransSegs"));
    let to_dropped = [("netns", na.as_str()), ("port", "5433")];
    assert!(m.counter("netmon_tcp_peer_retransmits_total", &to_dropped) >= TIMEOUT);
    let times = [("netns", na.as_str()), ("port", "5432")];
    exact(
        m.counter("netmon_tcp_peer_connect_duration_seconds_count", &times),
        OK,
    );
}

#[test]
fn results_by_peer_match_the_kernel() {
    results_match_the_kernel(None, "peers-best", 234);
}

#[test]
fn results_by_peer_match_the_kernel_with_raw_tracepoints() {
    results_match_the_kernel(Some("raw_tp"), "peers-raw", 235);
}

#[test]
fn results_by_peer_match_the_kernel_with_classic_tracepoints() {
    results_match_the_kernel(Some("tracepoint"), "peers-tp", 237);
}

/// 300 peers with `top = 20`: 20 series of their own and `other`, the sum the namespace's
/// total; the API lists the same, failing first.
#[test]
fn past_top_peers_fold_into_other_and_keep_the_totals() {
    require_root();
    const PEERS: u16 = 300;
    let config = ConfigFile::new("[peers]\ntop = 20\n");
    let agent = Agent::start(&["--config", config.path_str()]);
    let pair = LinkedNamespaces::new("peers-many", 244);
    // Every address of 10.244.64.0/22 is `b`'s own, behind its end of the veth.
    pair.b
        .ip(&["route", "add", "local", "10.244.64.0/22", "dev", "lo"]);
    let via = pair.veth.b_ip.clone();
    pair.a.ip(&["route", "add", "10.244.64.0/22", "via", &via]);
    pair.a.run(|| {
        for host in 1..=PEERS {
            let peer = format!("10.244.{}.{}:9", 64 + host / 256, host % 256);
            let refused =
                TcpStream::connect_timeout(&peer.parse().unwrap(), Duration::from_secs(5));
            assert_eq!(refused.unwrap_err().kind(), ErrorKind::ConnectionRefused);
        }
    });
    let m = agent.fresh_metrics();
    let na = pair.netns_a();
    let labels = [("netns", na.as_str()), ("result", "refused")];
    let series = m.find("netmon_tcp_peer_connects_total", &labels);
    assert_eq!(series.len(), 21, "{series:?}");
    let total: f64 = series.iter().map(|(_, v)| v).sum();
    assert_eq!(total as u64, u64::from(PEERS));
    assert_eq!(total as u64, pair.a.nstat("TcpAttemptFails"));
    let other = [
        ("netns", na.as_str()),
        ("peer", "other"),
        ("result", "refused"),
    ];
    assert_eq!(m.counter("netmon_tcp_peer_connects_total", &other), 280);
    check_api(&agent, &na, &m);
}

/// `/api/v1/tcp/peers` lists what the metrics show, filtered and failing first.
fn check_api(agent: &Agent, netns: &str, m: &Metrics) {
    let body = agent
        .get(&format!("/api/v1/tcp/peers?netns={netns}&result=refused"))
        .body;
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let items = answer["items"].as_array().unwrap();
    assert_eq!(items.len(), 21);
    assert_eq!(items[0]["peer"], "other");
    assert_eq!(items[0]["results"]["refused"], 280);
    for item in items {
        let port = item["port"].as_str().unwrap();
        let labels = [
            ("netns", netns),
            ("peer", item["peer"].as_str().unwrap()),
            ("port", port),
            ("result", "refused"),
        ];
        let counted = m.counter("netmon_tcp_peer_connects_total", &labels);
        assert_eq!(item["results"]["refused"], counted, "{item}");
    }
    let refused = agent.get("/api/v1/tcp/peers?result=lost");
    assert_eq!(refused.status, 400, "{}", refused.body);
}

/// The `tcp_info` of an open socket once everything it sent is acknowledged (the peer may
/// delay its last ACK): it does not change while the connection is idle.
fn idle_info(socket: &TcpStream) -> libc::tcp_info {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = tcp_info(socket);
        if info.tcpi_unacked == 0 {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "{} unacknowledged",
            info.tcpi_unacked
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// How long a closing connection may take to be closed on both ends.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// Bytes each way of the connections whose totals are checked.
const REQUEST: usize = 70_000;
const RESPONSE: usize = 123_456;

/// A connection from `a` to port `port` of `b` that carried a request and a response: its
/// client and server ends, and the listener, which tells the server end from a client.
fn exchange(pair: &LinkedNamespaces, port: u16) -> (TcpStream, TcpStream, TcpListener) {
    let address = format!("{}:{port}", pair.veth.b_ip);
    let listener = pair.b.run({
        let address = address.clone();
        move || TcpListener::bind(address).unwrap()
    });
    let mut client = pair.a.run(move || TcpStream::connect(address).unwrap());
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&vec![1; REQUEST]).unwrap();
    server.read_exact(&mut vec![0; REQUEST]).unwrap();
    server.write_all(&vec![7; RESPONSE]).unwrap();
    client.read_exact(&mut vec![0; RESPONSE]).unwrap();
    (client, server, listener)
}

/// Closes both ends of a connection, the client first, and holds them until the kernel has
/// closed them: their `tcp_info` as they closed.
fn close(client: &TcpStream, server: &mut TcpStream) -> (libc::tcp_info, libc::tcp_info) {
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(server.read(&mut [0; 1]).unwrap(), 0);
    server.shutdown(Shutdown::Write).unwrap();
    (
        closed_info(client, CLOSE_LIMIT),
        closed_info(server, CLOSE_LIMIT),
    )
}

/// Checks one end's series against its socket's `tcp_info`; `sockets` says whether the
/// connection is open or closed.
fn check_totals(m: &Metrics, series: [(&str, &str); 4], info: &libc::tcp_info, sockets: &str) {
    let role = series[1].1;
    let bytes = |direction: &'static str| {
        let labels = [&series[..], &[("direction", direction)]].concat();
        m.counter("netmon_tcp_peer_bytes_total", &labels)
    };
    assert_eq!(bytes("sent"), info.tcpi_bytes_acked, "{role} {sockets}");
    assert_eq!(
        bytes("received"),
        info.tcpi_bytes_received,
        "{role} {sockets}"
    );
    let retransmits = m.counter("netmon_tcp_peer_retransmits_total", &series);
    assert_eq!(retransmits, u64::from(info.tcpi_total_retrans), "{role}");
    let rtt = [&series[..], &[("sockets", sockets)]].concat();
    assert_eq!(m.counter("netmon_tcp_peer_rtt_seconds_count", &rtt), 1);
    let rtt = m.value("netmon_tcp_peer_rtt_seconds_sum", &rtt).unwrap();
    assert_eq!(
        (rtt * 1e6).round() as u32,
        info.tcpi_rtt,
        "{role} {sockets}"
    );
    let opened = m.counter("netmon_tcp_peer_connect_duration_seconds_count", &series);
    assert_eq!(opened, 1, "{role} {sockets}");
    let open = u64::from(sockets == "open");
    assert_eq!(
        m.counter("netmon_tcp_peer_connections", &series),
        open,
        "{role}"
    );
}

/// The totals of a closed connection (from the state hook as it closed) and of an open one,
/// by peer on both ends, equal the kernel's `tcp_info` of their sockets: bytes acknowledged
/// and received, retransmits, smoothed round trip. The agent runs in `a`, whose open
/// connections the socket iterator counts; those of `b` come from the socket dump.
#[test]
fn totals_of_closed_and_open_connections_equal_their_tcp_info() {
    require_root();
    let pair = LinkedNamespaces::new("peers-totals", 238);
    let agent = Agent::builder().inside(&pair.a).start();
    assert_eq!(agent.status()["connections_source"], "socket_iterator");
    let (client, mut server, _listener) = exchange(&pair, 7000);
    let (client_closed, server_closed) = close(&client, &mut server);
    let (open_client, open_server, _listening) = exchange(&pair, 7001);
    let (client_open, server_open) = (idle_info(&open_client), idle_info(&open_server));
    let m = agent.fresh_metrics();
    let (na, nb) = (pair.netns_a(), pair.netns_b());
    let (a_ip, b_ip) = (pair.veth.a_ip.as_str(), pair.veth.b_ip.as_str());
    let ends = [
        (na.as_str(), "client", b_ip, [&client_closed, &client_open]),
        (nb.as_str(), "server", a_ip, [&server_closed, &server_open]),
    ];
    for (netns, role, peer, [closed, open]) in ends {
        let series = |port| {
            [
                ("netns", netns),
                ("role", role),
                ("peer", peer),
                ("port", port),
            ]
        };
        check_totals(&m, series("7000"), closed, "closed");
        check_totals(&m, series("7001"), open, "open");
    }
    // The request and the response, and what the kernel counts beside them (SYN and FIN).
    assert!(client_closed.tcpi_bytes_acked >= REQUEST as u64);
    assert!(client_closed.tcpi_bytes_received >= RESPONSE as u64);
}

/// `b`'s IPv6 filter: connects to one port rejected with an ICMPv6 address unreachable.
const RULES_V6: &str = "table ip6 netmon_peers_v6 {
    chain input {
        type filter hook input priority 0;
        tcp dport 6002 reject with icmpv6 type addr-unreachable
    }
}
";

/// IPv6 peers are counted by their address, each result exact against the application and
/// the kernel, and a closed connection's totals equal its `tcp_info`.
#[test]
fn ipv6_peers_are_counted_by_their_address() {
    require_root();
    let agent = Agent::start(&[]);
    let before = missed(&agent.fresh_metrics(), "nm_state_btf");
    let pair = LinkedNamespaces::new("peers-v6", 239);
    let (a_ip, b_ip) = ("fd00:239::1", "fd00:239::2");
    for (ns, dev, ip) in [
        (&pair.a, &pair.veth.a_dev, a_ip),
        (&pair.b, &pair.veth.b_dev, b_ip),
    ] {
        // Test namespaces start without IPv6 (no router solicitations on their links).
        let enable = format!("net.ipv6.conf.{dev}.disable_ipv6=0");
        ns.exec(&["sysctl", "-qw", &enable]);
        let address = format!("{ip}/64");
        ns.ip(&["-6", "addr", "add", &address, "dev", dev, "nodad"]);
    }
    let rules = ConfigFile::with_extension(RULES_V6, "nft");
    pair.b.exec(&["nft", "-f", rules.path_str()]);
    let listener = pair.b.run(move || TcpListener::bind((b_ip, 6000)).unwrap());
    let (mut client, mut server) = pair.a.run(move || {
        for _ in 0..2 {
            let err = TcpStream::connect((b_ip, 6001)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
        }
        for _ in 0..2 {
            let err = TcpStream::connect((b_ip, 6002)).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH), "{err}");
        }
        let client = TcpStream::connect((b_ip, 6000)).unwrap();
        (client, listener.accept().unwrap().0)
    });
    client.write_all(&[1; 5000]).unwrap();
    server.read_exact(&mut [0; 5000]).unwrap();
    let (closed, _) = close(&client, &mut server);
    let m = agent.fresh_metrics();
    let na = pair.netns_a();
    let to = |port: &'static str| {
        [
            ("netns", na.as_str()),
            ("role", "client"),
            ("peer", b_ip),
            ("port", port),
        ]
    };
    let result = |port, result| {
        let labels = [&to(port)[..], &[("result", result)]].concat();
        m.counter("netmon_tcp_peer_connects_total", &labels)
    };
    // Exact, but for what the kernel skipped and counted (see `results_match_the_kernel`).
    let lost = missed(&m, "nm_state_btf") - before;
    let exact = |count: u64, expected: u64| {
        assert!(
            count <= expected && count + lost >= expected,
            "{count} of {expected}"
        );
    };
    exact(result("6001", "refused"), 2);
    exact(result("6002", "unreachable"), 2);
    exact(result("6000", "ok"), 1);
    let all = m.find("netmon_tcp_peer_connects_total", &[("netns", na.as_str())]);
    exact(
        all.iter().map(|(_, v)| *v as u64).sum(),
        pair.a.nstat("TcpActiveOpens"),
    );
    let sent = [&to("6000")[..], &[("direction", "sent")]].concat();
    let sent = m.counter("netmon_tcp_peer_bytes_total", &sent);
    assert_eq!(sent, closed.tcpi_bytes_acked);
    let server = [
        ("netns", pair.netns_b()),
        ("role", "server".to_string()),
        ("peer", a_ip.to_string()),
        ("port", "6000".to_string()),
        ("result", "ok".to_string()),
    ];
    let server: Vec<(&str, &str)> = server.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(m.counter("netmon_tcp_peer_connects_total", &server), 1);
}

/// A connect whose first SYN the listener drops (its accept queue is full until the
/// application accepts) succeeds on the retransmitted SYN: its time runs from the first SYN,
/// as the application waited, and its retry is counted as the peer's retransmit.
/// `method` pins the attach method of both hooks it takes: the retransmit hook notes when the
/// first SYN left, the state hook times the open.
fn a_retried_syn_is_timed_from_the_first(method: Option<&str>, tag: &str, subnet: u8) {
    require_root();
    let text = method.map_or(String::new(), |m| {
        format!("[probe_methods]\ninet_sock_set_state = \"{m}\"\ntcp_retransmit_skb = \"{m}\"\n")
    });
    let config = ConfigFile::new(&text);
    let agent = Agent::start(&["--config", config.path_str()]);
    let pair = LinkedNamespaces::new(tag, subnet);
    let address: std::net::SocketAddr = format!("{}:7100", pair.veth.b_ip).parse().unwrap();
    let listener = pair.b.run(move || TcpListener::bind(address).unwrap());
    // SAFETY: a listening socket of the test's own; a backlog of 0 holds one connection.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let (first, second) = pair.a.run(move || {
        let first = TcpStream::connect(address).unwrap();
        let second = thread::spawn(move || {
            let begin = Instant::now();
            (TcpStream::connect(address).unwrap(), begin.elapsed())
        });
        (first, second)
    });
    // The second connect's SYN finds the queue full; its retry finds room.
    thread::sleep(Duration::from_millis(300));
    let accepted = listener.accept().unwrap();
    let (second, waited) = second.join().unwrap();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    let retried = idle_info(&second);
    assert_eq!(retried.tcpi_total_retrans, 1);
    let m = agent.fresh_metrics();
    let na = pair.netns_a();
    let series = [
        ("netns", na.as_str()),
        ("role", "client"),
        ("peer", pair.veth.b_ip.as_str()),
        ("port", "7100"),
    ];
    let name = "netmon_tcp_peer_connect_duration_seconds";
    assert_eq!(m.counter(&format!("{name}_count"), &series), 2);
    // The first connect takes a round trip on a veth; the second waited for its retry.
    let fast = [&series[..], &[("le", "0.524288")]].concat();
    assert_eq!(m.counter(&format!("{name}_bucket"), &fast), 1);
    let slow = [&series[..], &[("le", "2.097152")]].concat();
    assert_eq!(m.counter(&format!("{name}_bucket"), &slow), 2);
    // The sum is the retried connect's time, within the kernel's millisecond stamp and the
    // first connect's round trip, of the time the application waited.
    let sum = m.value(&format!("{name}_sum"), &series).unwrap();
    let waited = waited.as_secs_f64();
    assert!(
        (sum - waited).abs() < 0.005,
        "{sum} s timed, {waited} s waited"
    );
    assert_eq!(m.counter("netmon_tcp_peer_retransmits_total", &series), 1);
    drop((first, second, accepted));
}

#[test]
fn a_retried_syn_is_timed_from_the_first_and_is_a_retransmit() {
    a_retried_syn_is_timed_from_the_first(None, "peers-retry", 236);
}

#[test]
fn a_retried_syn_is_timed_from_the_first_with_raw_tracepoints() {
    a_retried_syn_is_timed_from_the_first(Some("raw_tp"), "peers-retry-raw", 247);
}

#[test]
fn a_retried_syn_is_timed_from_the_first_with_classic_tracepoints() {
    a_retried_syn_is_timed_from_the_first(Some("tracepoint"), "peers-retry-tp", 252);
}
