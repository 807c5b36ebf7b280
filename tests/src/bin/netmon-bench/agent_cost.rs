//! Table 6: how the agent's cost grows with interfaces and TCP sockets; on the way, at
//! [`BUSY_SOCKETS`], the busy host of tables 3 and 4, which come first in the report.
use std::{
    fmt::Write as _,
    net::{SocketAddr, TcpListener, TcpStream},
    process::Child,
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Metrics, Netns, netmon_bin, request};

use crate::{
    bpf::EmptyTcpIterator,
    busy_host::Busy,
    process::{NetmonInNs, measure, start_binary_in, start_netmon_in, stop},
    workload::{add_interfaces, hold_sockets},
};

/// The rows of table 6: interfaces and TCP sockets in the namespace.
const STEPS: [(usize, usize); 7] = [
    (10, 1000),
    (100, 1000),
    (1000, 1000),
    (1000, 10_000),
    (1000, 20_000),
    (1000, 50_000),
    (1000, 100_000),
];

/// The sockets of the row measured beside the previous version's agent: 10,000 connections,
/// both their ends in the namespace.
const COMPARED_SOCKETS: usize = 20_000;
/// Turns each agent takes at that row: CPU time is counted in ticks of 10 ms.
const COMPARED_TURNS: usize = 2;

/// The sockets of the row that is also the busy host.
const BUSY_SOCKETS: usize = 50_000;

/// The namespace the table measures, `x`, grown from row to row: interfaces (veth pairs to
/// `y`) and TCP sockets held by processes.
struct Crowd<'a> {
    x: &'a Netns,
    y: &'a Netns,
    pairs: usize,
    sockets: usize,
    port: u16,
    holders: Vec<Child>,
}

impl Crowd<'_> {
    fn grow(&mut self, interfaces: usize, sockets: usize) {
        // Each pair puts one interface in x; loopback is the last one.
        let pairs = interfaces - 1;
        if pairs > self.pairs {
            add_interfaces(self.x, self.y, self.pairs, pairs);
            self.pairs = pairs;
        }
        if sockets > self.sockets {
            let new = hold_sockets(self.x, sockets - self.sockets, self.port);
            self.port += new.len() as u16;
            self.holders.extend(new);
            self.sockets = sockets;
        }
    }
}

pub(crate) fn agent_cost() -> String {
    let x = Netns::new("bench-x");
    let y = Netns::new("bench-y");
    let mut out = String::from(
        "## 6. How cost grows\n\nnetmon (poll interval 1 s) in a namespace with the given \
         interfaces and TCP sockets, scraped once a second for 10 s after 2 s of warm-up. \
         \"socket owners\" is the time of the listening collector in the poll that finds a \
         new listener: that poll looks for the processes holding sockets (so does one every \
         30 s), and the processes of the table hold every socket. \"empty walk\" is the \
         floor of the census by state: the kernel's walk of the same sockets with an iterator \
         program that returns at once (median of 15, netmon stopped).\n\n\
         | interfaces | TCP sockets | CPU (s/s) | peak RSS (MiB) | /metrics size (bytes) | \
         socket dump (ms) | empty walk (ms) | interfaces (ms) | poll (ms) | socket owners (ms) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut crowd = Crowd {
        x: &x,
        y: &y,
        pairs: 0,
        sockets: 0,
        port: 20000,
        holders: Vec::new(),
    };
    let mut busy = None;
    let mut compared = String::new();
    let empty_walk = EmptyTcpIterator::load();
    for (interfaces, sockets) in STEPS {
        crowd.grow(interfaces, sockets);
        let floor = empty_walk.walk_ms(&x, 15);
        if sockets == COMPARED_SOCKETS {
            compared = beside_before(&x);
        }
        let netmon = start_netmon_in(&x, "1s");
        let (cpu, rss, size) = measure(&x, netmon.child.id(), netmon.addr, "/metrics");
        row(&mut out, &x, &netmon, (cpu, rss, size), floor);
        if sockets == BUSY_SOCKETS {
            busy = Some(Busy::measure(&x, netmon, (cpu, rss), size, floor));
            continue;
        }
        stop(netmon.child);
    }
    let comparison = busy.unwrap().tables();
    for child in crowd.holders {
        stop(child);
    }
    format!("{comparison}\n{out}\n{compared}")
}

