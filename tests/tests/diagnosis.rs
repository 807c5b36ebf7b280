//! The diagnosis on conditions made for real in the tests' own namespaces, its quiet answer
//! on a healthy setup, and configuration reloads without a restart.
use std::{
    net::{TcpListener, TcpStream, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Agent, ConfigFile, Netns, Veth, require_root, send_udp, spawn_python};

fn diagnosis(agent: &Agent) -> serde_json::Value {
    serde_json::from_str(&agent.get("/api/v1/diagnosis").body).unwrap()
}

fn findings<'a>(d: &'a serde_json::Value, id: &str) -> Vec<&'a serde_json::Value> {
    d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == id)
        .collect()
}

fn evidence(finding: &serde_json::Value, name: &str) -> f64 {
    finding["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no evidence {name} in {finding}"))["value"]
        .as_f64()
        .unwrap()
}

/// Polls the diagnosis until `done` holds for it, at most 15 s.
fn wait_for(
    agent: &Agent,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        agent.fresh_metrics();
        let d = diagnosis(agent);
        if done(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "{what}: never seen in {d:#}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// The agent's namespace `x`, with a veth to `y`.
struct Setup {
    x: Netns,
    y: Netns,
    veth: Veth,
}

fn setup(tag: &str, subnet: u8) -> Setup {
    let x = Netns::new(&format!("{tag}-x"));
    let y = Netns::new(&format!("{tag}-y"));
    let veth = Veth::connect(&x, &y, subnet);
    Setup { x, y, veth }
}

const WINDOW: &str = "rate_window = \"4s\"\n";

#[test]
fn a_quiet_healthy_setup_has_no_findings() {
    require_root();
    let s = setup("healthy", 240);
    let config = ConfigFile::new(WINDOW);
    let agent = Agent::builder()
        .inside(&s.x)
        .args(&["--config", config.path_str()])
        .start();
    let receiver = {
        let addr = format!("{}:9000", s.veth.a_ip);
        s.x.run(move || UdpSocket::bind(addr).unwrap())
    };
    send_udp(
        &s.y,
        &s.veth.b_ip,
        &format!("{}:9000", s.veth.a_ip),
        50,
        100,
    );
    let mut buf = [0u8; 256];
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..50 {
        receiver.recv(&mut buf).unwrap();
    }
    // Two full windows of quiet operation.
    thread::sleep(Duration::from_secs(2));
    let d = wait_for(&agent, "a diagnosis over the window", |d| {
        d["window_seconds"].as_f64().unwrap() >= 3.0
    });
    assert_eq!(d["findings"], serde_json::json!([]), "{d:#}");
    assert_eq!(d["status"], "ok");
    let m = agent.fresh_metrics();
    assert!(m.find("netmon_diagnosis_finding", &[]).is_empty());
}

#[test]
fn firewall_drops_are_packet_loss_with_the_reason() {
    require_root();
    let s = setup("fwloss", 241);
    let config = ConfigFile::new(WINDOW);
    let agent = Agent::builder()
        .inside(&s.x)
        .args(&["--config", config.path_str()])
        .start();
    s.x.exec(&[
        "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9100", "-j", "DROP",
    ]);
    send_udp(
        &s.y,
        &s.veth.b_ip,
        &format!("{}:9100", s.veth.a_ip),
        200,
        64,
    );
    let dev = s.veth.a_dev.clone();
    let d = wait_for(&agent, "packet_loss", |d| {
        findings(d, "packet_loss")
            .iter()
            .any(|f| f["subject"] == dev.as_str() && evidence(f, "kernel_drops") >= 200.0)
    });
    let finding = findings(&d, "packet_loss")[0];
    assert_eq!(finding["severity"], "critical", "{finding:#}");
    assert_eq!(evidence(finding, "reason:NETFILTER_DROP"), 200.0);
    assert!(evidence(finding, "drop_rate") > 90.0);
    assert!(
        finding["summary"]
            .as_str()
            .unwrap()
            .contains("NETFILTER_DROP")
    );
    assert!(
        finding["next_steps"][0]
            .as_str()
            .unwrap()
            .contains("firewall")
    );
    assert!(finding["window_seconds"].as_f64().unwrap() > 0.0);
    let m = agent.fresh_metrics();
    assert_eq!(
        m.value(
            "netmon_diagnosis_finding",
            &[
                ("id", "packet_loss"),
                ("severity", "critical"),
                ("subject", &s.veth.a_dev)
            ]
        ),
        Some(1.0)
    );
}

#[test]
fn a_saturated_link_with_a_configured_capacity() {
    require_root();
    let s = setup("saturate", 242);
    // 1 Mbit/s: 125 kB/s is full.
    let config = ConfigFile::new(&format!(
        "{WINDOW}[link_capacity_mbps]\n{} = 1\n",
        s.veth.a_dev
    ));
    let agent = Agent::builder()
        .inside(&s.x)
        .args(&["--config", config.path_str()])
        .start();
    let receiver = {
        let addr = format!("{}:9200", s.veth.b_ip);
        s.y.run(move || UdpSocket::bind(addr).unwrap())
    };
    // About 300 kB/s for 3 s, bounded: 900 datagrams of 1000 bytes.
    let (from, to) = (
        format!("{}:0", s.veth.a_ip),
        format!("{}:9200", s.veth.b_ip),
    );
    let sender = s.x.run(move || UdpSocket::bind(from).unwrap());
    for _ in 0..30 {
        for _ in 0..30 {
            sender.send_to(&[1u8; 1000], &to).unwrap();
        }
        thread::sleep(Duration::from_millis(100));
    }
    drop(receiver);
    let dev = s.veth.a_dev.clone();
    let d = wait_for(&agent, "bandwidth_saturation", |d| {
        findings(d, "bandwidth_saturation")
            .iter()
            .any(|f| f["subject"] == dev.as_str())
    });
    let finding = findings(&d, "bandwidth_saturation")[0];
    assert!(evidence(finding, "tx_utilization") > 80.0, "{finding:#}");
    assert_eq!(evidence(finding, "capacity_bits_per_second"), 1e6);
}

const REUSEPORT_LISTENER: &str = "import socket, time\n\
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\n\
s.bind(('0.0.0.0', 7100)); s.listen()\n\
print('ready', flush=True); time.sleep(60)";

#[test]
fn port_problems_unexpected_missing_and_shared() {
    require_root();
    let s = setup("ports", 243);
    let config = ConfigFile::new(&format!(
        "{WINDOW}[[expected_ports]]\nport = 7000\n[[expected_ports]]\nport = 7100\n\
         [[expected_ports]]\nport = 7200\nprocess = \"postgres\"\n"
    ));
    let agent = Agent::builder()
        .inside(&s.x)
        .args(&["--config", config.path_str()])
        .start();
    let expected = s.x.run(|| TcpListener::bind("0.0.0.0:7000").unwrap());
    let (mut unexpected, _) = spawn_python(
        &s.x,
        "import socket, time\ns = socket.socket(); s.bind(('0.0.0.0', 4444)); s.listen()\n\
         print('ready', flush=True); time.sleep(60)",
    );
    let (mut first, _) = spawn_python(&s.x, REUSEPORT_LISTENER);
    let (mut second, _) = spawn_python(&s.x, REUSEPORT_LISTENER);
    let d = wait_for(&agent, "port findings", |d| {
        !findings(d, "unexpected_listener").is_empty() && !findings(d, "port_shared").is_empty()
    });
    let unexpected_findings = findings(&d, "unexpected_listener");
    assert_eq!(unexpected_findings.len(), 1, "{d:#}");
    assert_eq!(unexpected_findings[0]["subject"], "tcp/4444");
    let summary = unexpected_findings[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("python3 (pid {})", unexpected.id())),
        "{summary}"
    );
    let shared = findings(&d, "port_shared");
    assert_eq!(shared[0]["subject"], "tcp/7100");
    assert_eq!(evidence(shared[0], "processes"), 2.0);
    let summary = shared[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains(&first.id().to_string()) && summary.contains(&second.id().to_string())
    );
    let missing = findings(&d, "expected_port_missing");
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0]["subject"], "tcp/7200");
    assert_eq!(missing[0]["severity"], "critical");
    assert_eq!(d["status"], "critical");
    drop(expected);
    for child in [&mut unexpected, &mut first, &mut second] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Makes `count` half-open connections to port 7300 of `x`: `x` drops the handshake's
