//! Pressure before loss, against the kernel's own tools in namespaces the test makes: a
//! listener's accept queue against `ss -ltn` and `nstat`, a flooded UDP socket's receive
//! buffer, connection tracking's entries, a `tbf` queue's drops against `tc -s qdisc`, the
//! CPUs' backlogs against `/proc/net/softnet_stat`; and two namespaces that never mix.
use std::{
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    thread,
    time::Duration,
};

use netmon_tests::{Agent, LinkedNamespaces, Metrics, require_root};

/// A counter of `netmon_netstat_total` in namespace `netns`.
fn counted(m: &Metrics, netns: &str, counter: &str) -> u64 {
    let labels = [("netns", netns), ("counter", counter)];
    m.value("netmon_netstat_total", &labels)
        .unwrap_or_else(|| panic!("{counter} of {netns}")) as u64
}

/// Traffic both ways between the namespaces, and a poll that reads them: the readings that
/// the findings count from, as an agent running before the trouble has them.
fn read_before(agent: &Agent, pair: &LinkedNamespaces) {
    pair.send_to_port_9(1, 10);
    agent.fresh_metrics();
}

/// The diagnosis's finding `id` about `subject`.
fn finding(agent: &Agent, id: &str, subject: &str) -> serde_json::Value {
    let diagnosis = agent.get("/api/v1/diagnosis").body;
    let diagnosis: serde_json::Value = serde_json::from_str(&diagnosis).unwrap();
    let findings = diagnosis["findings"].as_array().unwrap();
    let found = findings
        .iter()
        .find(|f| f["id"] == id && f["subject"] == subject);
    found
        .unwrap_or_else(|| panic!("no {id} of {subject}: {diagnosis}"))
        .clone()
}

/// A listener with a backlog of 1 that never accepts, and 20 connects to it: its queue
/// and limit equal `ss -ltn` there, its overflows `nstat` there; the other namespace has
/// none of them.
#[test]
fn a_full_accept_queue_matches_ss_and_nstat() {
    require_root();
    let agent = Agent::start(&[]);
    let pair = LinkedNamespaces::new("pressure-listen", 226);
    let address: SocketAddr = format!("{}:7500", pair.veth.b_ip).parse().unwrap();
    let listener = pair.b.run(move || TcpListener::bind(address).unwrap());
    // SAFETY: a listening socket of the test's own; a backlog of 1 holds two connections.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 1) }, 0);
    read_before(&agent, &pair);
    pair.a.run(move || {
        let connects: Vec<_> = (0..20)
            .map(|_| {
                thread::spawn(move || {
                    TcpStream::connect_timeout(&address, Duration::from_millis(1500))
                })
            })
            .collect();
        // The queued connections stay open until the counts are read. A client whose last
        // ACK the full queue dropped is connected too, so there may be more than two; the
        // listener sends those its SYN-ACK again, and each answer overflows again.
        let held: Vec<_> = connects
            .into_iter()
            .filter_map(|c| c.join().unwrap().ok())
            .collect();
        assert!(held.len() >= 2, "{}", held.len());
        held
    });
    let (na, nb) = (pair.netns_a(), pair.netns_b());
    // Read where the kernel's counters held still across a poll and the diagnosis.
    let mut settled = None;
    for _ in 0..20 {
        let before = pair.b.nstat("TcpExtListenOverflows");
        let m = agent.fresh_metrics();
        let finding = finding(&agent, "accept_queue_overflow", &format!("netns {nb}"));
        if pair.b.nstat("TcpExtListenOverflows") == before {
            settled = Some((m, finding));
            break;
        }
    }
    let (m, finding) = settled.expect("the overflows settle");
    let ss = pair.b.exec(&["ss", "-ltnH", "sport", "= :7500"]);
    let columns: Vec<&str> = ss.split_whitespace().collect();
    let (recv_q, send_q) = (columns[1], columns[2]);
    let labels = [
        ("netns", nb.as_str()),
        ("address", pair.veth.b_ip.as_str()),
        ("port", "7500"),
    ];
    let value = |name: &str| m.value(name, &labels).unwrap_or(-1.0).to_string();
    assert_eq!(value("netmon_listen_queue_length"), recv_q, "{ss}");
    assert_eq!(value("netmon_listen_queue_limit"), send_q, "{ss}");
    for counter in ["ListenOverflows", "ListenDrops"] {
        let kernel = pair.b.nstat(&format!("TcpExt{counter}"));
        assert!(kernel > 0, "{counter}");
        assert_eq!(counted(&m, &nb, &format!("TcpExt_{counter}")), kernel);
        assert_eq!(counted(&m, &na, &format!("TcpExt_{counter}")), 0);
    }
    // The finding names the namespace's overflows, the listener and the test, which holds it.
    let overflows = pair.b.nstat("TcpExtListenOverflows");
    let subject = format!("netns {nb}");
    let summary = finding["summary"].as_str().unwrap();
    let listener_named = format!("{}:7500 ({recv_q} of {send_q}), held by", pair.veth.b_ip);
    assert!(
        summary.starts_with(&format!("{subject}: {overflows} drops")),
        "{summary}"
    );
    assert!(summary.contains(&listener_named), "{summary}");
    assert!(
        summary.contains(&format!("(pid {})", std::process::id())),
        "{summary}"
    );
    assert_eq!(finding["severity"], "critical");
    drop(listener);
}