/// The agent's CPU with 10,000 connections in its namespace beside the previous version's
/// (`--before`), taking turns; a note that it was not measured without one.
fn beside_before(x: &Netns) -> String {
    let Some(before) = std::env::var_os("NETMON_BEFORE_BIN") else {
        return "The cost of 10,000 connections beside the previous version is measured by \
                `cargo xtask bench --before REV`.\n"
            .to_string();
    };
    let mut cpu = [0.0; 2];
    for _ in 0..COMPARED_TURNS {
        for (turn, binary) in [netmon_bin(), before.clone().into()].iter().enumerate() {
            let netmon = start_binary_in(x, binary, "1s");
            cpu[turn] += measure(x, netmon.child.id(), netmon.addr, "/metrics").0;
            stop(netmon.child);
        }
    }
    let [after, before] = cpu.map(|total| total / COMPARED_TURNS as f64);
    let more = (after / before - 1.0) * 100.0;
    format!(
        "10,000 connections (20,000 sockets with 1,000 interfaces, the row above), poll 1 s, \
         the two agents taking turns, {COMPARED_TURNS} turns of 10 s each: this build \
         {after:.4} s/s, the previous version {before:.4} s/s: **{more:+.1}%** (target at \
         most +10%: {}).\n",
        if more <= 10.0 { "met" } else { "missed" }
    )
}

/// Writes the row of the namespace as it is now, with what `measure` found of the agent and
/// the empty walk's `floor`.
fn row(
    out: &mut String,
    x: &Netns,
    netmon: &NetmonInNs,
    (cpu, rss, size): (f64, f64, usize),
    floor: f64,
) {
    let durations = collector_ms(x, netmon.addr);
    let owners = owner_scan_ms(x, netmon.addr);
    let _ = writeln!(
        out,
        "| {} | {} | {cpu:.4} | {rss:.1} | {size} | {:.1} | {floor:.1} | {:.1} | {:.1} | \
         {owners:.1} |",
        interface_count(x),
        ss_count(x),
        durations.0,
        durations.1,
        durations.2
    );
}

/// The agent's metrics, scraped from inside `ns` (empty when it does not answer).
fn scrape_in(ns: &Netns, addr: SocketAddr) -> Metrics {
    let body = ns
        .run(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            request(&mut s, addr, "/metrics", &[("Connection", "close")]).map(|r| r.body)
        })
        .unwrap_or_default();
    Metrics::parse(&body)
}

/// Milliseconds the newest poll spent on the socket dump, on interfaces, and in all.
fn collector_ms(ns: &Netns, addr: SocketAddr) -> (f64, f64, f64) {
    let metrics = scrape_in(ns, addr);
    let collector = |name: &str| {
        metrics
            .value("netmon_collector_duration_seconds", &[("collector", name)])
            .unwrap_or(f64::NAN)
            * 1000.0
    };
    (
        collector("connections"),
        collector("interfaces") + collector("link_details"),
        metrics
            .value("netmon_poll_duration_seconds", &[])
            .unwrap_or(f64::NAN)
            * 1000.0,
    )
}

/// Milliseconds of the listening collector in the poll that finds a listener opened now,
/// which looks for the holders of sockets.
fn owner_scan_ms(ns: &Netns, addr: SocketAddr) -> f64 {
    let listener = ns.run(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let port = listener.local_addr().unwrap().port().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let metrics = scrape_in(ns, addr);
        let found = !metrics
            .find("netmon_listening_socket_info", &[("port", &port)])
            .is_empty();
        if found {
            return metrics
                .value(
                    "netmon_collector_duration_seconds",
                    &[("collector", "listening")],
                )
                .unwrap_or(f64::NAN)
                * 1000.0;
        }
        thread::sleep(Duration::from_millis(100));
    }
    f64::NAN
}

fn ss_count(ns: &Netns) -> usize {
    ns.exec(&["ss", "-tanH"]).lines().count()
}

fn interface_count(ns: &Netns) -> usize {
    ns.exec(&["ls", "/sys/class/net"])
        .split_whitespace()
        .count()
}
