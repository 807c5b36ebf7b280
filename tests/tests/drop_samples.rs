//! Samples of dropped packets against known drops made in the tests' own namespaces: their
//! flow, reason, interface, namespace, kernel function and process, and the budget that
//! bounds them in a storm.
use std::{
    net::UdpSocket,
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Agent, ConfigFile, Netns, Veth, require_root, send_udp, status_mib};
use serde_json::Value;

/// Every agent samples every drop of the host: the tests run one at a time, so that one's
/// drops do not spend another's budget.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The samples `/api/v1/drops/recent` gives for `query`, once at least `count` are there
/// (or after 10 s).
fn samples(agent: &Agent, query: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = agent.get(&format!("/api/v1/drops/recent?{query}"));
        assert_eq!(response.status, 200, "{}", response.body);
        let body: Value = serde_json::from_str(&response.body).unwrap();
        let items = body["items"].as_array().unwrap().clone();
        if items.len() >= count || Instant::now() > deadline {
            return items;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Pins the calling thread (and the threads it starts) to the first CPU it may run on.
fn pin_to_first_cpu() {
    // SAFETY: plain calls with a cpu_set_t owned here, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set);
        let first = (0..libc::CPU_SETSIZE as usize)
            .find(|&cpu| libc::CPU_ISSET(cpu, &set))
            .unwrap_or(0);
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(first, &mut one);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one);
    }
}

/// Sends `count` datagrams from `from` (address and port) to `to` in `ns`, and returns the
/// socket, still open. A send may fail: a firewall rule on the way out refuses it.
fn send_from(ns: &Netns, from: &str, to: &str, count: usize) -> UdpSocket {
    let (from, to) = (from.to_string(), to.to_string());
    ns.run(move || {
        let socket = UdpSocket::bind(from).unwrap();
        for _ in 0..count {
            let _ = socket.send_to(b"sample me", &to);
        }
        socket
    })
}

#[test]
fn firewall_and_closed_port_drops_are_sampled_with_their_flow_and_function() {
    require_root();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let agent = Agent::start(&[]);
    let a = Netns::new("samples-a");
    let b = Netns::new("samples-b");
    let veth = Veth::connect(&a, &b, 240);
    b.exec(&[
        "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9200", "-j", "DROP",
    ]);
    let netns = b.inode().to_string();
    let from = format!("{}:40001", veth.a_ip);

    // Firewall drops of a known flow: every one sampled, with all it is known by.
    let _socket = send_from(&a, &from, &format!("{}:9200", veth.b_ip), 5);
    let query = format!("netns={netns}&port=9200");
    let firewalled = samples(&agent, &query, 5);
    assert_eq!(firewalled.len(), 5, "{firewalled:?}");
    for sample in &firewalled {
        assert_eq!(sample["reason"], "NETFILTER_DROP", "{sample}");
        assert_eq!(sample["family"], "ipv4");
        assert_eq!(sample["protocol"], "udp");
        assert_eq!(sample["source"], veth.a_ip.as_str());
        assert_eq!(sample["source_port"], 40001);
        assert_eq!(sample["destination"], veth.b_ip.as_str());
        assert_eq!(sample["destination_port"], 9200);
        assert_eq!(sample["interface"], veth.b_dev.as_str());
        assert_eq!(sample["netns"].as_u64(), Some(u64::from(b.inode())));
        assert_eq!(sample["ethertype"], 0x0800);
        // Freed where the firewall's verdict is carried out: by the function that runs the
        // hooks, or nf_tables' rule walk (iptables-nft).
        let location = sample["location"].as_str().unwrap();
        assert!(
            location.starts_with("nf_hook_slow+0x") || location.starts_with("nft_do_chain+0x"),
            "{location}"
        );
    }
    // Their aggregate: one flow, five samples, first and last seen.
    let top: Value =
        serde_json::from_str(&agent.get(&format!("/api/v1/drops/top?{query}")).body).unwrap();
    let top = top["items"].as_array().unwrap();
    assert_eq!(top.len(), 1, "{top:?}");
    assert_eq!(top[0]["samples"], 5);
    assert!(top[0]["first_seen_ms"].as_u64() <= top[0]["last_seen_ms"].as_u64());

    // A datagram to a closed port: NO_SOCKET, where UDP looked for a socket.
    let _socket = send_from(
        &a,
        &format!("{}:40002", veth.a_ip),
        &format!("{}:9201", veth.b_ip),
        1,
    );
    let closed = samples(&agent, &format!("netns={netns}&port=9201"), 1);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["reason"], "NO_SOCKET");
    assert!(
        closed[0]["location"].as_str().unwrap().contains("udp"),
        "{}",
        closed[0]
    );

    // Filters that match nothing give nothing; a bad one a 400 that says why.
    assert!(samples(&agent, &format!("netns={netns}&reason=NO_SUCH"), 0).is_empty());
    let bad = agent.get("/api/v1/drops/recent?port=http");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("a port"), "{}", bad.body);
}

