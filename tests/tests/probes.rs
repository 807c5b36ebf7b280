//! The kernel probes against the kernel's own counters, in the tests' own namespaces: every
//! hook by every method, and the tables they count in. (Namespaces coming and going:
//! tests/tests/namespaces.rs.)
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use netmon::model::probes::{AttachMethod, Hook};
use netmon_tests::{
    Agent, ConfigFile, LinkedNamespaces, Metrics, Netns, probe_status, require_root, send_udp,
};

const ETH_HEADER: u64 = 14;

/// UDP across the pair: both ends' packet counts equal the kernel's; bytes equal on transmit
/// and differ by exactly the Ethernet header per packet on receive.
fn check_udp_counts(agent: &Agent, pair: &LinkedNamespaces) {
    const COUNT: u64 = 150;
    let receiver = pair.udp_receiver(9000);
    let (a_dev, b_dev) = (&pair.veth.a_dev, &pair.veth.b_dev);
    let (ka0, kb0) = (pair.a.link_stats(a_dev), pair.b.link_stats(b_dev));
    let m0 = agent.fresh_metrics();
    send_udp(
        &pair.a,
        &pair.veth.a_ip,
        &format!("{}:9000", pair.veth.b_ip),
        COUNT,
        64,
    );
    let mut buf = [0u8; 2048];
    for _ in 0..COUNT {
        receiver.recv(&mut buf).expect("every datagram arrives");
    }
    let (ka1, kb1) = (pair.a.link_stats(a_dev), pair.b.link_stats(b_dev));
    let m1 = agent.fresh_metrics();
    let (na, nb) = (pair.netns_a(), pair.netns_b());
    let delta = |family, netns: &str, dev, dir| {
        m1.traffic(family, netns, dev, dir) - m0.traffic(family, netns, dev, dir)
    };
    let packets = "netmon_kernel_packets_total";
    let bytes = "netmon_kernel_bytes_total";
    assert_eq!(ka1.tx_packets - ka0.tx_packets, COUNT);
    assert_eq!(
        delta(packets, &na, a_dev, "tx"),
        ka1.tx_packets - ka0.tx_packets
    );
    assert_eq!(
        delta(packets, &nb, b_dev, "rx"),
        kb1.rx_packets - kb0.rx_packets
    );
    assert_eq!(delta(bytes, &na, a_dev, "tx"), ka1.tx_bytes - ka0.tx_bytes);
    assert_eq!(
        delta(bytes, &nb, b_dev, "rx"),
        kb1.rx_bytes - kb0.rx_bytes - COUNT * ETH_HEADER
    );
}

/// A firewall rule dropping M datagrams gives M `NETFILTER_DROP` drops on the receiving
/// interface and namespace; datagrams to a closed port give `NO_SOCKET` drops.
fn check_drops(agent: &Agent, pair: &LinkedNamespaces) {
    const FIREWALLED: u64 = 40;
    const CLOSED: u64 = 25;
    pair.b.exec(&[
        "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9100", "-j", "DROP",
    ]);
    let nb = pair.netns_b();
    let dev = pair.veth.b_dev.as_str();
    let drops = |m: &Metrics, reason: &str| {
        m.counter(
            "netmon_kernel_drops_total",
            &[
                ("netns", &nb),
                ("interface", dev),
                ("reason", reason),
                ("protocol", "ipv4"),
            ],
        )
    };
    let (netfilter, no_socket) = ("NETFILTER_DROP", "NO_SOCKET");
    let m0 = agent.fresh_metrics();
    let to = format!("{}:9100", pair.veth.b_ip);
    send_udp(&pair.a, &pair.veth.a_ip, &to, FIREWALLED, 32);
    thread::sleep(Duration::from_millis(100));
    let m1 = agent.fresh_metrics();
    let to = format!("{}:9101", pair.veth.b_ip);
    send_udp(&pair.a, &pair.veth.a_ip, &to, CLOSED, 32);
    thread::sleep(Duration::from_millis(100));
    let m2 = agent.fresh_metrics();
    assert_eq!(drops(&m1, netfilter) - drops(&m0, netfilter), FIREWALLED);
    assert_eq!(drops(&m2, no_socket) - drops(&m1, no_socket), CLOSED);
}

