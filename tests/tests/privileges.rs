//! Least privilege: the agent works with exactly the documented capabilities, and once its
//! programs are attached every thread keeps only what its work needs.
use std::net::TcpListener;

use netmon::model::probes::Hook;
use netmon_tests::{Agent, Netns, Veth, require_root, send_udp};

const CAP_DAC_READ_SEARCH: u64 = 1 << 2;
const CAP_SYS_PTRACE: u64 = 1 << 19;
const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_BPF: u64 = 1 << 39;

/// (thread name, effective capabilities, permitted capabilities) of every thread of `pid`.
fn thread_capabilities(pid: u32) -> Vec<(String, u64, u64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        // A thread that ended since the listing has no status any more.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let mask = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
                .unwrap()
        };
        threads.push((name.trim().to_string(), mask("CapEff:"), mask("CapPrm:")));
    }
    threads
}

/// A listener of this test is reported with this test's pid: sockets are found and their
/// owners read from `/proc`.
fn finds_the_tests_listener(agent: &Agent) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let m = agent.fresh_metrics();
    let me = std::process::id().to_string();
    assert!(
        !m.find(
            "netmon_listening_socket_info",
            &[("port", &port), ("pid", &me)]
        )
        .is_empty(),
        "the test's own listener with its pid"
    );
}

/// Only the poll thread holds capabilities, exactly the four it keeps, and the thread that
/// enters namespaces for it only `CAP_SYS_ADMIN` and `CAP_SYS_PTRACE`; every other thread
/// holds none. Both live
/// as long as the agent: whenever the threads are read, this holds.
fn only_the_poll_thread_holds_capabilities(pid: u32) {
    let threads = thread_capabilities(pid);
    assert!(threads.len() >= 4, "{threads:?}");
    let kept = CAP_BPF | CAP_SYS_ADMIN | CAP_SYS_PTRACE | CAP_DAC_READ_SEARCH;
    let namespaces = CAP_SYS_ADMIN | CAP_SYS_PTRACE;
    for (thread, caps) in [("netmon-poll", kept), ("netmon-netns", namespaces)] {
        let found: Vec<_> = threads.iter().filter(|t| t.0 == thread).collect();
        assert_eq!(found.len(), 1, "{thread}: {threads:?}");
        assert_eq!((found[0].1, found[0].2), (caps, caps), "{threads:?}");
    }
    for (name, effective, permitted) in threads
        .iter()
        .filter(|t| t.0 != "netmon-poll" && t.0 != "netmon-netns")
    {
        assert_eq!(
            (*effective, *permitted),
            (0, 0),
            "thread {name} holds capabilities"
        );
    }
}

/// Read again and again while new namespaces with traffic make the poll list their links:
/// no reading finds a thread more than it should hold, or a thread more or less.
#[test]
fn threads_and_their_capabilities_stay_the_same_while_namespaces_are_listed() {
    require_root();
    let agent = Agent::start(&[]);
    agent.fresh_metrics();
    let mut namespaces = Vec::new();
    for _ in 0..20 {
        let ns = Netns::new("cap");
        send_udp(&ns, "127.0.0.1", "127.0.0.1:9", 1, 1);
        namespaces.push(ns);
        let until = std::time::Instant::now() + agent.poll_interval;
        while std::time::Instant::now() < until {
            only_the_poll_thread_holds_capabilities(agent.pid());
        }
    }
    // The namespaces were listed: their loopbacks have names.
    let m = agent.fresh_metrics();
    for ns in &namespaces {
        let netns = ns.inode().to_string();
        assert!(
            m.counter(
                "netmon_kernel_packets_total",
                &[("netns", &netns), ("interface", "lo"), ("direction", "tx")]
            ) >= 1,
            "{} (netns {netns}): {:?}",
            ns.name,
            m.find("netmon_kernel_packets_total", &[("netns", &netns)])
        );
    }
}

