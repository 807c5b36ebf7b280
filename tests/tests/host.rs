//! The host view against the kernel's own answers, with the agent inside a test namespace:
//! interface counters and metadata (`ip -s link`), addresses, TCP states (`ss`), listeners
//! and their processes, and interfaces that come and go.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{TcpListener, TcpStream, UdpSocket},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{
    Agent, ConfigFile, Metrics, Netns, Veth, require_root, send_udp, sh, spawn_python,
};

/// `ip -s link` counters of every interface of a namespace, by name, in the order of
/// [`netmon_counters`].
fn kernel_counters(ns: &Netns) -> BTreeMap<String, [u64; 8]> {
    ns.all_link_stats()
        .into_iter()
        .map(|(name, s)| {
            let counters = [
                s.rx_bytes,
                s.rx_packets,
                s.rx_errors,
                s.rx_dropped,
                s.tx_bytes,
                s.tx_packets,
                s.tx_errors,
                s.tx_dropped,
            ];
            (name, counters)
        })
        .collect()
}

fn netmon_counters(m: &Metrics, interface: &str) -> [u64; 8] {
    let get = |family: &str, direction: &str| {
        m.value(
            family,
            &[("interface", interface), ("direction", direction)],
        )
        .unwrap_or_else(|| panic!("{family} of {interface} {direction} missing")) as u64
    };
    [
        get("netmon_network_bytes_total", "rx"),
        get("netmon_network_packets_total", "rx"),
        get("netmon_network_errors_total", "rx"),
        get("netmon_network_drops_total", "rx"),
        get("netmon_network_bytes_total", "tx"),
        get("netmon_network_packets_total", "tx"),
        get("netmon_network_errors_total", "tx"),
        get("netmon_network_drops_total", "tx"),
    ]
}