/// K TCP connections opened, used and closed between the namespaces: exact transition counts
/// and K handshake samples on each side; a connection to a closed port counts a reset.
fn check_tcp(agent: &Agent, pair: &LinkedNamespaces) {
    const K: u64 = 12;
    let server_addr = format!("{}:8000", pair.veth.b_ip);
    let m0 = agent.fresh_metrics();
    let listener = {
        let addr = server_addr.clone();
        pair.b.run(move || TcpListener::bind(addr).unwrap())
    };
    let server = thread::spawn(move || {
        for _ in 0..K {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).unwrap();
            stream.write_all(&buf).unwrap();
            // Wait for the client's close, then close: an orderly four-way shutdown.
            let _ = stream.read(&mut buf);
        }
    });
    let (to, closed) = (server_addr.clone(), format!("{}:8001", pair.veth.b_ip));
    let refused = pair.a.run(move || {
        for _ in 0..K {
            let mut stream = TcpStream::connect(&to).unwrap();
            stream.write_all(b"hello").unwrap();
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).unwrap();
        }
        TcpStream::connect(&closed).is_err()
    });
    assert!(refused, "the closed port refuses");
    server.join().unwrap();
    thread::sleep(Duration::from_millis(300));
    let m1 = agent.fresh_metrics();

    let (na, nb) = (pair.netns_a(), pair.netns_b());
    let transition = |netns: &str, from: &str, to: &str| {
        let labels = [
            ("netns", netns),
            ("family", "inet"),
            ("from", from),
            ("to", to),
        ];
        m1.counter("netmon_tcp_state_transitions_total", &labels)
            - m0.counter("netmon_tcp_state_transitions_total", &labels)
    };
    // The client: K connections plus the refused one.
    assert_eq!(transition(&na, "CLOSE", "SYN_SENT"), K + 1);
    assert_eq!(transition(&na, "SYN_SENT", "ESTABLISHED"), K);
    assert_eq!(transition(&na, "SYN_SENT", "CLOSE"), 1);
    assert_eq!(transition(&na, "ESTABLISHED", "FIN_WAIT1"), K);
    assert_eq!(transition(&na, "FIN_WAIT1", "FIN_WAIT2"), K);
    // The server: its listener, then K passive opens closed by the peer.
    assert_eq!(transition(&nb, "CLOSE", "LISTEN"), 1);
    assert_eq!(transition(&nb, "SYN_RECV", "ESTABLISHED"), K);
    assert_eq!(transition(&nb, "ESTABLISHED", "CLOSE_WAIT"), K);
    assert_eq!(transition(&nb, "CLOSE_WAIT", "LAST_ACK"), K);
    assert_eq!(transition(&nb, "LAST_ACK", "CLOSE"), K);
    // The listener closes when the server thread drops it.
    assert_eq!(transition(&nb, "LISTEN", "CLOSE"), 1);

    let handshakes = |m: &Metrics, netns: &str, open: &str| {
        m.counter(
            "netmon_tcp_handshake_duration_seconds_count",
            &[("netns", netns), ("open", open)],
        )
    };
    assert_eq!(
        handshakes(&m1, &na, "active") - handshakes(&m0, &na, "active"),
        K
    );
    assert_eq!(
        handshakes(&m1, &nb, "passive") - handshakes(&m0, &nb, "passive"),
        K
    );
    check_handshake_histogram(&m0, &m1, &na, "active", K);
    check_handshake_histogram(&m0, &m1, &nb, "passive", K);
    // The refusal: one reset sent by the server's namespace (in answer to a SYN for no
    // socket), one received by the client's; none the other way.
    let resets = |netns: &str, direction| {
        let labels = [("netns", netns), ("direction", direction)];
        m1.counter("netmon_tcp_resets_total", &labels)
            - m0.counter("netmon_tcp_resets_total", &labels)
    };
    assert_eq!(
        [
            resets(&nb, "sent"),
            resets(&na, "received"),
            resets(&na, "sent"),
            resets(&nb, "received")
        ],
        [1, 1, 0, 0]
    );
    // Each open by peer: the client's to the server's address and port, the server's from
    // the client's address to its listening port.
    let peer = |netns: &str, role, peer: &str, port, result| {
        let labels = [
            ("netns", netns),
            ("role", role),
            ("peer", peer),
            ("port", port),
            ("result", result),
        ];
        m1.counter("netmon_tcp_peer_connects_total", &labels)
            - m0.counter("netmon_tcp_peer_connects_total", &labels)
    };
    let (a_ip, b_ip) = (pair.veth.a_ip.as_str(), pair.veth.b_ip.as_str());
    assert_eq!(peer(&na, "client", b_ip, "8000", "ok"), K);
    assert_eq!(peer(&na, "client", b_ip, "8001", "refused"), 1);
    assert_eq!(peer(&nb, "server", a_ip, "8000", "ok"), K);
    // No kernel structure read failed along the way.
    assert_eq!(m1.value("netmon_probe_read_failures_total", &[]), Some(0.0));
}

