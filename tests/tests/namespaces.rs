//! Namespaces coming and going under the agent: each counted under its own identity while
//! anything holds it (a name, a mount elsewhere, a thread, a descriptor, only its sockets),
//! never under another's that had its inode, and forgotten once the kernel tears it down.
//! (Each hook's counts against the kernel's: tests/tests/probes.rs.)
use std::{
    io::Write as _,
    net::{TcpStream, UdpSocket},
    os::unix::fs::MetadataExt as _,
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Agent, LinkedNamespaces, Metrics, Netns, Veth, require_root, send_udp, sh};

#[test]
fn same_interface_index_in_two_namespaces_gives_two_series() {
    require_root();
    let agent = Agent::start(&[]);
    let (a1, b1) = (Netns::new("idx-a1"), Netns::new("idx-b1"));
    let (a2, b2) = (Netns::new("idx-a2"), Netns::new("idx-b2"));
    let v1 = Veth::connect_named(&a1, &b1, 214, "nmsame", "nmpeer");
    let v2 = Veth::connect_named(&a2, &b2, 215, "nmsame", "nmpeer");
    assert_eq!(a1.ifindex("nmsame"), a2.ifindex("nmsame"));
    send_udp(&a1, &v1.a_ip, &format!("{}:9", v1.b_ip), 10, 16);
    send_udp(&a2, &v2.a_ip, &format!("{}:9", v2.b_ip), 20, 16);
    let m = agent.fresh_metrics();
    let series = m.find(
        "netmon_kernel_packets_total",
        &[("interface", "nmsame"), ("direction", "tx")],
    );
    assert_eq!(series.len(), 2, "{series:?}");
    let (n1, n2) = (a1.inode().to_string(), a2.inode().to_string());
    assert_eq!(
        m.traffic("netmon_kernel_packets_total", &n1, "nmsame", "tx"),
        10
    );
    assert_eq!(
        m.traffic("netmon_kernel_packets_total", &n2, "nmsame", "tx"),
        20
    );
}

/// A namespace that no process, mount or name holds, only one thread of a process (after
/// `unshare` on that thread): its loopback counts are exact and named, and go with the thread.
#[test]
fn a_namespace_only_a_thread_holds_counts_exactly() {
    require_root();
    let agent = Agent::start(&[]);
    const DATAGRAMS: u64 = 25;
    let (report, reported) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        // SAFETY: a new namespace for this thread only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        // A child started from this thread is in its namespace.
        sh("ip", &["link", "set", "lo", "up"]);
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..DATAGRAMS {
            sender
                .send_to(&[0; 32], receiver.local_addr().unwrap())
                .unwrap();
        }
        let netns = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        // The kernel's own count for lo in this namespace.
        let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
        let lo: Vec<u64> = dev
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("lo:"))
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        report.send((netns.to_string(), lo[1], lo[9])).unwrap();
        let _ = released.recv();
    });
    let (netns, rx_packets, tx_packets) = reported.recv().unwrap();
    assert_eq!((rx_packets, tx_packets), (DATAGRAMS, DATAGRAMS));
    let m = agent.fresh_metrics();
    assert_eq!(
        m.traffic("netmon_kernel_packets_total", &netns, "lo", "tx"),
        tx_packets
    );
    assert_eq!(
        m.traffic("netmon_kernel_packets_total", &netns, "lo", "rx"),
        rx_packets
    );
    release.send(()).unwrap();
    holder.join().unwrap();
    agent.wait_until_forgotten(&netns);
}

#[test]
fn counters_of_vanished_namespaces_are_removed() {
    require_root();
    let agent = Agent::start(&[]);
    let pair = LinkedNamespaces::new("gone", 216);
    pair.send_to_port_9(5, 16);
    let netns = pair.netns_a();
    let m = agent.fresh_metrics();
    assert_eq!(
        m.find("netmon_kernel_packets_total", &[("netns", &netns)])
            .len(),
        2
    );
    let entries_before = m.counter("netmon_probe_map_entries", &[("map", "traffic")]);
    drop(pair);
    // The kernel frees a namespace asynchronously: allow a few polls.
    let mut m = agent.fresh_metrics();
    for _ in 0..50 {
        if m.find("netmon_kernel_packets_total", &[("netns", &netns)])
            .is_empty()
        {
            break;
        }
        thread::sleep(Duration::from_millis(100));
        m = agent.fresh_metrics();
    }
    assert!(
        m.find("netmon_kernel_packets_total", &[("netns", &netns)])
            .is_empty()
    );
    let entries_after = m.counter("netmon_probe_map_entries", &[("map", "traffic")]);
    assert!(
        entries_after + 2 <= entries_before,
        "map entries {entries_before} -> {entries_after}"
    );
}