#[test]
fn interface_counters_and_metadata_match_the_kernel() {
    require_root();
    let (x, y) = (Netns::new("host-x"), Netns::new("host-y"));
    let veth = Veth::connect(&x, &y, 220);
    let dev = veth.a_dev.as_str();
    x.ip(&["addr", "add", "10.220.5.1/24", "brd", "+", "dev", dev]);
    x.exec(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
    ]);
    x.ip(&["-6", "addr", "add", "fd00:220::1/64", "dev", dev, "nodad"]);
    // Errors, which a veth never counts, from two VXLAN devices of x, made before the agent
    // starts so that every poll sees them: 3 frames whose outer header says congestion (ECN
    // CE) around an inner packet that cannot carry it are refused on the way in (rx errors),
    // and 4 datagrams towards a remote end with no route fail on the way out (tx errors).
    for (vx, args) in [
        (
            "nmvx1",
            vec!["id", "42", "local", veth.a_ip.as_str(), "dstport", "4789"],
        ),
        (
            "nmvx2",
            vec!["id", "43", "remote", "10.250.0.1", "dstport", "4790"],
        ),
    ] {
        x.ip(&[&["link", "add", vx, "type", "vxlan"], &args[..]].concat());
        x.ip(&["link", "set", vx, "up"]);
    }
    x.ip(&["addr", "add", "10.223.0.1/24", "dev", "nmvx2"]);
    x.ip(&[
        "neigh",
        "add",
        "10.223.0.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        "nmvx2",
        "nud",
        "permanent",
    ]);
    // The test scrapes over a control link of its own, so that the compared interfaces carry
    // only the test's traffic.
    let control = Veth::connect_named(&x, &y, 222, "nmctl", "nmctlpeer");
    let config = ConfigFile::new(&format!("[link_capacity_mbps]\n{dev} = 100\n"));
    let agent = Agent::builder()
        .inside(&x)
        .reached_from(&control.a_ip, &y)
        .args(&["--config", config.path_str()])
        .start();

    send_udp(&x, &veth.a_ip, &format!("{}:9", veth.b_ip), 30, 200);
    send_udp(&y, &veth.b_ip, &format!("{}:9", veth.a_ip), 20, 300);
    // Drops on both sides, in numbers of their own, so that a field read in another's place
    // shows: 5 datagrams too long for the far end's MTU die in the veth on the way out
    // (tx_dropped), 7 frames of a protocol nobody handles die on the way in (rx_dropped).
    y.ip(&["link", "set", &veth.b_dev, "mtu", "1000"]);
    send_udp(&x, &veth.a_ip, &format!("{}:9", veth.b_ip), 5, 1200);
    let mac = |ns: &Netns, dev: &str| {
        ns.exec(&["cat", &format!("/sys/class/net/{dev}/address")])
            .trim()
            .replace(':', "")
    };
    let frame = format!(
        "{}{}88b5{}",
        mac(&x, dev),
        mac(&y, &veth.b_dev),
        "00".repeat(50)
    );
    y.exec(&[
        "python3",
        "-c",
        &format!(
            "import socket\ns = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
             s.bind(('{}', 0))\nfor _ in range(7): s.send(bytes.fromhex('{frame}'))\n",
            veth.b_dev
        ),
    ]);

    send_udp(&x, "10.223.0.1", "10.223.0.2:9", 4, 10);
    y.exec(&[
        "python3",
        "-c",
        &format!(
            "import socket\n\
             vxlan = bytes([8, 0, 0, 0, 0, 0, 42, 0])\n\
             ethernet = bytes.fromhex('020000000001' '020000000009' '0800')\n\
             ip = bytes.fromhex('4500001c000000004011' '0000' '0a0a0a01' '0a0a0a02') + bytes(8)\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 3)\n\
             for _ in range(3): s.sendto(vxlan + ethernet + ip, ('{}', 4789))\n",
            veth.a_ip
        ),
    ]);

    // Compare at a quiet moment: the kernel's counters the same before and after the scrape.
    let quiet = |mut counters: BTreeMap<String, [u64; 8]>| {
        counters.remove("nmctl");
        counters
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (kernel, metrics) = loop {
        let before = quiet(kernel_counters(&x));
        let metrics = agent.fresh_metrics();
        if quiet(kernel_counters(&x)) == before {
            break (before, metrics);
        }
        assert!(Instant::now() < deadline, "counters never settled");
        thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(kernel.len(), 4, "{kernel:?}");
    for (name, counters) in &kernel {
        assert_eq!(&netmon_counters(&metrics, name), counters, "{name}");
    }
    assert!(
        metrics
            .value("netmon_network_up", &[("interface", "nmctl")])
            .is_some()
    );
    assert!(kernel[dev][1] >= 27 && kernel[dev][5] >= 30);
    // rx dropped, tx dropped; the errors stay zero (a veth makes none).
    assert_eq!(
        [
            kernel[dev][3],
            kernel[dev][7],
            kernel[dev][2],
            kernel[dev][6]
        ],
        [7, 5, 0, 0],
        "{kernel:?}"
    );
    // rx errors, tx errors.
    assert_eq!(
        [kernel["nmvx1"][2], kernel["nmvx2"][6]],
        [3, 4],
        "{kernel:?}"
    );

    let link: serde_json::Value =
        serde_json::from_str(&x.ip(&["-j", "link", "show", "dev", dev])).unwrap();
    let labels = [("interface", dev)];
    assert_eq!(
        metrics.value("netmon_network_mtu_bytes", &labels),
        link[0]["mtu"].as_f64()
    );
    assert_eq!(metrics.value("netmon_network_up", &labels), Some(1.0));
    let info = metrics.find("netmon_network_info", &labels);
    assert_eq!(info[0].0["address"], link[0]["address"].as_str().unwrap());
    assert_eq!(info[0].0["operstate"], "up");
    let sysfs = |file: &str| x.exec(&["cat", &format!("/sys/class/net/{dev}/{file}")]);
    let speed: f64 = sysfs("speed").trim().parse().unwrap();
    assert_eq!(info[0].0["duplex"], sysfs("duplex").trim());
    assert_eq!(
        metrics.value("netmon_network_speed_bytes", &labels),
        Some(speed * 1e6 / 8.0)
    );
    assert_eq!(
        metrics.value("netmon_network_capacity_bytes", &labels),
        Some(100e6 / 8.0)
    );
    // Loopback reports no speed: unknown stays unknown.
    assert_eq!(
        metrics.value("netmon_network_speed_bytes", &[("interface", "lo")]),
        None
    );

    let address = |family: &str, address: &str| {
        metrics.find(
            "netmon_network_address_info",
            &[("interface", dev), ("family", family), ("address", address)],
        )
    };
    let v4 = address("inet", "10.220.5.1");
    assert_eq!(v4[0].0["prefix_length"], "24");
    assert_eq!(v4[0].0["broadcast"], "10.220.5.255");
    assert_eq!(address("inet", "10.220.0.1")[0].0["broadcast"], "");
    assert_eq!(address("inet6", "fd00:220::1")[0].0["prefix_length"], "64");
    assert!(
        metrics
            .find("netmon_network_address_info", &[("family", "link")])
            .is_empty()
    );

    let item: serde_json::Value =
        serde_json::from_str(&agent.get(&format!("/api/v1/interfaces/{dev}")).body).unwrap();
    assert_eq!(item["name"], dev);
    assert_eq!(item["counters"]["tx_packets"], kernel[dev][5]);
    assert_eq!(item["capacity_mbps"], 100);
    let missing = agent.get("/api/v1/interfaces/nope0");
    assert_eq!(missing.status, 404);
    let error: serde_json::Value = serde_json::from_str(&missing.body).unwrap();
    assert!(error["error"].as_str().unwrap().contains("nope0"));
    let summary: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/summary").body).unwrap();
    assert_eq!(summary["interfaces"], 5);
    assert_eq!(
        summary["per_interface"].as_array().unwrap().len(),
        5,
        "{summary}"
    );

    // An interface made while the agent runs appears within a poll, and goes as quickly.
    x.ip(&[
        "link", "add", "nmdyn", "type", "veth", "peer", "name", "nmdynp",
    ]);
    let m = agent.fresh_metrics();
    assert!(
        m.value("netmon_network_mtu_bytes", &[("interface", "nmdyn")])
            .is_some()
    );
    x.ip(&["link", "del", "nmdyn"]);
    let m = agent.fresh_metrics();
    assert!(
        m.find("netmon_network_mtu_bytes", &[("interface", "nmdyn")])
            .is_empty()
    );
}

/// TCP sockets of a namespace by state, as `ss` sees them, in netmon's state names.
fn ss_states(ns: &Netns) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = [
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
    ]
    .into_iter()
    .map(|s| (s.to_string(), 0))
    .collect();
    for line in ns.exec(&["ss", "-tanH"]).lines() {
        let state = match line.split_whitespace().next().unwrap() {
            "ESTAB" => "ESTABLISHED",
            "SYN-SENT" => "SYN_SENT",
            "SYN-RECV" => "SYN_RECV",
            "FIN-WAIT-1" => "FIN_WAIT1",
            "FIN-WAIT-2" => "FIN_WAIT2",
            "TIME-WAIT" => "TIME_WAIT",
            "UNCONN" | "CLOSE" => "CLOSE",
            "CLOSE-WAIT" => "CLOSE_WAIT",
            "LAST-ACK" => "LAST_ACK",
            "LISTEN" => "LISTEN",
            "CLOSING" => "CLOSING",
            other => panic!("unknown ss state {other}"),
        };
        *counts.get_mut(state).unwrap() += 1;
    }
    counts
}