/// Datagrams too long for the far end's MTU: the veth refuses each (`NET_XMIT_DROP`, counted
/// by the kernel as `tx_dropped`), and `net_dev_xmit` reports the refusal, which netmon counts
/// as a transmit failure where the method sees the driver's answer (`seen`).
fn check_transmit_failures(agent: &Agent, pair: &LinkedNamespaces, seen: bool) {
    const N: u64 = 6;
    let (a_dev, b_dev) = (&pair.veth.a_dev, &pair.veth.b_dev);
    let na = pair.netns_a();
    let failures = |m: &Metrics| {
        m.counter(
            "netmon_kernel_transmit_failures_total",
            &[("netns", &na), ("interface", a_dev)],
        )
    };
    let (k0, m0) = (pair.a.link_stats(a_dev), agent.fresh_metrics());
    pair.b.ip(&["link", "set", b_dev, "mtu", "1000"]);
    send_udp(
        &pair.a,
        &pair.veth.a_ip,
        &format!("{}:9", pair.veth.b_ip),
        N,
        1200,
    );
    pair.b.ip(&["link", "set", b_dev, "mtu", "1500"]);
    let (k1, m1) = (pair.a.link_stats(a_dev), agent.fresh_metrics());
    assert_eq!(k1.tx_dropped - k0.tx_dropped, N);
    assert_eq!(failures(&m1) - failures(&m0), if seen { N } else { 0 });
}

/// The handshake histogram of `netns` and `open` grew by `k` samples between `m0` and `m1`:
/// its `+Inf` bucket by `k`, its buckets never down as `le` grows, and its sum within what the
/// buckets allow (each sample at most its bucket's bound, more than the bucket below's).
fn check_handshake_histogram(m0: &Metrics, m1: &Metrics, netns: &str, open: &str, k: u64) {
    let labels = [("netns", netns), ("open", open)];
    let buckets = |m: &Metrics| -> Vec<(f64, f64)> {
        let mut buckets: Vec<(f64, f64)> = m
            .find("netmon_tcp_handshake_duration_seconds_bucket", &labels)
            .into_iter()
            .map(|(l, v)| {
                let le = match l["le"].as_str() {
                    "+Inf" => f64::INFINITY,
                    le => le.parse().unwrap(),
                };
                (le, v)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    };
    let (before, after) = (buckets(m0), buckets(m1));
    assert!(after.len() > 10, "{after:?}");
    let grown: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, v)| {
            let old = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, v)| *v);
            (*le, v - old)
        })
        .collect();
    assert_eq!(
        grown.last().unwrap(),
        &(f64::INFINITY, k as f64),
        "{grown:?}"
    );
    assert!(grown.windows(2).all(|w| w[0].1 <= w[1].1), "{grown:?}");
    let sum = |m: &Metrics| {
        m.value("netmon_tcp_handshake_duration_seconds_sum", &labels)
            .unwrap_or(0.0)
    };
    let grown_sum = sum(m1) - sum(m0);
    let (mut low, mut high, mut below) = (0.0, 0.0, (0.0, 0.0));
    for &(le, cumulative) in &grown {
        let in_bucket = cumulative - below.1;
        if in_bucket > 0.0 {
            low += in_bucket * below.0;
            high += in_bucket * le;
        }
        below = (le, cumulative);
    }
    assert!(
        grown_sum > 0.0 && grown_sum >= low && grown_sum <= high,
        "sum {grown_sum} outside [{low}, {high}] of {grown:?}"
    );
}