/// final ACK, so its side stays in SYN_RECV.
fn half_open(s: &Setup, count: usize) -> TcpListener {
    let addr = format!("{}:7300", s.veth.a_ip);
    let listener = {
        let addr = addr.clone();
        s.x.run(move || TcpListener::bind(addr).unwrap())
    };
    s.x.exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "7300",
        "--tcp-flags",
        "SYN,ACK",
        "ACK",
        "-j",
        "DROP",
    ]);
    s.y.run(move || {
        for _ in 0..count {
            // The client believes it is connected; its socket lives as long as the namespace.
            std::mem::forget(TcpStream::connect(&addr).unwrap());
        }
    });
    listener
}

#[test]
fn half_open_connections() {
    require_root();
    let s = setup("halfopen", 244);
    let config = ConfigFile::new(&format!("{WINDOW}[thresholds]\nsyn_recv = 3\n"));
    let agent = Agent::builder()
        .inside(&s.x)
        .args(&["--config", config.path_str()])
        .start();
    let _listener = half_open(&s, 6);
    let d = wait_for(&agent, "half_open_connections", |d| {
        !findings(d, "half_open_connections").is_empty()
    });
    let finding = findings(&d, "half_open_connections")[0];
    assert_eq!(evidence(finding, "now"), 6.0);
    assert_eq!(evidence(finding, "threshold"), 3.0);
    assert_eq!(finding["severity"], "warning");
    // The peer the handshakes wait on is named.
    let source = format!("{}:7300", s.veth.b_ip);
    assert_eq!(evidence(finding, &source), 6.0, "{finding}");
    let summary = finding["summary"].as_str().unwrap();
    assert!(
        summary.ends_with(&format!("; most from {source} (6)")),
        "{summary}"
    );
}

