use std::{sync::Arc, time::Duration};

use netmon_common::drops::DropKey;

use super::*;
use crate::model::{
    DropCount, Interface, InterfaceCounters, ListeningSocket, Owner, Snapshot,
    processes::{IoCounts, IoEntry, ProcessEntry},
};

const NETNS: u32 = 4026531840;

fn interface(name: &str, counters: InterfaceCounters) -> Interface {
    Interface {
        name: name.into(),
        ifindex: 2,
        up: true,
        speed_mbps: Some(1000),
        capacity_mbps: Some(1000),
        duplex: Some("full".into()),
        counters,
        ..Default::default()
    }
}

fn snapshot(at: f64, counters: InterfaceCounters) -> Snapshot {
    Snapshot {
        netns: NETNS,
        monotonic_seconds: at,
        interfaces: vec![interface("eth0", counters)],
        ..Default::default()
    }
}

fn history(snapshots: Vec<Snapshot>) -> History {
    let mut history = History::new(100);
    for s in snapshots {
        history.push(Arc::new(s));
    }
    history
}

fn steady(seconds: u64, per_second: InterfaceCounters) -> Vec<Snapshot> {
    (0..=seconds)
        .map(|t| {
            let c = &per_second;
            snapshot(
                t as f64,
                InterfaceCounters {
                    rx_bytes: c.rx_bytes * t,
                    rx_packets: c.rx_packets * t,
                    rx_errors: c.rx_errors * t,
                    rx_dropped: c.rx_dropped * t,
                    tx_bytes: c.tx_bytes * t,
                    tx_packets: c.tx_packets * t,
                    tx_errors: c.tx_errors * t,
                    tx_dropped: c.tx_dropped * t,
                },
            )
        })
        .collect()
}

fn run(history: &History, config: &Config) -> Diagnosis {
    diagnose(
        history,
        &RecentDrops::new(1),
        Duration::from_secs(60),
        config,
    )
}

fn quiet() -> InterfaceCounters {
    InterfaceCounters {
        rx_bytes: 10_000,
        rx_packets: 100,
        tx_bytes: 10_000,
        tx_packets: 100,
        ..Default::default()
    }
}

#[test]
fn a_quiet_healthy_host_has_no_findings() {
    let diagnosis = run(&history(steady(10, quiet())), &Config::default());
    assert_eq!(diagnosis.findings, vec![]);
    assert_eq!(diagnosis.status, Some(Severity::Ok));
    assert_eq!(diagnosis.window_seconds, 10.0);
}

#[test]
fn steady_errors_on_a_half_duplex_link() {
    let mut snapshots = steady(
        10,
        InterfaceCounters {
            rx_errors: 3,
            ..quiet()
        },
    );
    for s in &mut snapshots {
        s.interfaces[0].duplex = Some("half".into());
        s.interfaces[0].speed_mbps = Some(100);
    }
    let diagnosis = run(&history(snapshots), &Config::default());
    let finding = &diagnosis.findings[0];
    assert_eq!(
        (finding.id, finding.severity),
        ("high_error_rate", Severity::Warning)
    );
    assert_eq!(finding.evidence[0].value, 3.0);
    let steps = finding.next_steps.join(" ");
    assert!(steps.contains("half duplex"), "{steps}");
    assert!(steps.contains("100 Mbit/s"), "{steps}");
    assert!(steps.contains("grew in 10 of 10 intervals"), "{steps}");
}

/// Five quiet seconds of eth0 in which the firewall drops 20 packets a second.
fn firewall_drops() -> Vec<Snapshot> {
    let mut snapshots = steady(5, quiet());
    for (t, s) in snapshots.iter_mut().enumerate() {
        s.kernel.drops = vec![DropCount {
            key: DropKey::default(),
            netns: NETNS,
            netns_cookie: 0,
            ifindex: 2,
            interface: "eth0".into(),
            protocol: "ipv4".into(),
            reason: "NETFILTER_DROP".into(),
            count: 20 * t as u64,
        }];
    }
    snapshots
}