#[test]
fn best_methods_count_exactly() {
    require_root();
    let agent = Agent::start(&[]);
    let m = agent.fresh_metrics();
    // Every hook but the socket hooks, whose tracepoints came only in Linux 6.3: before it
    // they attach by fexit.
    let hooks = Hook::ALL
        .into_iter()
        .filter(|hook| !matches!(hook, Hook::SockSendLength | Hook::SockRecvLength));
    for probe in hooks.map(Hook::as_str) {
        assert_eq!(
            m.value(
                "netmon_probe_attached",
                &[("probe", probe), ("method", "tp_btf")]
            ),
            Some(1.0),
            "{probe} attaches as tp_btf on a kernel with BTF"
        );
    }
    let pair = LinkedNamespaces::new("best", 210);
    check_udp_counts(&agent, &pair);
    check_drops(&agent, &pair);
    check_tcp(&agent, &pair);
    check_transmit_failures(&agent, &pair, true);

    let drops: serde_json::Value = serde_json::from_str(&agent.get("/api/v1/drops").body).unwrap();
    assert!(
        drops["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["reason"] == "NETFILTER_DROP" && d["interface"] == "nmb210"),
        "{drops}"
    );
    let transitions: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/tcp/transitions").body).unwrap();
    assert!(
        transitions["items"].as_array().unwrap().len() > 5,
        "{transitions}"
    );
    // Gone namespaces leave no series: traffic, transitions and TCP events alike.
    let (na, nb) = (pair.netns_a(), pair.netns_b());
    drop(pair);
    agent.wait_until_forgotten(&na);
    agent.wait_until_forgotten(&nb);
}

/// The names of the hooks that have a program for `method`: the only ones it can be forced on.
fn hooks_offering(method: AttachMethod) -> Vec<&'static str> {
    Hook::ALL
        .into_iter()
        .filter(|hook| hook.offers(method))
        .map(Hook::as_str)
        .collect()
}

/// A configuration forcing `method` on every hook that offers it.
fn forced_config(method: AttachMethod) -> ConfigFile {
    let mut text = String::from("[probe_methods]\n");
    for hook in hooks_offering(method) {
        text.push_str(&format!("{hook} = \"{method}\"\n"));
    }
    ConfigFile::new(&text)
}

/// Every hook that offers `method` forced to it: all attach with it and count exactly.
fn forced_method_counts_exactly(method: AttachMethod, tag: &str, subnet: u8) {
    require_root();
    let config = forced_config(method);
    let agent = Agent::start(&["--config", config.path_str()]);
    let m = agent.fresh_metrics();
    for probe in hooks_offering(method) {
        assert_eq!(
            m.value(
                "netmon_probe_attached",
                &[("probe", probe), ("method", method.as_str())]
            ),
            Some(1.0),
            "{probe} with {method}"
        );
    }
    // The status says what the method does not see: only the classic transmit tracepoint
    // misses something of these hooks.
    let status = agent.status();
    for probe in status["probes"].as_array().unwrap() {
        let limited = method == AttachMethod::Tracepoint && probe["probe"] == "net_dev_xmit";
        assert_eq!(probe["limits"].is_string(), limited, "{probe}");
    }
    let pair = LinkedNamespaces::new(tag, subnet);
    check_udp_counts(&agent, &pair);
    check_drops(&agent, &pair);
    check_tcp(&agent, &pair);
    // The classic method counts before the driver answers (net_dev_start_xmit).
    check_transmit_failures(&agent, &pair, method != AttachMethod::Tracepoint);
}

/// The programs for kernels without `bpf_loop` (before 5.17), loaded here by the
/// configuration: every hook attaches with its best method, counts exactly, and the socket
/// hooks say that they keep no memo.
#[test]
fn the_programs_for_kernels_without_bpf_loop_count_exactly() {
    require_root();
    let config = ConfigFile::new(BOUNDED_WALK);
    let agent = Agent::start(&["--config", config.path_str()]);
    let status = agent.status();
    assert_eq!(status["program_variant"], "bounded_walk", "{status}");
    for probe in status["probes"].as_array().unwrap() {
        assert_eq!(probe["method"], "tp_btf", "{probe}");
        let socket = probe["probe"].as_str().unwrap().starts_with("sock_");
        let limits = probe["limits"].as_str().unwrap_or_default();
        assert_eq!(limits.contains("no per-CPU memo"), socket, "{probe}");
    }
    let memo = status["socket_memo_error"].as_str().unwrap_or_default();
    assert!(memo.contains("Linux >= 5.17"), "{status}");
    let pair = LinkedNamespaces::new("bounded", 198);
    check_udp_counts(&agent, &pair);
    check_drops(&agent, &pair);
    check_tcp(&agent, &pair);
    check_transmit_failures(&agent, &pair, true);
    let (na, nb) = (pair.netns_a(), pair.netns_b());
    drop(pair);
    agent.wait_until_forgotten(&na);
    agent.wait_until_forgotten(&nb);
}