/// A UDP socket with the smallest receive buffer, flooded: its namespace's receive-buffer
/// errors equal the kernel's.
#[test]
fn a_flooded_receive_buffer_counts_its_errors() {
    require_root();
    let agent = Agent::start(&[]);
    let pair = LinkedNamespaces::new("pressure-udp", 227);
    let receiver = pair.udp_receiver(7600);
    let size: libc::c_int = 1;
    // SAFETY: setting an option of the test's own socket from a valid int.
    let set = unsafe {
        libc::setsockopt(
            receiver.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0);
    read_before(&agent, &pair);
    let to = format!("{}:7600", pair.veth.b_ip);
    netmon_tests::send_udp(&pair.a, &pair.veth.a_ip, &to, 200, 1000);
    thread::sleep(Duration::from_millis(200));
    let m = agent.fresh_metrics();
    let kernel = pair.b.nstat("UdpRcvbufErrors");
    assert!(kernel > 100, "{kernel}");
    let nb = pair.netns_b();
    assert_eq!(counted(&m, &nb, "Udp_RcvbufErrors"), kernel);
    assert_eq!(counted(&m, &pair.netns_a(), "Udp_RcvbufErrors"), 0);
    let found = finding(
        &agent,
        "udp_receive_buffer_errors",
        &format!("netns {nb} udp"),
    );
    let summary = found["summary"].as_str().unwrap();
    let dropped = format!("netns {nb}: {kernel} UDP datagrams dropped");
    assert!(summary.starts_with(&dropped), "{summary}");
    drop(receiver);
}

/// Flows through a stateful rule: the namespace's tracked entries equal its
/// `nf_conntrack_count`.
#[test]
fn tracked_connections_equal_the_kernels_count() {
    require_root();
    let agent = Agent::start(&[]);
    let pair = LinkedNamespaces::new("pressure-ct", 228);
    let rules = "table inet netmon_ct {\n chain input {\n  type filter hook input priority 0;\n  \
                 ct state established,related accept\n }\n}\n";
    let file = netmon_tests::ConfigFile::with_extension(rules, "nft");
    pair.b.exec(&["nft", "-f", file.path_str()]);
    let from = pair.veth.a_ip.clone();
    let to = pair.veth.b_ip.clone();
    pair.a.run(move || {
        for port in 0..25 {
            let socket = UdpSocket::bind(format!("{from}:0")).unwrap();
            socket
                .send_to(b"flow", format!("{to}:{}", 7700 + port))
                .unwrap();
        }
    });
    thread::sleep(Duration::from_millis(200));
    let m = agent.fresh_metrics();
    let kernel = pair
        .b
        .exec(&["cat", "/proc/sys/net/netfilter/nf_conntrack_count"]);
    let kernel: u64 = kernel.trim().parse().unwrap();
    assert!(kernel >= 25, "{kernel}");
    let labels = [("netns", pair.netns_b())];
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(m.counter("netmon_conntrack_entries", &labels), kernel);
    assert!(m.counter("netmon_conntrack_entries_limit", &labels) > 0);
}

/// A token bucket too small for a burst: its drops and overlimits equal `tc -s qdisc`.
#[test]
fn a_token_bucket_overflows_as_tc_counts() {
    require_root();
    let agent = Agent::start(&[]);
    let pair = LinkedNamespaces::new("pressure-tbf", 229);
    let dev = pair.veth.a_dev.clone();
    pair.a.exec(&[
        "tc", "qdisc", "add", "dev", &dev, "root", "handle", "8001:", "tbf", "rate", "1mbit",
        "burst", "1600", "limit", "3000",
    ]);
    read_before(&agent, &pair);
    pair.send_to_port_9(300, 1000);
    // The queue drains at 1 Mbit/s: 3000 bytes take 24 ms.
    thread::sleep(Duration::from_millis(300));
    let m = agent.fresh_metrics();
    let shown = pair
        .a
        .exec(&["tc", "-s", "-j", "qdisc", "show", "dev", &dev]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let tbf = &shown[0];
    assert_eq!(tbf["kind"], "tbf");
    let na = pair.netns_a();
    let labels = [
        ("netns", na.as_str()),
        ("interface", dev.as_str()),
        ("kind", "tbf"),
        ("handle", "8001:"),
    ];
    for (family, field) in [
        ("netmon_qdisc_drops_total", "drops"),
        ("netmon_qdisc_overlimits_total", "overlimits"),
        ("netmon_qdisc_packets_total", "packets"),
        ("netmon_qdisc_bytes_total", "bytes"),
    ] {
        let kernel = tbf[field].as_u64().unwrap();
        assert_eq!(m.counter(family, &labels), kernel, "{field}: {tbf}");
    }
    let drops = tbf["drops"].as_u64().unwrap();
    assert!(drops > 100, "{tbf}");
    let subject = format!("netns {na} {dev} tbf 8001:");
    let found = finding(&agent, "qdisc_drops", &subject);
    let summary = found["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("dropped {drops} packets")),
        "{summary}"
    );
}

/// Each CPU's row equals `/proc/net/softnet_stat`: drops and squeezes as they are, what it
/// processed between the reads before and after.
#[test]
fn softnet_rows_match_the_kernel() {
    require_root();
    let agent = Agent::start(&[]);
    let read = || {
        let text = std::fs::read_to_string("/proc/net/softnet_stat").unwrap();
        let rows: Vec<Vec<u64>> = text
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .map(|c| u64::from_str_radix(c, 16).unwrap())
                    .collect()
            })
            .collect();
        rows
    };
    let before = read();
    let m = agent.fresh_metrics();
    let after = read();
    assert_eq!(
        m.find("netmon_softnet_processed_total", &[]).len(),
        before.len()
    );
    for (row, (early, late)) in before.iter().zip(&after).enumerate() {
        let cpu = late.get(12).map_or(row as u64, |cpu| *cpu).to_string();
        let value = |family: &str| m.counter(family, &[("cpu", cpu.as_str())]);
        let processed = value("netmon_softnet_processed_total");
        assert!(early[0] <= processed && processed <= late[0], "cpu {cpu}");
        assert!(early[1] <= value("netmon_softnet_dropped_total"));
        assert!(value("netmon_softnet_dropped_total") <= late[1]);
        assert!(early[2] <= value("netmon_softnet_times_squeezed_total"));
        assert!(value("netmon_softnet_times_squeezed_total") <= late[2]);
    }
    let pages = m.value("netmon_tcp_memory_pages", &[]).unwrap();
    let pressure = m.value("netmon_tcp_memory_pressure_pages", &[]).unwrap();
    let tcp_mem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem").unwrap();
    assert_eq!(
        pressure.to_string(),
        tcp_mem.split_whitespace().nth(1).unwrap()
    );
    assert!(pages >= 0.0);
}

/// `/api/v1/pressure` gives one namespace where asked, with what the metrics show.
#[test]
fn the_api_gives_a_namespace() {
    require_root();
    let agent = Agent::start(&[]);
    let pair = LinkedNamespaces::new("pressure-api", 225);
    pair.send_to_port_9(10, 100);
    agent.fresh_metrics();
    let netns = pair.netns_b();
    let body = agent.get(&format!("/api/v1/pressure?netns={netns}")).body;
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let namespaces = answer["namespaces"].as_array().unwrap();
    assert_eq!(namespaces.len(), 1, "{answer}");
    assert_eq!(namespaces[0]["netns"].to_string(), netns);
    assert!(
        namespaces[0]["counters"]["Udp_InErrors"].is_u64(),
        "{answer}"
    );
    assert!(!answer["softnet"].as_array().unwrap().is_empty());
    let refused = agent.get("/api/v1/pressure?netns=x");
    assert_eq!(refused.status, 400, "{}", refused.body);
}