/// Traffic between two namespaces is counted: the kernel programs work.
fn counts_traffic(agent: &Agent, tag: &str, subnet: u8) {
    let a = Netns::new(&format!("{tag}-a"));
    let b = Netns::new(&format!("{tag}-b"));
    let veth = Veth::connect(&a, &b, subnet);
    send_udp(&a, &veth.a_ip, &format!("{}:9", veth.b_ip), 25, 10);
    let m = agent.fresh_metrics();
    let netns = a.inode().to_string();
    assert_eq!(
        m.counter(
            "netmon_kernel_packets_total",
            &[
                ("netns", &netns),
                ("interface", &veth.a_dev),
                ("direction", "tx")
            ]
        ),
        25,
        "counts in another namespace"
    );
}

#[test]
fn after_attaching_only_the_poll_thread_keeps_capabilities() {
    require_root();
    let agent = Agent::start(&[]);
    agent.fresh_metrics();
    only_the_poll_thread_holds_capabilities(agent.pid());
    // Everything still works with the reduced sets: programs count, namespaces are named,
    // listeners are found with their processes, HTTP answers.
    counts_traffic(&agent, "caps", 235);
    finds_the_tests_listener(&agent);
}

#[test]
fn runs_as_nobody_with_exactly_the_documented_capabilities() {
    require_root();
    let caps = "+bpf,+perfmon,+sys_admin,+sys_ptrace,+dac_read_search";
    let inh = format!("--inh-caps=-all,{caps}");
    let ambient = format!("--ambient-caps=-all,{caps}");
    let bounding = format!("--bounding-set=-all,{caps}");
    let agent = Agent::builder()
        .run_by(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &inh,
            &ambient,
            &bounding,
        ])
        .start();
    let m = agent.fresh_metrics();
    // The traffic, drop and state hooks: the hooks this test has checked since it was written.
    // The README's example below checks that every hook attaches under these capabilities.
    let hooks = Hook::ALL.into_iter().filter(|hook| {
        matches!(
            hook,
            Hook::NetDevXmit | Hook::NetifReceiveSkb | Hook::KfreeSkb | Hook::InetSockSetState
        )
    });
    for probe in hooks.map(Hook::as_str) {
        assert_eq!(
            m.value(
                "netmon_probe_attached",
                &[("probe", probe), ("method", "tp_btf")]
            ),
            Some(1.0),
            "{probe}: {}",
            agent.log()
        );
    }
    counts_traffic(&agent, "nobody", 236);
    // Root's listeners are found with their processes (CAP_SYS_PTRACE).
    finds_the_tests_listener(&agent);
}

/// Real, effective and saved uids of a thread, from its status file.
fn uids(pid: u32, tid: &str) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .take(3)
        .map(|u| u.parse().unwrap())
        .collect()
}

#[test]
fn started_as_root_it_runs_as_nobody_after_start_up() {
    require_root();
    let agent = Agent::start(&["--user", "nobody"]);
    agent.fresh_metrics();
    for task in std::fs::read_dir(format!("/proc/{}/task", agent.pid()))
        .unwrap()
        .flatten()
    {
        let tid = task.file_name().to_string_lossy().into_owned();
        assert_eq!(
            uids(agent.pid(), &tid),
            [65534, 65534, 65534],
            "thread {tid}"
        );
    }
    only_the_poll_thread_holds_capabilities(agent.pid());
    counts_traffic(&agent, "user", 237);
    finds_the_tests_listener(&agent);
}

/// The README's `setpriv` example, run as written (with this build's binary): every hook
/// attaches, and the agent counts and finds owners as with root.
#[test]
fn the_readmes_setpriv_example_runs_as_written() {
    require_root();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let example = readme
        .split('`')
        .find(|part| part.starts_with("setpriv "))
        .expect("the README has a setpriv example");
    let words: Vec<&str> = example.split_whitespace().collect();
    assert_eq!(words[words.len() - 2..], ["netmon", "serve"], "{example}");
    let agent = Agent::builder().run_by(&words[..words.len() - 2]).start();
    let m = agent.fresh_metrics();
    let attached: Vec<_> = m
        .find("netmon_probe_attached", &[("method", "tp_btf")])
        .into_iter()
        .filter(|(_, value)| *value == 1.0)
        .collect();
    assert_eq!(
        attached.len(),
        Hook::ALL.len(),
        "{attached:?}\n{}",
        agent.log()
    );
    counts_traffic(&agent, "readme", 237);
    finds_the_tests_listener(&agent);
}