/// The TCP events of a namespace have slots of their own (the `tcp_events` table), freed when
/// the namespace goes: each connect to a closed port is a reset sent and one received.
#[test]
fn tcp_events_of_a_vanished_namespace_free_their_slots() {
    require_root();
    let agent = Agent::start(&[]);
    let ns = Netns::new("events-gone");
    let netns = ns.inode().to_string();
    ns.run(|| {
        for _ in 0..4 {
            assert!(TcpStream::connect("127.0.0.1:9").is_err());
        }
    });
    let before = agent.fresh_metrics();
    for direction in ["sent", "received"] {
        let labels = [("netns", netns.as_str()), ("direction", direction)];
        assert_eq!(before.counter("netmon_tcp_resets_total", &labels), 4);
    }
    let entries = |m: &Metrics| m.counter("netmon_probe_map_entries", &[("map", "tcp_events")]);
    drop(ns);
    let after = agent.wait_until_forgotten(&netns);
    // Other namespaces (the host's) may have counted an event of a new kind meanwhile.
    let counted_elsewhere = |m: &Metrics| {
        let families = ["netmon_tcp_retransmits_total", "netmon_tcp_resets_total"];
        let series = families.into_iter().flat_map(|family| m.find(family, &[]));
        series
            .filter(|(labels, value)| *value > 0.0 && labels["netns"] != netns)
            .count() as u64
    };
    assert_eq!(
        entries(&after) + 2,
        entries(&before) + counted_elsewhere(&after) - counted_elsewhere(&before),
        "the namespace's two slots are freed"
    );
}

/// A namespace made just after another was deleted gets the dead one's inode (the kernel
/// hands out the lowest free one), and often its address and its loopback's: it counts only
/// its own packets, resets and TCP transitions, never the dead one's. The agent is stopped
/// meanwhile, so that no poll comes between the two.
#[test]
fn a_namespace_that_takes_a_dead_ones_inode_counts_only_its_own_traffic() {
    require_root();
    let agent = Agent::start(&[]);
    // Datagrams, and as many connections to a closed port: each a reset sent and one
    // received, and a socket from CLOSE to SYN_SENT and back.
    let send = |ns: &Netns, count: usize| {
        ns.run(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..count {
                socket.send_to(b"x", "127.0.0.1:9").unwrap();
                assert!(TcpStream::connect("127.0.0.1:9").is_err());
            }
        });
    };
    let signal = |signal: i32| {
        // SAFETY: signalling the test's own child process.
        assert_eq!(unsafe { libc::kill(agent.pid() as i32, signal) }, 0);
    };
    // The kernel hands a freed inode out again soon, but not always to the next namespace:
    // each attempt waits a few seconds for it, with namespaces that got another inode kept
    // until the attempt ends so that theirs are not handed out again.
    let (born, inode) = (0..5)
        .find_map(|attempt| {
            signal(libc::SIGSTOP);
            let dead = Netns::new("dead");
            send(&dead, 3);
            let inode = dead.inode();
            drop(dead);
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut others = Vec::new();
            while Instant::now() < deadline {
                let born = Netns::new("born");
                if born.inode() == inode {
                    return Some((born, inode));
                }
                others.push(born);
                thread::sleep(Duration::from_millis(20));
            }
            signal(libc::SIGCONT);
            eprintln!("attempt {attempt}: no new namespace got the inode {inode} within 5 s");
            None
        })
        .expect("a new namespace gets a dead one's inode");
    send(&born, 5);
    signal(libc::SIGCONT);
    let m = agent.fresh_metrics();
    let kernel = born.link_stats("lo");
    let netns = inode.to_string();
    for (direction, packets) in [("tx", kernel.tx_packets), ("rx", kernel.rx_packets)] {
        let labels = [
            ("netns", netns.as_str()),
            ("interface", "lo"),
            ("direction", direction),
        ];
        assert_eq!(
            m.counter("netmon_kernel_packets_total", &labels),
            packets,
            "{direction} packets of the new namespace's loopback"
        );
    }
    // The TCP tables too count only the new namespace's own.
    for direction in ["sent", "received"] {
        let labels = [("netns", netns.as_str()), ("direction", direction)];
        assert_eq!(
            m.counter("netmon_tcp_resets_total", &labels),
            5,
            "resets {direction}"
        );
    }
    let refused = [
        ("netns", netns.as_str()),
        ("family", "inet"),
        ("from", "SYN_SENT"),
        ("to", "CLOSE"),
    ];
    assert_eq!(m.counter("netmon_tcp_state_transitions_total", &refused), 5);
}

/// A process that holds a namespace for a test, talked to over its standard input and output;
/// its first line is the namespace's inode.
struct ProcessHoldingNetns {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    input: std::process::ChildStdin,
    netns: String,
}

impl ProcessHoldingNetns {
    fn spawn(command: &mut std::process::Command) -> Self {
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let input = child.stdin.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let netns = line.trim().to_string();
        assert!(netns.parse::<u32>().is_ok(), "{line:?}");
        Self {
            child,
            out,
            input,
            netns,
        }
    }
}