#[test]
fn a_tcp_segment_and_an_ipv6_datagram_are_parsed() {
    require_root();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let agent = Agent::start(&[]);
    let a = Netns::new("samples6-a");
    let b = Netns::new("samples6-b");
    let veth = Veth::connect(&a, &b, 241);
    for (ns, dev, address) in [
        (&a, &veth.a_dev, "fd00:241::1/64"),
        (&b, &veth.b_dev, "fd00:241::2/64"),
    ] {
        let enable = format!("net.ipv6.conf.{dev}.disable_ipv6=0");
        ns.exec(&["sysctl", "-qw", &enable]);
        ns.exec(&["ip", "-6", "addr", "add", address, "dev", dev, "nodad"]);
    }
    b.exec(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9300", "-j", "DROP",
    ]);
    let netns = b.inode().to_string();

    // A connection attempt to a firewalled port: its SYN is dropped.
    let target = format!("{}:9300", veth.b_ip);
    a.run(move || {
        let _ = std::net::TcpStream::connect_timeout(
            &target.parse().unwrap(),
            Duration::from_millis(300),
        );
    });
    let syns = samples(&agent, &format!("netns={netns}&port=9300"), 1);
    assert!(!syns.is_empty());
    assert_eq!(syns[0]["protocol"], "tcp");
    assert_eq!(syns[0]["tcp_flags"], "SYN", "{}", syns[0]);
    assert_eq!(syns[0]["reason"], "NETFILTER_DROP");

    // A datagram over IPv6 to a closed port.
    let _socket = send_from(&a, "[fd00:241::1]:40003", "[fd00:241::2]:9301", 1);
    let six = samples(&agent, &format!("netns={netns}&port=9301"), 1);
    assert_eq!(six.len(), 1, "{six:?}");
    assert_eq!(six[0]["family"], "ipv6");
    assert_eq!(six[0]["ethertype"], 0x86dd);
    assert_eq!(six[0]["source"], "fd00:241::1");
    assert_eq!(six[0]["source_port"], 40003);
    assert_eq!(six[0]["destination"], "fd00:241::2");
    assert_eq!(six[0]["reason"], "NO_SOCKET");
}

#[test]
fn a_drop_of_a_process_s_own_packet_names_the_process() {
    require_root();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let agent = Agent::start(&[]);
    let a = Netns::new("samplesp-a");
    let b = Netns::new("samplesp-b");
    let veth = Veth::connect(&a, &b, 242);
    // Dropped on the way out, while the packet still belongs to the sender's socket.
    a.exec(&[
        "iptables", "-A", "OUTPUT", "-p", "udp", "--dport", "9400", "-j", "DROP",
    ]);
    let netns = a.inode().to_string();
    let from = format!("{}:40004", veth.a_ip);
    // The socket stays open while the agent looks for its holder.
    let socket = send_from(&a, &from, &format!("{}:9400", veth.b_ip), 1);
    let own = samples(&agent, &format!("netns={netns}&port=9400"), 1);
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0]["reason"], "NETFILTER_DROP");
    assert_eq!(own[0]["pid"], std::process::id(), "{}", own[0]);
    let name = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(own[0]["process"], name.trim());
    drop(socket);
}