#[test]
fn firewall_drops_are_packet_loss_with_their_reason() {
    let snapshots = firewall_drops();
    let diagnosis = run(&history(snapshots), &Config::default());
    let finding = &diagnosis.findings[0];
    assert_eq!(finding.id, "packet_loss");
    // 100 dropped of 1000 packets: 10 %, twice the critical factor of 1 %.
    assert_eq!(finding.severity, Severity::Critical);
    assert!(
        finding.summary.contains("100 of 1000"),
        "{}",
        finding.summary
    );
    assert!(
        finding.summary.contains("NETFILTER_DROP"),
        "{}",
        finding.summary
    );
    assert!(finding.next_steps[0].contains("iptables"));
    assert!(
        finding
            .evidence
            .iter()
            .any(|e| e.name == "reason:NETFILTER_DROP" && e.value == 100.0)
    );
}

#[test]
fn packet_loss_quotes_the_sampled_flows_and_their_processes() {
    use crate::model::drops::DropSampleRecord;
    let snapshots = firewall_drops();
    let sample = |port: u16, owner: Option<(&str, u32)>| DropSampleRecord {
        netns: NETNS,
        location: "nf_hook_slow+0x9c".into(),
        pid: owner.map(|(_, pid)| pid),
        process: owner.map(|(name, _)| name.to_string()),
        ..crate::model::drops::udp_sample(1, "NETFILTER_DROP", port)
    };
    let mut recent = RecentDrops::new(10);
    recent.add([
        sample(9100, Some(("app", 42))),
        sample(9100, Some(("app", 42))),
        sample(53, None),
    ]);
    let diagnosis = diagnose(
        &history(snapshots),
        &recent,
        Duration::from_secs(60),
        &Config::default(),
    );
    let finding = &diagnosis.findings[0];
    let flows: Vec<&Evidence> = finding
        .evidence
        .iter()
        .filter(|e| e.name.starts_with("flow:"))
        .collect();
    assert_eq!(flows.len(), 2);
    assert_eq!(
        flows[0].name,
        "flow:udp 10.0.0.1:5000 -> 10.0.0.2:9100 NETFILTER_DROP at nf_hook_slow+0x9c"
    );
    assert_eq!((flows[0].value, flows[0].unit), (2.0, "samples"));
    let steps = finding.next_steps.join(" ");
    assert!(steps.contains("sockets of app[42]"), "{steps}");
}

#[test]
fn saturation_against_capacity() {
    let per_second = InterfaceCounters {
        tx_bytes: 110_000_000,
        tx_packets: 80_000,
        ..quiet()
    };
    let mut snapshots = steady(5, per_second);
    // The busiest sender of the interface's namespace is quoted; one elsewhere is not.
    let sender = |pid: u32, netns: u32, direction: &'static str, rate: f64| ProcessEntry {
        pid,
        name: format!("sender{pid}"),
        cgroup: "/".into(),
        cgroup_id: 1,
        service: None,
        netns,
        user: None,
        command_line: None,
        counts: IoCounts::default(),
        io: vec![IoEntry {
            direction,
            protocol: "tcp",
            bytes: 1,
            calls: 1,
            bytes_per_second: Some(rate),
        }],
    };
    snapshots.last_mut().unwrap().processes.processes = vec![
        sender(7, NETNS, "tx", 90e6),
        sender(8, NETNS + 1, "tx", 200e6),
        sender(9, NETNS, "rx", 300e6),
    ];
    let diagnosis = run(&history(snapshots), &Config::default());
    let finding = &diagnosis.findings[0];
    assert_eq!(
        (finding.id, finding.severity),
        ("bandwidth_saturation", Severity::Warning)
    );
    assert_eq!(finding.evidence[0].value.round(), 88.0);
    let quoted: Vec<(&str, f64)> = finding.evidence[3..]
        .iter()
        .map(|e| (e.name.as_str(), e.value))
        .collect();
    assert_eq!(
        quoted,
        vec![("process sender7 (pid 7) tx_bytes_per_second", 90e6)]
    );
}

fn listener(
    protocol: &'static str,
    address: &str,
    port: u16,
    owners: &[(u32, &str)],
) -> ListeningSocket {
    ListeningSocket {
        protocol,
        address: address.into(),
        port,
        processes: owners
            .iter()
            .map(|(pid, name)| Owner {
                pid: *pid,
                name: name.to_string(),
            })
            .collect(),
    }
}