#[test]
fn a_namespace_held_only_from_another_mount_namespace_counts_exactly() {
    require_root();
    let agent = Agent::start(&[]);
    const DATAGRAMS: u64 = 25;
    // In a mount namespace of its own, a named namespace with traffic on its loopback: first
    // only its bind mount there holds it (invisible to the agent), then only a descriptor of
    // the shell there.
    let name = format!("nmt-fd-{}", std::process::id());
    let script = format!(
        "set -e\n\
         ip netns add {name}\n\
         ip -n {name} link set lo up\n\
         ip netns exec {name} python3 -c \"import socket\n\
         r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 0))\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range({DATAGRAMS}): s.sendto(b'x' * 32, r.getsockname())\"\n\
         stat -L -c %i /run/netns/{name}\n\
         read line\n\
         exec 3</run/netns/{name}\n\
         ip netns delete {name}\n\
         echo descriptor\n\
         read line\n"
    );
    let ProcessHoldingNetns {
        mut child,
        mut out,
        mut input,
        netns,
    } = ProcessHoldingNetns::spawn(std::process::Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    let mut line = String::new();
    let counted = |m: &Metrics| {
        (
            m.traffic("netmon_kernel_packets_total", &netns, "lo", "tx"),
            m.traffic("netmon_kernel_packets_total", &netns, "lo", "rx"),
        )
    };
    // Held by the other mount namespace's bind mount: found there, named, counted.
    assert_eq!(counted(&agent.fresh_metrics()), (DATAGRAMS, DATAGRAMS));
    std::io::Write::write_all(&mut input, b"go\n").unwrap();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "descriptor");
    // Held by a descriptor alone, for a few polls.
    assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
    for _ in 0..3 {
        thread::sleep(agent.poll_interval);
        assert_eq!(counted(&agent.fresh_metrics()), (DATAGRAMS, DATAGRAMS));
    }
    // The descriptor closes: the namespace is gone, and so are its counts.
    drop(input);
    child.wait().unwrap();
    agent.wait_until_forgotten(&netns);
}

/// A namespace that nothing but a kernel reference keeps alive (sockets of a process that went
/// back to the host's namespace, its name deleted): no path leads to it. Where the agent
/// watches namespace teardown, it still counts, exactly, under its inode with its interfaces
/// named by index, until the kernel tears it down as the sockets close. A kernel built
/// without function tracing and kprobes offers no teardown to watch: status says why, and such
/// a namespace is forgotten as if gone (the Debian 6.1 VM, which has fentry, checks the watch).
#[test]
fn a_namespace_only_its_sockets_keep_alive_counts_until_it_is_torn_down() {
    require_root();
    let agent = Agent::start(&[]);
    let status = agent.status();
    let watched = !status["namespace_watch"].is_null();
    if watched {
        assert!(
            ["fentry", "kprobe"].contains(&status["namespace_watch"].as_str().unwrap()),
            "{status}"
        );
    } else {
        let error = status["namespace_watch_error"].as_str().unwrap();
        assert!(
            error.contains("fentry") && error.contains("kprobe on __put_net"),
            "{status}"
        );
        println!("namespace teardown is not watched here: {error}");
    }
    const DATAGRAMS: u64 = 17;
    let name = format!("nmt-sock-{}", std::process::id());
    sh("ip", &["netns", "add", &name]);
    sh("ip", &["-n", &name, "link", "set", "lo", "up"]);
    // The process sends once while the namespace has its name (the agent finds it then), and
    // again when only its sockets hold it.
    let code = format!(
        "import ctypes, os, socket, sys\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         host = os.open('/proc/self/ns/net', os.O_RDONLY)\n\
         inner = os.open('/run/netns/{name}', os.O_RDONLY)\n\
         assert libc.setns(inner, 0x40000000) == 0\n\
         r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 0))\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         assert libc.setns(host, 0x40000000) == 0\n\
         print(os.fstat(inner).st_ino, flush=True)\n\
         os.close(inner)\n\
         for line in sys.stdin:\n\
         \x20   for _ in range({DATAGRAMS}): s.sendto(b'x' * 32, r.getsockname())\n\
         \x20   print('sent', flush=True)\n"
    );
    let ProcessHoldingNetns {
        mut child,
        mut out,
        mut input,
        netns,
    } = ProcessHoldingNetns::spawn(std::process::Command::new("python3").args(["-c", &code]));
    let mut line = String::new();
    let mut send = || {
        input.write_all(b"send\n").unwrap();
        line.clear();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line.trim(), "sent");
    };
    let counted = |m: &Metrics, interface: &str| {
        (
            m.traffic("netmon_kernel_packets_total", &netns, interface, "tx"),
            m.traffic("netmon_kernel_packets_total", &netns, interface, "rx"),
        )
    };
    send();
    assert_eq!(
        counted(&agent.fresh_metrics(), "lo"),
        (DATAGRAMS, DATAGRAMS)
    );
    // The name goes; the process is back in the host's namespace: only the sockets hold it.
    sh("ip", &["netns", "delete", &name]);
    if watched {
        send();
        for _ in 0..3 {
            assert_eq!(
                counted(&agent.fresh_metrics(), "ifindex:1"),
                (2 * DATAGRAMS, 2 * DATAGRAMS)
            );
            thread::sleep(agent.poll_interval);
        }
    } else {
        // No teardown to wait for: taken as gone at once.
        agent.wait_until_forgotten(&netns);
    }
    // The sockets close: the kernel tears the namespace down, and its counts go.
    drop(input);
    child.wait().unwrap();
    agent.wait_until_forgotten(&netns);
}