/// Local ports of the ephemeral range that some TCP socket other than a listener holds.
fn ss_ephemeral_ports(ns: &Netns) -> usize {
    let range = ns.exec(&["sysctl", "-n", "net.ipv4.ip_local_port_range"]);
    let range: Vec<u16> = range
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let ports: BTreeSet<u16> = ns
        .exec(&["ss", "-tanH"])
        .lines()
        .filter(|line| !line.starts_with("LISTEN"))
        .map(|line| {
            let local = line.split_whitespace().nth(3).unwrap();
            local.rsplit(':').next().unwrap().parse().unwrap()
        })
        .filter(|port| (range[0]..=range[1]).contains(port))
        .collect();
    ports.len()
}

fn netmon_states(m: &Metrics) -> BTreeMap<String, u64> {
    m.find("netmon_network_connections", &[])
        .into_iter()
        .map(|(labels, value)| (labels["status"].clone(), value as u64))
        .collect()
}

#[test]
fn connections_by_state_match_the_socket_dump() {
    require_root();
    let (x, y) = (Netns::new("conn-x"), Netns::new("conn-y"));
    let veth = Veth::connect(&x, &y, 221);
    x.exec(&["sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=0"]);
    // A hundred ephemeral ports, so that the few the test's connections take (its requests to
    // the agent among them) show in the diagnosis.
    x.exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40099"]);
    let config = ConfigFile::new("[thresholds]\nephemeral_ports_percent = 1\n");
    let agent = Agent::builder()
        .inside(&x)
        .args(&["--config", config.path_str()])
        .start();
    let (xip, yip) = (veth.a_ip.clone(), veth.b_ip.clone());

    // LISTEN + ESTABLISHED + CLOSE_WAIT + FIN_WAIT2 + TIME_WAIT on x's side, peers in y.
    let listener = {
        let addr = format!("{xip}:7000");
        x.run(move || TcpListener::bind(addr).unwrap())
    };
    let to_x = format!("{xip}:7000");
    let clients: Vec<TcpStream> = {
        let to_x = to_x.clone();
        y.run(move || (0..6).map(|_| TcpStream::connect(&to_x).unwrap()).collect())
    };
    let mut accepted: Vec<TcpStream> = (0..6).map(|_| listener.accept().unwrap().0).collect();
    let mut clients = clients.into_iter();
    // Two peers close: their x sides wait in CLOSE_WAIT.
    drop(clients.next());
    drop(clients.next());
    // x closes two: FIN_WAIT2 while the peers stay open...
    accepted.truncate(4);
    let fin_wait = accepted.split_off(2);
    drop(fin_wait);
    // ...and x closes one whose peer closes too: TIME_WAIT.
    let closing = accepted.pop();
    drop(closing);
    drop(clients.next());
    let _still_open: Vec<TcpStream> = clients.collect();

    // SYN_SENT: x connects to a port of y that drops SYNs.
    y.exec(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "7100", "-j", "DROP",
    ]);
    let to_y = format!("{yip}:7100");
    let file = std::fs::File::open(x.path()).unwrap();
    thread::spawn(move || {
        use std::os::fd::AsRawFd as _;
        // SAFETY: entering the test's namespace on this detached thread only.
        unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        let _ = TcpStream::connect_timeout(&to_y.parse().unwrap(), Duration::from_secs(60));
    });
    // SYN_RECV: x drops the handshake's final ACK on port 7200, so its request stays half open.
    let _half = {
        let addr = format!("{xip}:7200");
        x.run(move || TcpListener::bind(addr).unwrap())
    };
    x.exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "7200",
        "--tcp-flags",
        "SYN,ACK",
        "ACK",
        "-j",
        "DROP",
    ]);
    let to_half = format!("{xip}:7200");
    y.run(move || {
        let stream = TcpStream::connect(to_half).unwrap();
        // The client believes it is connected; keep the socket for the test's life.
        std::mem::forget(stream);
    });
    // IPv6: a listener and a connection inside x over ::1, both ends counted.
    let v6 = x.run(|| {
        let listener = TcpListener::bind("[::1]:7300").unwrap();
        let client = TcpStream::connect("[::1]:7300").unwrap();
        let server = listener.accept().unwrap().0;
        (listener, client, server)
    });

    let deadline = Instant::now() + Duration::from_secs(20);
    let (kernel, metrics, diagnosis) = loop {
        let before = (ss_states(&x), ss_ephemeral_ports(&x));
        let metrics = agent.fresh_metrics();
        let diagnosis = agent.get("/api/v1/diagnosis").body;
        if (ss_states(&x), ss_ephemeral_ports(&x)) == before {
            break (before, metrics, diagnosis);
        }
        assert!(Instant::now() < deadline, "socket states never settled");
        thread::sleep(Duration::from_millis(200));
    };
    let (kernel, ports) = kernel;
    assert_eq!(netmon_states(&metrics), kernel);
    // At least the SYN_SENT connection and the IPv6 client hold ephemeral ports.
    assert!(ports >= 2, "{ports} ephemeral ports held in x");
    let diagnosis: serde_json::Value = serde_json::from_str(&diagnosis).unwrap();
    let finding = diagnosis["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "ephemeral_port_exhaustion")
        .unwrap_or_else(|| panic!("no ephemeral port finding in {diagnosis:#}"));
    let evidence = |name: &str| {
        finding["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(evidence("in_use"), ports as f64, "{finding:#}");
    assert_eq!(evidence("range_size"), 100.0, "{finding:#}");
    // Counted by the kernel's socket iterator on this kernel.
    let status = agent.status();
    assert_eq!(status["connections_source"], "socket_iterator", "{status}");
    for state in [
        "LISTEN",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "FIN_WAIT2",
        "TIME_WAIT",
        "SYN_SENT",
        "SYN_RECV",
    ] {
        assert!(kernel[state] > 0, "no {state} socket was made: {kernel:?}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/connections").body).unwrap();
    let listen = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["state"] == "LISTEN")
        .unwrap();
    assert_eq!(listen["count"], kernel["LISTEN"]);
    drop((v6, accepted, listener));
}

fn listeners_of(m: &Metrics, protocol: &str, port: &str) -> Vec<(String, String)> {
    m.find(
        "netmon_listening_socket_info",
        &[("protocol", protocol), ("port", port)],
    )
    .into_iter()
    .map(|(labels, _)| (labels["pid"].clone(), labels["process"].clone()))
    .collect()
}

#[test]
fn listening_sockets_name_their_processes() {
    require_root();
    let x = Netns::new("listen-x");
    let (mut before, ready) = spawn_python(
        &x,
        "import socket, time\n\
         t = socket.socket(); t.bind(('0.0.0.0', 7401)); t.listen()\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 7402))\n\
         print('ready', flush=True); time.sleep(120)",
    );
    assert_eq!(ready, "ready");
    let agent = Agent::builder().inside(&x).start();
    // Opened after the agent started, and shared with a forked child.
    let (mut after, child_pid) = spawn_python(
        &x,
        "import os, socket, time\n\
         t = socket.socket(); t.bind(('127.0.0.1', 7403)); t.listen()\n\
         pid = os.fork()\n\
         if pid == 0:\n    time.sleep(120)\n\
         else:\n    print(pid, flush=True); time.sleep(120)",
    );
    let m = agent.fresh_metrics();
    let (before_pid, after_pid) = (before.id().to_string(), after.id().to_string());
    assert_eq!(
        listeners_of(&m, "tcp", "7401"),
        vec![(before_pid.clone(), "python3".to_string())]
    );
    assert_eq!(
        listeners_of(&m, "udp", "7402"),
        vec![(before_pid, "python3".to_string())]
    );
    let mut shared = listeners_of(&m, "tcp", "7403");
    shared.sort();
    let mut expected = vec![
        (after_pid, "python3".to_string()),
        (child_pid, "python3".to_string()),
    ];
    expected.sort();
    assert_eq!(shared, expected);
    let json: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/listening").body).unwrap();
    let item = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["port"] == 7403)
        .unwrap();
    assert_eq!(item["processes"].as_array().unwrap().len(), 2);
    // Found by the kernel's file iterator on this kernel, not in /proc.
    let status = agent.status();
    assert_eq!(status["socket_owners_source"], "file_iterator", "{status}");
    // Every process of the test's namespace, the forked child included.
    for pid in x.exec(&["ip", "netns", "pids", &x.name]).split_whitespace() {
        let _ = Command::new("kill").arg(pid).status();
    }
    for child in [&mut before, &mut after] {
        let _ = child.wait();
    }
}

#[test]
fn a_thousand_interfaces_come_and_go_without_a_trace() {
    require_root();
    const PAIRS: usize = 500;
    let x = Netns::new("many-x");
    let y = Netns::new("many-y");
    let agent = Agent::builder().inside(&x).start();
    let baseline = agent.fresh_metrics();
    let entries = |m: &Metrics| m.counter("netmon_probe_map_entries", &[("map", "traffic")]);

    let subnet = |i: usize| format!("10.{}.{}", 50 + i / 64, (i % 64) * 4);
    let mut x_batch = String::new();
    let mut y_batch = String::new();
    for i in 0..PAIRS {
        x_batch.push_str(&format!(
            "link add nmk{i} type veth peer name nmq{i} netns {}\n",
            y.name
        ));
        x_batch.push_str(&format!(
            "addr add {}.1/30 dev nmk{i}\nlink set nmk{i} up\n",
            subnet(i)
        ));
        y_batch.push_str(&format!(
            "addr add {}.2/30 dev nmq{i}\nlink set nmq{i} up\n",
            subnet(i)
        ));
    }
    let batch = |ns: &Netns, text: &str| {
        let path = std::env::temp_dir().join(format!("{}.batch", ns.name));
        std::fs::write(&path, text).unwrap();
        sh("ip", &["-n", &ns.name, "-batch", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(path);
    };
    batch(&x, &x_batch);
    batch(&y, &y_batch);
    let targets: Vec<String> = (0..PAIRS).map(|i| format!("{}.2:9", subnet(i))).collect();
    x.run(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        for target in targets {
            socket.send_to(b"x", target).unwrap();
        }
    });
    thread::sleep(Duration::from_millis(500));
    // A neighbour that was not resolved at once is asked again a second later, and an answer
    // to a stale neighbour is confirmed five seconds later: packets may still move while the
    // agent polls. The kernel's counters read before the poll and after it bracket its counts.
    let before = (x.all_link_stats(), y.all_link_stats());
    let m = agent.fresh_metrics();
    let after = (x.all_link_stats(), y.all_link_stats());
    let ours = |m: &Metrics, family: &str| {
        m.samples
            .iter()
            .filter(|(name, labels, _)| {
                name == family
                    && labels
                        .get("interface")
                        .is_some_and(|i| i.starts_with("nmk") || i.starts_with("nmq"))
            })
            .count()
    };
    assert_eq!(ours(&m, "netmon_network_mtu_bytes"), PAIRS);
    // A table of 4,096 slots takes a thousand interfaces without refusing one.
    assert_eq!(
        m.counter("netmon_probe_map_full_total", &[("map", "traffic")]),
        0
    );
    // Every pair's datagram is counted on both of its ends: each end's count lies between the
    // kernel's own before and after the poll. A datagram whose neighbour could not be resolved
    // among a thousand never leaves, so a few ends may carry nothing at all.
    let mut silent = Vec::new();
    for i in 0..PAIRS {
        for (stats, interface, direction) in [
            ((&before.0, &after.0), format!("nmk{i}"), "tx"),
            ((&before.1, &after.1), format!("nmq{i}"), "rx"),
        ] {
            let counted = m.counter(
                "netmon_kernel_packets_total",
                &[("interface", &interface), ("direction", direction)],
            );
            let [low, high] = [stats.0, stats.1].map(|all| {
                let kernel = all[&interface];
                if direction == "tx" {
                    kernel.tx_packets
                } else {
                    kernel.rx_packets
                }
            });
            assert!(
                (low..=high).contains(&counted),
                "{counted} {direction} packets counted on {interface}, the kernel's {low} \
                 before the poll and {high} after"
            );
            if counted == 0 {
                silent.push(interface);
            }
        }
    }
    assert!(
        silent.len() <= 10,
        "ends that sent or received nothing: {silent:?}"
    );
    // The baseline may still hold slots of namespaces that an earlier test deleted and the
    // agent frees later, so the pairs' slots are counted from zero.
    assert!(entries(&m) >= 2 * PAIRS as u64);

    // Deleting y deletes every pair.
    drop(y);
    let deadline = Instant::now() + Duration::from_secs(60);
    let m = loop {
        let m = agent.fresh_metrics();
        if ours(&m, "netmon_network_mtu_bytes") == 0 && ours(&m, "netmon_kernel_packets_total") == 0
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "interfaces still reported after 60 s"
        );
        thread::sleep(Duration::from_millis(500));
    };
    let text = agent.get("/metrics").body;
    assert!(!text.contains("nmk") && !text.contains("nmq"));
    assert!(
        entries(&m) <= entries(&baseline) + 2,
        "map entries {} after, {} before",
        entries(&m),
        entries(&baseline)
    );
}
