//! Degraded modes: the agent starts without BTF, or with a collector that cannot read its
//! source, serves everything that does not need the missing piece, and says what is missing.
//! (Without BPF permission: tests/tests/cli.rs; with a hook's method missing:
//! tests/tests/probes.rs.)
use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    thread,
    time::Duration,
};

use netmon::model::probes::{AttachMethod, Hook};
use netmon_tests::{Agent, Metrics, probe_status, require_root};

/// Asserts that the status field `field` is a text that mentions `text`.
fn assert_says(status: &serde_json::Value, field: &str, text: &str) {
    assert!(
        status[field].as_str().is_some_and(|e| e.contains(text)),
        "{field}: {status}"
    );
}

/// Runs the agent in a private mount namespace after `setup` (shell commands) ran there.
fn agent_with_mounts(setup: &str) -> Agent {
    let script = format!("{setup} && exec \"$0\" \"$@\"");
    Agent::builder()
        .run_by(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .start()
}

/// Asserts that `hook` (its status item `p`) did not attach, every method it has tried and
/// reported as failing for want of BTF.
fn assert_every_method_wants_btf(hook: Hook, p: &serde_json::Value) {
    assert!(p["method"].is_null(), "{p}");
    let failures = p["failures"].as_array().unwrap();
    let methods = AttachMethod::ALL
        .into_iter()
        .filter(|method| hook.offers(*method))
        .count();
    assert_eq!(
        failures.len(),
        methods,
        "every method of the hook tried: {p}"
    );
    assert!(
        failures[0]["error"].as_str().unwrap().contains("no BTF"),
        "{p}"
    );
    assert!(
        failures[1]["error"].as_str().unwrap().contains("BTF"),
        "{p}"
    );
}

#[test]
fn without_btf_the_hooks_that_need_it_are_reported_and_the_rest_count() {
    require_root();
    let agent = agent_with_mounts("mount --bind /dev/null /sys/kernel/btf/vmlinux");
    let s = agent.status();
    for hook in Hook::ALL {
        let p = probe_status(&s, hook.as_str());
        match hook {
            // Hooks that follow kernel struct pointers need offsets from BTF.
            Hook::NetDevXmit
            | Hook::NetifReceiveSkb
            | Hook::KfreeSkb
            | Hook::SockSendLength
            | Hook::SockRecvLength => assert_every_method_wants_btf(hook, p),
            // The state hook falls back to its classic tracepoint, whose record has what it
            // needs.
            Hook::InetSockSetState => assert_eq!(p["method"], "tracepoint"),
            // The TCP event hooks need no struct at all.
            Hook::TcpRetransmitSkb | Hook::TcpSendReset | Hook::TcpReceiveReset => {
                assert_eq!(p["method"], "raw_tp", "{}", hook.as_str())
            }
        }
    }
    let m = agent.fresh_metrics();
    assert_eq!(
        m.value(
            "netmon_probe_attached",
            &[("probe", "net_dev_xmit"), ("method", "none")]
        ),
        Some(0.0)
    );
    assert!(agent.log().contains("not attached"), "{}", agent.log());
    // Connections by state come from the socket dump, and say why.
    assert_eq!(s["connections_source"], "socket_dump", "{s}");
    assert_says(&s, "socket_iterator_error", "BTF");
    // The holders of sockets are found in /proc, and say why.
    assert_eq!(s["socket_owners_source"], "proc", "{s}");
    assert_says(&s, "file_iterator_error", "BTF");
    // TCP transitions still count (namespace unknown without BTF: 0).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 1];
        let _ = s.read(&mut b);
    });
    TcpStream::connect(addr).unwrap().write_all(b"x").unwrap();
    server.join().unwrap();
    thread::sleep(Duration::from_millis(300));
    let m = agent.fresh_metrics();
    assert!(
        m.counter(
            "netmon_tcp_state_transitions_total",
            &[
                ("netns", "0"),
                ("family", "inet"),
                ("from", "SYN_SENT"),
                ("to", "ESTABLISHED")
            ]
        ) >= 1
    );
    // Opens by peer need the socket's offsets: none counted, and the status says so; the
    // open connections, from the socket dump, are still shown.
    let peers = m.find("netmon_tcp_peer_connects_total", &[]);
    assert!(peers.iter().all(|(_, count)| *count == 0.0), "{peers:?}");
    let state = probe_status(&s, "inet_sock_set_state");
    let limits = state["limits"].as_str().unwrap_or_default();
    assert!(limits.contains("not counted by peer"), "{state}");
    // Host statistics are complete.
    assert!(
        m.value("netmon_network_mtu_bytes", &[("interface", "lo")])
            .is_some()
    );
}

#[test]
fn a_collector_that_cannot_read_its_source_is_reported_and_the_others_run() {
    require_root();
    // sysfs without the namespace's interfaces: speed and duplex cannot be read.
    let agent = agent_with_mounts("mount -t tmpfs none /sys/class/net");
    let mut last = Metrics::default();
    for _ in 0..3 {
        last = agent.fresh_metrics();
    }
    assert_eq!(
        last.value("netmon_collector_success", &[("collector", "link_details")]),
        Some(0.0)
    );
    for collector in [
        "interfaces",
        "connections",
        "listening",
        "probes",
        "addresses",
    ] {
        assert_eq!(
            last.value("netmon_collector_success", &[("collector", collector)]),
            Some(1.0),
            "{collector}"
        );
    }
    assert!(
        last.value("netmon_network_connections", &[("status", "LISTEN")])
            .unwrap()
            >= 1.0
    );
    let s = agent.status();
    let failed = s["collectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["collector"] == "link_details")
        .unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("is missing: sysfs does not show"),
        "{failed}"
    );
    // What the failed collector adds is missing; the rest of each interface is there.
    assert!(
        last.value("netmon_network_mtu_bytes", &[("interface", "lo")])
            .is_some()
    );
    assert!(agent.log().contains("collector failed"));
}

/// In a PID namespace of its own the agent cannot use the kernel's process ids that the socket
/// file iterator gives: it finds the holders of sockets in its `/proc`, with the ids it sees,
/// and says why.
#[test]
fn in_a_pid_namespace_of_its_own_socket_holders_come_from_proc() {
    require_root();
    let agent = Agent::builder()
        .run_by(&["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"])
        .start();
    let s = agent.status();
    assert_eq!(s["socket_owners_source"], "proc", "{s}");
    assert_says(&s, "file_iterator_error", "PID namespace of its own");
    // Its own listener, held by itself: the first process of the namespace.
    let port = agent.addr.port().to_string();
    let m = agent.fresh_metrics();
    let holders: Vec<(String, String)> = m
        .find(
            "netmon_listening_socket_info",
            &[("protocol", "tcp"), ("port", &port)],
        )
        .into_iter()
        .map(|(labels, _)| (labels["pid"].clone(), labels["process"].clone()))
        .collect();
    assert_eq!(holders, vec![("1".to_string(), "netmon".to_string())]);
}