/// The configuration that loads the programs for kernels without `bpf_loop`.
const BOUNDED_WALK: &str = "program_variant = \"bounded_walk\"\n";

#[test]
fn raw_tracepoints_count_exactly() {
    forced_method_counts_exactly(AttachMethod::RawTp, "raw", 211);
}

#[test]
fn classic_tracepoints_count_exactly() {
    forced_method_counts_exactly(AttachMethod::Tracepoint, "classic", 212);
}

#[test]
fn kprobe_fallback_is_reported_where_the_kernel_has_no_kprobes() {
    require_root();
    let config = forced_config(AttachMethod::Kprobe);
    let agent = Agent::start(&["--config", config.path_str()]);
    let m = agent.fresh_metrics();
    let kprobes = Path::new("/sys/kernel/tracing/kprobe_events").exists()
        || Path::new("/sys/kernel/debug/tracing/kprobe_events").exists();
    if kprobes {
        eprintln!("this kernel has kprobes: checking the fallback counts");
        for probe in hooks_offering(AttachMethod::Kprobe) {
            assert_eq!(
                m.value(
                    "netmon_probe_attached",
                    &[("probe", probe), ("method", "kprobe")]
                ),
                Some(1.0)
            );
        }
        let pair = LinkedNamespaces::new("kprobe", 213);
        check_tcp(&agent, &pair);
        return;
    }
    eprintln!("this kernel has no kprobes (CONFIG_KPROBES unset): checking the report");
    // What the kernel lacks, in an operator's words, in the metric and in status.
    let needs = "a kernel built with kprobes (CONFIG_KPROBES=y)";
    for probe in hooks_offering(AttachMethod::Kprobe) {
        assert_eq!(
            m.value(
                "netmon_probe_attached",
                &[("probe", probe), ("method", "none"), ("needs", needs)]
            ),
            Some(0.0)
        );
    }
    let status = agent.status();
    let drop_probe = probe_status(&status, "kfree_skb");
    assert_eq!(drop_probe["failures"][0]["method"], "kprobe");
    assert!(
        drop_probe["failures"][0]["error"]
            .as_str()
            .unwrap()
            .contains("kprobe"),
        "{drop_probe}"
    );
    assert_eq!(drop_probe["needs"], needs, "{drop_probe}");
    assert_eq!(
        probe_status(&status, "net_dev_xmit")["needs"],
        serde_json::Value::Null
    );
    // The agent keeps running, and the hooks not forced still count.
    assert_eq!(
        m.value(
            "netmon_probe_attached",
            &[("probe", "net_dev_xmit"), ("method", "tp_btf")]
        ),
        Some(1.0)
    );
    let pair = LinkedNamespaces::new("kprobe", 213);
    check_udp_counts(&agent, &pair);
}