#[test]
fn a_drop_storm_is_sampled_within_its_budget_and_the_rest_is_counted() {
    require_root();
    const STORM: u64 = 100_000;
    const RATE: u64 = 50;
    const BURST: u64 = 20;
    const KEEP: usize = 100;
    let config = ConfigFile::new(&format!(
        "[drop_samples]\nper_cpu_rate = {RATE}.0\nper_cpu_burst = {BURST}\nkeep = {KEEP}\n"
    ));
    let agent = Agent::start(&["--config", config.path_str()]);
    let a = Netns::new("storm-a");
    let b = Netns::new("storm-b");
    let veth = Veth::connect(&a, &b, 243);
    let netns = b.inode().to_string();
    let totals = |m: &netmon_tests::Metrics| {
        (
            m.counter("netmon_drop_samples_total", &[]),
            m.counter("netmon_drop_samples_suppressed_total", &[]),
        )
    };
    let before = totals(&agent.fresh_metrics());
    let rss_before = status_mib(agent.pid(), "VmRSS:").unwrap();
    let begin = Instant::now();
    // From one CPU: a datagram across a veth is dropped on the CPU that sent it.
    let to = format!("{}:9", veth.b_ip);
    thread::scope(|scope| {
        scope.spawn(|| {
            pin_to_first_cpu();
            send_udp(&a, &veth.a_ip, &to, STORM, 16);
        });
    });
    let seconds = begin.elapsed().as_secs_f64();
    // Every drop is either sampled or counted as suppressed (other drops of the host may
    // add a few).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (sampled, suppressed) = loop {
        let now = totals(&agent.fresh_metrics());
        let delta = (now.0 - before.0, now.1 - before.1);
        if delta.0 + delta.1 >= STORM || Instant::now() > deadline {
            break delta;
        }
    };
    assert!(sampled + suppressed >= STORM, "{sampled} + {suppressed}");
    assert!(
        sampled + suppressed < STORM + 1000,
        "{sampled} + {suppressed}"
    );
    // The budget: a burst, then the rate, refilled at each poll (every 200 ms in the tests);
    // the host's other drops in the meantime (the count beyond the storm's) have budgets of
    // their CPUs and may each be sampled.
    let others = sampled + suppressed - STORM;
    let bound = BURST as f64 + RATE as f64 * (seconds + 0.2) + others as f64;
    println!(
        "{STORM} drops in {seconds:.2} s: {sampled} sampled (at most {bound:.0}), {suppressed} suppressed"
    );
    assert!(
        sampled > 0 && sampled as f64 <= bound,
        "{sampled} samples in {seconds:.2} s, bound {bound:.0}"
    );
    // The agent keeps the last KEEP, no more; among them are as many of the storm's as there
    // were samples, but for the samples of the host's other drops in the meantime (at most
    // as many as those drops).
    let expected = KEEP.min(sampled as usize);
    let storm_samples = expected.saturating_sub(others as usize);
    let kept = samples(&agent, &format!("netns={netns}"), storm_samples);
    assert!(
        kept.len() >= storm_samples && kept.len() <= KEEP,
        "{} kept of {expected}, {others} other drops",
        kept.len()
    );
    assert!(kept.iter().all(|s| s["reason"] == "NO_SOCKET"));
    assert!(samples(&agent, "limit=100000", 0).len() <= KEEP);
    let rss_after = status_mib(agent.pid(), "VmRSS:").unwrap();
    assert!(
        rss_after < rss_before + 8.0,
        "RSS {rss_before:.1} -> {rss_after:.1} MiB"
    );
}