#[test]
fn syn_sent_surge_names_the_peer_that_does_not_answer() {
    require_root();
    let s = setup("synsent", 245);
    let config = ConfigFile::new(&format!("{WINDOW}[thresholds]\nsyn_sent = 3\n"));
    let agent = Agent::builder()
        .inside(&s.x)
        .args(&["--config", config.path_str()])
        .start();
    // `y` drops the SYNs to port 7400: `x`'s connects wait in SYN_SENT.
    s.y.exec(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "7400", "-j", "DROP",
    ]);
    let to = format!("{}:7400", s.veth.b_ip);
    let address: std::net::SocketAddr = to.parse().unwrap();
    // Threads made in `x` stay there; each gives up after a bounded wait.
    let waits = s.x.run(move || {
        (0..5)
            .map(|_| {
                thread::spawn(move || {
                    TcpStream::connect_timeout(&address, Duration::from_secs(10)).unwrap_err()
                })
            })
            .collect::<Vec<_>>()
    });
    let d = wait_for(&agent, "syn_sent_surge", |d| {
        findings(d, "syn_sent_surge")
            .first()
            .is_some_and(|f| evidence(f, "now") == 5.0)
    });
    let finding = findings(&d, "syn_sent_surge")[0];
    assert_eq!(evidence(finding, &to), 5.0, "{finding}");
    let summary = finding["summary"].as_str().unwrap();
    assert!(
        summary.ends_with(&format!("; most to {to} (5)")),
        "{summary}"
    );
    for wait in waits {
        assert_eq!(wait.join().unwrap().kind(), std::io::ErrorKind::TimedOut);
    }
}