#[test]
fn port_problems() {
    let config = Config::from_toml(
        r#"
        [[expected_ports]]
        port = 22
        process = "sshd"
        [[expected_ports]]
        port = 6379
        local_only = true
        [[expected_ports]]
        port = 443
        [[expected_ports]]
        port = 8080
        "#,
    )
    .unwrap();
    let mut snapshot = snapshot(0.0, quiet());
    snapshot.listening = vec![
        listener("tcp", "0.0.0.0", 22, &[(10, "dropbear")]),
        listener("tcp", "0.0.0.0", 6379, &[(11, "redis-server")]),
        listener("tcp", "0.0.0.0", 4444, &[(12, "nc")]),
        listener("tcp", "0.0.0.0", 8080, &[(13, "app")]),
        listener("tcp", "0.0.0.0", 8080, &[(14, "app")]),
    ];
    let diagnosis = run(&history(vec![snapshot]), &config);
    let ids: Vec<(&str, &str)> = diagnosis
        .findings
        .iter()
        .map(|f| (f.id, f.subject.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("expected_port_missing", "tcp/443"),
            ("bound_to_all_addresses", "tcp/6379"),
            ("expected_port_wrong_process", "tcp/22"),
            ("port_shared", "tcp/8080"),
            ("unexpected_listener", "tcp/4444"),
        ]
    );
    assert_eq!(diagnosis.status, Some(Severity::Critical));
}

#[test]
fn connection_state_surges() {
    let config = Config::from_toml("[thresholds]\nsyn_sent = 3\nclose_wait = 10").unwrap();
    let mut snapshot = snapshot(0.0, quiet());
    snapshot.connections.insert("SYN_SENT", 5);
    snapshot.connections.insert("CLOSE_WAIT", 10);
    let waiting = |peer: &str, opening: u64, netns: u32| crate::model::peers::TcpPeer {
        netns,
        role: "client",
        peer: peer.to_string(),
        port: "5432".to_string(),
        opening,
        ..Default::default()
    };
    let own = snapshot.netns;
    snapshot.kernel.peers = vec![
        waiting("10.0.3.7", 4, own),
        waiting("10.0.3.8", 1, own),
        waiting("10.0.3.9", 9, own + 1),
    ];
    let diagnosis = run(&history(vec![snapshot]), &config);
    assert_eq!(diagnosis.findings.len(), 1);
    let finding = &diagnosis.findings[0];
    assert_eq!(
        (finding.id, finding.subject.as_str()),
        ("syn_sent_surge", "SYN_SENT")
    );
    assert_eq!(finding.evidence[0].value, 5.0);
    // The peers of the agent's namespace the connects wait on, the most first.
    assert!(
        finding
            .summary
            .ends_with("; most to 10.0.3.7:5432 (4), 10.0.3.8:5432 (1)"),
        "{}",
        finding.summary
    );
    assert_eq!(finding.evidence[3].name, "10.0.3.7:5432");
}

#[test]
fn ephemeral_port_exhaustion() {
    let mut snapshot = snapshot(0.0, quiet());
    snapshot.ephemeral_ports = crate::model::EphemeralPorts {
        first: 32768,
        last: 60999,
        in_use: 27_000,
    };
    let diagnosis = run(&history(vec![snapshot.clone()]), &Config::default());
    let finding = &diagnosis.findings[0];
    assert_eq!(
        (finding.id, finding.severity),
        ("ephemeral_port_exhaustion", Severity::Critical)
    );
    assert_eq!(finding.evidence[0].value, 27_000.0);
    snapshot.ephemeral_ports.in_use = 23_000;
    let diagnosis = run(&history(vec![snapshot.clone()]), &Config::default());
    assert_eq!(diagnosis.findings[0].severity, Severity::Warning);
    snapshot.ephemeral_ports.in_use = 2_000;
    assert!(
        run(&history(vec![snapshot]), &Config::default())
            .findings
            .is_empty()
    );
}