/// In the bounded walk a slot is claimed by inserting its index into the table's claims: a
/// freed slot is claimed again only because the agent removes the index. Four slots, all
/// taken by two pairs' ends and loopback; once the pairs are gone, a third pair's ends take
/// their slots and count exactly.
#[test]
fn freed_slots_are_claimed_again_in_the_bounded_walk() {
    require_root();
    let config = ConfigFile::new(&format!("{BOUNDED_WALK}max_tracked_interfaces = 4\n"));
    let agent = Agent::start(&["--config", config.path_str()]);
    let first = [
        LinkedNamespaces::new("reuse1", 186),
        LinkedNamespaces::new("reuse2", 187),
    ];
    for pair in &first {
        pair.send_to_port_9(5, 16);
    }
    let m = agent.fresh_metrics();
    assert_eq!(
        m.counter("netmon_probe_map_entries", &[("map", "traffic")]),
        4,
        "every slot is taken"
    );
    let gone: Vec<String> = first.iter().map(LinkedNamespaces::netns_a).collect();
    drop(first);
    for netns in &gone {
        agent.wait_until_forgotten(netns);
    }
    let third = LinkedNamespaces::new("reuse3", 188);
    let (tx0, rx0) = (
        third.a.link_stats(&third.veth.a_dev).tx_packets,
        third.b.link_stats(&third.veth.b_dev).rx_packets,
    );
    third.send_to_port_9(7, 16);
    let m = agent.fresh_metrics();
    let counted = |netns: String, dev: &str, direction: &str| {
        m.counter(
            "netmon_kernel_packets_total",
            &[
                ("netns", &netns),
                ("interface", dev),
                ("direction", direction),
            ],
        )
    };
    let kernel = (
        third.a.link_stats(&third.veth.a_dev).tx_packets - tx0,
        third.b.link_stats(&third.veth.b_dev).rx_packets - rx0,
    );
    assert_eq!(kernel, (7, 7));
    assert_eq!(
        (
            counted(third.netns_a(), &third.veth.a_dev, "tx"),
            counted(third.netns_b(), &third.veth.b_dev, "rx"),
        ),
        kernel,
        "the third pair's ends count in freed slots"
    );
}

#[test]
fn a_full_traffic_map_is_counted() {
    require_root();
    let config = ConfigFile::new("max_tracked_interfaces = 1\n");
    let agent = Agent::start(&["--config", config.path_str()]);
    let pair = LinkedNamespaces::new("full", 217);
    // Loopback (the agent's own scrapes) or this pair takes the one slot; the rest overflow.
    pair.send_to_port_9(5, 16);
    let m = agent.fresh_metrics();
    assert_eq!(
        m.counter("netmon_probe_map_entries", &[("map", "traffic")]),
        1
    );
    assert!(m.counter("netmon_probe_map_full_total", &[("map", "traffic")]) >= 5);
}

/// `RetransSegs` of a namespace, from its own `/proc/net/snmp`.
fn retrans_segs(ns: &Netns) -> u64 {
    let snmp = ns.exec(&["cat", "/proc/net/snmp"]);
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let column = names
        .split_whitespace()
        .position(|n| n == "RetransSegs")
        .unwrap();
    values
        .split_whitespace()
        .nth(column)
        .unwrap()
        .parse()
        .unwrap()
}

/// The kernel's retransmits of one lost segment in the pair's client namespace, and netmon's
/// count over the same time.
fn retransmits_of_a_lost_segment(agent: &Agent, pair: &LinkedNamespaces, port: u16) -> (u64, u64) {
    let server_addr = format!("{}:{port}", pair.veth.b_ip);
    let listener = {
        let addr = server_addr.clone();
        pair.b.run(move || TcpListener::bind(addr).unwrap())
    };
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).unwrap();
        buf
    });
    let client = pair.a.run(move || TcpStream::connect(server_addr).unwrap());
    let port = port.to_string();
    let rule = ["INPUT", "-p", "tcp", "--dport", port.as_str(), "-j", "DROP"];
    let with = |op: &str| {
        let mut args = vec!["iptables", op];
        args.extend(rule);
        pair.b.exec(&args);
    };
    let (m0, r0) = (agent.fresh_metrics(), retrans_segs(&pair.a));
    with("-A");
    (&client).write_all(b"ping").unwrap();
    // The segment is dropped; the client retransmits after 200 ms, 400 ms, 800 ms...
    thread::sleep(Duration::from_millis(1500));
    with("-D");
    assert_eq!(&server.join().unwrap(), b"ping");
    // A late retransmit may still come: the kernel's count is taken where it held still
    // across a poll of the agent.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (r1, m1) = loop {
        let r1 = retrans_segs(&pair.a);
        let m1 = agent.fresh_metrics();
        if retrans_segs(&pair.a) == r1 {
            break (r1, m1);
        }
        assert!(Instant::now() < deadline, "retransmits never stopped");
    };
    let kernel = r1 - r0;
    assert!(kernel >= 2, "the kernel retransmitted {kernel} times");
    let netns = pair.netns_a();
    let labels = [("netns", netns.as_str())];
    let counted = m1.counter("netmon_tcp_retransmits_total", &labels)
        - m0.counter("netmon_tcp_retransmits_total", &labels);
    (kernel, counted)
}