#[test]
fn reloads_apply_new_thresholds_and_keep_the_running_config_on_a_broken_file() {
    require_root();
    let s = setup("reload", 245);
    let config = ConfigFile::new(&format!("{WINDOW}[thresholds]\nsyn_recv = 100\n"));
    let agent = Agent::builder()
        .inside(&s.x)
        .args(&["--config", config.path_str()])
        .start();
    let _listener = half_open(&s, 6);
    thread::sleep(Duration::from_millis(600));
    let before = agent.fresh_metrics();
    assert!(findings(&diagnosis(&agent), "half_open_connections").is_empty());
    let loaded_at = before
        .value("netmon_config_last_reload_success_timestamp_seconds", &[])
        .unwrap();
    let lo_packets = |m: &netmon_tests::Metrics| {
        m.counter(
            "netmon_network_packets_total",
            &[("interface", "lo"), ("direction", "rx")],
        )
    };

    // A lower threshold in the file: the finding appears without a restart.
    std::fs::write(
        &config.path,
        format!("{WINDOW}[thresholds]\nsyn_recv = 3\n"),
    )
    .unwrap();
    wait_for(&agent, "the finding after the reload", |d| {
        !findings(d, "half_open_connections").is_empty()
    });
    let after = agent.fresh_metrics();
    assert_eq!(
        after.value("netmon_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(
        after
            .value("netmon_config_last_reload_success_timestamp_seconds", &[])
            .unwrap()
            > loaded_at
    );
    // Counters and history go on across the reload.
    assert!(lo_packets(&after) >= lo_packets(&before));
    assert!(diagnosis(&agent)["window_seconds"].as_f64().unwrap() >= 1.0);

    // A broken file: reported, and the running configuration stays in force.
    std::fs::write(
        &config.path,
        format!("{WINDOW}[thresholds]\nsyn_recv = \"three\"\n# room for the fixed line below\n"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let broken = loop {
        let m = agent.fresh_metrics();
        if m.value("netmon_config_last_reload_successful", &[]) == Some(0.0) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the broken file was not reported"
        );
        thread::sleep(Duration::from_millis(200));
    };
    let status = agent.status();
    let error = status["config"]["last_error"].as_str().unwrap();
    assert!(error.contains("syn_recv"), "{error}");
    assert!(agent.log().contains("configuration not reloaded"));
    assert!(!findings(&diagnosis(&agent), "half_open_connections").is_empty());
    assert!(lo_packets(&broken) >= lo_packets(&after));

    // SIGHUP reloads on its own: the fixed file has the broken one's size and time, which is
    // all the file watcher compares, so only the signal can make the agent read it again.
    let broken_file = std::fs::metadata(&config.path).unwrap();
    let fixed = format!("{WINDOW}[thresholds]\nsyn_recv = 50\n");
    let fixed = format!(
        "{fixed}#{}\n",
        "-".repeat(broken_file.len() as usize - fixed.len() - 2)
    );
    std::fs::write(&config.path, &fixed).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&config.path)
        .unwrap()
        .set_modified(broken_file.modified().unwrap())
        .unwrap();
    let unseen = std::fs::metadata(&config.path).unwrap();
    assert_eq!(
        (unseen.len(), unseen.modified().unwrap()),
        (broken_file.len(), broken_file.modified().unwrap())
    );
    // Three of the watcher's checks: still the broken file's verdict.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        agent
            .fresh_metrics()
            .value("netmon_config_last_reload_successful", &[]),
        Some(0.0),
        "the watcher saw a change it cannot see"
    );
    // SAFETY: signalling the agent, a child of this test.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    wait_for(&agent, "the finding gone after SIGHUP", |d| {
        findings(d, "half_open_connections").is_empty()
    });
    let m = agent.fresh_metrics();
    assert_eq!(
        m.value("netmon_config_last_reload_successful", &[]),
        Some(1.0)
    );
}