#[test]
fn failing_peers_are_named_with_their_result() {
    let peer = |at: f64, ok: u64, refused: u64| {
        let mut snapshot = snapshot(at, quiet());
        snapshot.kernel.peers = vec![crate::model::peers::TcpPeer {
            netns: 4_026_532_000,
            role: "client",
            peer: "10.0.3.7".to_string(),
            port: "5432".to_string(),
            results: [ok, refused, 0, 0, 0].into(),
            ..Default::default()
        }];
        snapshot
    };
    let healthy = run(
        &history(vec![peer(0.0, 3, 1), peer(10.0, 9, 2)]),
        &Config::default(),
    );
    assert!(healthy.findings.is_empty(), "{healthy:?}");
    let failing = run(
        &history(vec![peer(0.0, 3, 1), peer(10.0, 15, 41)]),
        &Config::default(),
    );
    let finding = &failing.findings[0];
    assert_eq!(
        (finding.id, finding.severity, finding.subject.as_str()),
        (
            "peer_connect_failures",
            Severity::Warning,
            "netns 4026532000 client 10.0.3.7:5432"
        )
    );
    assert_eq!(
        finding.summary,
        "netns 4026532000: 40 of 52 connects to 10.0.3.7:5432 refused in 10 s"
    );
    let refused_only = run(
        &history(vec![peer(0.0, 3, 1), peer(10.0, 3, 6)]),
        &Config::default(),
    );
    assert_eq!(refused_only.findings[0].severity, Severity::Critical);
}

mod pressure {
    use super::*;
    use crate::model::pressure::{
        Conntrack, ListenQueue, NamespacePressure, Pressure, Qdisc, SoftnetCpu,
    };

    const NS: u32 = 4_026_532_000;

    /// A snapshot at `at` whose namespace `NS` has `pressure` and whose CPU 3 has `softnet`.
    fn under(at: f64, pressure: NamespacePressure, softnet: SoftnetCpu) -> Snapshot {
        let mut snapshot = snapshot(at, quiet());
        snapshot.pressure = Pressure {
            namespaces: vec![NamespacePressure {
                netns: NS,
                ..pressure
            }],
            softnet: vec![SoftnetCpu { cpu: 3, ..softnet }],
            tcp_memory: None,
        };
        snapshot
    }

    fn drop_count(reason: &str, interface: &str, count: u64) -> DropCount {
        DropCount {
            key: DropKey::default(),
            netns: NS,
            netns_cookie: 0,
            ifindex: 2,
            interface: interface.into(),
            protocol: "ipv4".into(),
            reason: reason.into(),
            count,
        }
    }

    fn findings(oldest: Snapshot, newest: Snapshot) -> Vec<Finding> {
        run(&history(vec![oldest, newest]), &Config::default()).findings
    }

    fn counters(pairs: &[(&str, u64)]) -> std::collections::BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_full_accept_queue_names_its_listener_and_process() {
        let listener = ListenQueue {
            address: "10.0.3.7".into(),
            port: 7500,
            length: 2,
            limit: 1,
            drops: 0,
            inode: 9,
            processes: vec![Owner {
                pid: 4242,
                name: "server".into(),
            }],
        };
        let at = |overflows| NamespacePressure {
            counters: counters(&[("TcpExt_ListenOverflows", overflows)]),
            listeners: vec![listener.clone()],
            ..NamespacePressure::default()
        };
        let quiet = findings(
            under(0.0, at(5), SoftnetCpu::default()),
            under(10.0, at(5), SoftnetCpu::default()),
        );
        assert!(quiet.is_empty(), "{quiet:?}");
        let mut newest = under(10.0, at(23), SoftnetCpu::default());
        newest.kernel.drops = vec![drop_count("TCP_LISTEN_OVERFLOW", "", 7)];
        let found = findings(under(0.0, at(5), SoftnetCpu::default()), newest);
        let finding = &found[0];
        assert_eq!(
            (finding.id, finding.severity, finding.subject.as_str()),
            (
                "accept_queue_overflow",
                Severity::Critical,
                "netns 4026532000"
            )
        );
        assert_eq!(
            finding.summary,
            "netns 4026532000: 18 drops at full accept queues in 10 s: full accept queue of \
             10.0.3.7:7500 (2 of 1), held by server (pid 4242)"
        );
        assert_eq!(finding.evidence[1].name, "TCP_LISTEN_OVERFLOW");
        assert_eq!(finding.evidence[1].value, 7.0);
    }