#[test]
fn retransmits_match_the_kernel() {
    require_root();
    let agent = Agent::start(&[]);
    let pair = LinkedNamespaces::new("retrans", 218);
    // The client's namespace: netmon's count of it against the namespace's RetransSegs.
    let (kernel, counted) = retransmits_of_a_lost_segment(&agent, &pair, 8002);
    assert_eq!(counted, kernel);
    // And nothing was counted in the server's namespace, which retransmitted nothing.
    let m = agent.fresh_metrics();
    assert_eq!(
        m.counter(
            "netmon_tcp_retransmits_total",
            &[("netns", &pair.netns_b())]
        ),
        retrans_segs(&pair.b)
    );
}

/// A table far smaller than the interfaces: identities collide on every slot, the ones that
/// found no slot are counted as full, and every interface that has a series counts exactly
/// its own packets (each pair sends a different number, so merged counts would show).
#[test]
fn colliding_interfaces_never_share_counts() {
    colliding_interfaces_count_exactly("", "slot", 223);
}

/// The same with the bounded walk of the programs for kernels without `bpf_loop`, whose
/// claims are inserts into a hash map.
#[test]
fn colliding_interfaces_never_share_counts_in_the_bounded_walk() {
    colliding_interfaces_count_exactly(BOUNDED_WALK, "bslot", 190);
}

fn colliding_interfaces_count_exactly(config: &str, tag: &str, subnet: u8) {
    require_root();
    let config = ConfigFile::new(&format!("{config}max_tracked_interfaces = 8\n"));
    let agent = Agent::start(&["--config", config.path_str()]);
    let pairs: Vec<LinkedNamespaces> = (0..6)
        .map(|i| LinkedNamespaces::new(&format!("{tag}{i}"), subnet + i))
        .collect();
    // A first datagram gives every end that can have a slot its slot.
    for pair in &pairs {
        pair.send_to_port_9(1, 16);
    }
    let m0 = agent.fresh_metrics();
    let ends = |pair: &LinkedNamespaces| {
        [
            (pair.netns_a(), pair.veth.a_dev.clone(), "tx"),
            (pair.netns_b(), pair.veth.b_dev.clone(), "rx"),
        ]
    };
    let before: Vec<_> = pairs
        .iter()
        .map(|pair| {
            (
                pair.a.link_stats(&pair.veth.a_dev).tx_packets,
                pair.b.link_stats(&pair.veth.b_dev).rx_packets,
            )
        })
        .collect();
    for (i, pair) in pairs.iter().enumerate() {
        pair.send_to_port_9(10 * (i as u64 + 1), 16);
    }
    let m1 = agent.fresh_metrics();
    let packets = "netmon_kernel_packets_total";
    let (mut tracked, mut untracked) = (0, 0);
    for ((pair, (tx0, rx0)), i) in pairs.iter().zip(before).zip(1u64..) {
        let kernel = [
            pair.a.link_stats(&pair.veth.a_dev).tx_packets - tx0,
            pair.b.link_stats(&pair.veth.b_dev).rx_packets - rx0,
        ];
        assert_eq!(kernel, [10 * i, 10 * i], "the kernel's own counts");
        for ((netns, dev, dir), kernel) in ends(pair).into_iter().zip(kernel) {
            let labels = [
                ("netns", netns.as_str()),
                ("interface", dev.as_str()),
                ("direction", dir),
            ];
            if m0.find(packets, &labels).is_empty() {
                untracked += 1;
                continue;
            }
            tracked += 1;
            assert_eq!(
                m1.counter(packets, &labels) - m0.counter(packets, &labels),
                kernel,
                "{dev} {dir}"
            );
        }
    }
    assert!(tracked >= 2, "{tracked} ends tracked");
    assert!(untracked >= 1, "12 ends and 8 slots: some find none");
    assert!(m1.counter("netmon_probe_map_full_total", &[("map", "traffic")]) > 0);
    // Every slot is taken: the walk looks at the whole of a table smaller than its probes.
    assert_eq!(
        m1.counter("netmon_probe_map_entries", &[("map", "traffic")]),
        8
    );
}