    /// An agent that starts, or reads a namespace in its turn, sees counters the namespace
    /// counted since it was made: they move from its first reading in the window.
    #[test]
    fn a_namespace_counts_from_its_first_reading_in_the_window() {
        let errors = |count| NamespacePressure {
            counters: counters(&[("Udp_RcvbufErrors", count)]),
            ..NamespacePressure::default()
        };
        let calm = SoftnetCpu::default;
        let unread = snapshot(0.0, quiet());
        let first = under(5.0, errors(900), calm());
        assert!(findings(unread.clone(), first.clone()).is_empty());
        let snapshots = vec![unread, first, under(10.0, errors(912), calm())];
        let found = run(&history(snapshots), &Config::default()).findings;
        assert_eq!(
            found[0].summary,
            "netns 4026532000: 12 UDP datagrams dropped at full receive buffers in 10 s"
        );
    }

    #[test]
    fn conntrack_near_its_limit_or_failing() {
        let at = |entries, drop| NamespacePressure {
            conntrack: Some(Conntrack {
                entries,
                limit: 1000,
                insert_failed: 0,
                drop,
                early_drop: 0,
            }),
            ..NamespacePressure::default()
        };
        let calm = SoftnetCpu::default;
        assert!(
            findings(
                under(0.0, at(500, 0), calm()),
                under(9.0, at(899, 0), calm())
            )
            .is_empty()
        );
        let full = findings(
            under(0.0, at(500, 0), calm()),
            under(9.0, at(950, 0), calm()),
        );
        assert_eq!(
            (full[0].id, full[0].severity),
            ("conntrack_full", Severity::Warning)
        );
        let failing = findings(
            under(0.0, at(500, 2), calm()),
            under(9.0, at(600, 5), calm()),
        );
        assert_eq!(failing[0].severity, Severity::Critical);
        assert_eq!(
            failing[0].summary,
            "netns 4026532000: connection tracking 60 % full (600 of 1000), 3 failed inserts \
             and drops in 9 s"
        );
    }

    #[test]
    fn a_cpu_whose_backlog_overflows_is_named() {
        let cpu = |dropped, times_squeezed| SoftnetCpu {
            dropped,
            times_squeezed,
            ..SoftnetCpu::default()
        };
        let none = NamespacePressure::default;
        assert!(
            findings(
                under(0.0, none(), cpu(4, 10)),
                under(5.0, none(), cpu(4, 900))
            )
            .is_empty()
        );
        let found = findings(
            under(0.0, none(), cpu(4, 10)),
            under(5.0, none(), cpu(10, 10)),
        );
        assert_eq!(
            (found[0].id, found[0].subject.as_str()),
            ("cpu_backlog", "cpu 3")
        );
        assert_eq!(
            found[0].summary,
            "cpu 3: 6 packets dropped at its full backlog and 0 times out of budget in 5 s"
        );
    }

    #[test]
    fn a_dropping_queueing_discipline_names_its_interface() {
        let at = |drops| NamespacePressure {
            qdiscs: vec![Qdisc {
                ifindex: 2,
                interface: "eth0".into(),
                kind: "tbf".into(),
                handle: "8001:".into(),
                drops,
                overlimits: 400,
                ..Qdisc::default()
            }],
            ..NamespacePressure::default()
        };
        let calm = SoftnetCpu::default;
        assert!(findings(under(0.0, at(10), calm()), under(5.0, at(99), calm())).is_empty());
        let found = findings(under(0.0, at(10), calm()), under(5.0, at(310), calm()));
        assert_eq!(
            (found[0].id, found[0].subject.as_str()),
            ("qdisc_drops", "netns 4026532000 eth0 tbf 8001:")
        );
        assert!(
            found[0].summary.contains("dropped 300 packets in 5 s"),
            "{found:?}"
        );
    }

    #[test]
    fn udp_receive_buffer_errors_name_their_namespace() {
        let at = |errors| NamespacePressure {
            counters: counters(&[("Udp_RcvbufErrors", errors)]),
            ..NamespacePressure::default()
        };
        let calm = SoftnetCpu::default;
        assert!(findings(under(0.0, at(3), calm()), under(5.0, at(3), calm())).is_empty());
        let found = findings(under(0.0, at(3), calm()), under(5.0, at(150), calm()));
        assert_eq!(
            (found[0].id, found[0].severity, found[0].subject.as_str()),
            (
                "udp_receive_buffer_errors",
                Severity::Critical,
                "netns 4026532000 udp"
            )
        );
    }
}
