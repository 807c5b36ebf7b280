//! The agent's footprint beyond the busy host: idle beside node_exporter, where its memory
//! goes, how long finding namespaces takes among many processes and threads, and how cost
//! grows with namespaces.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{SocketAddr, TcpStream, UdpSocket},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Metrics, Netns, free_port, request, status_mib};

use crate::process::{DEFAULT_POLL, cpu_seconds, peak_rss_mib, start_netmon, stop, wait_serving};

/// Time between scrapes of the idle agents, and how many.
const IDLE_SCRAPE: Duration = Duration::from_secs(3);
const IDLE_SCRAPES: u32 = 5;

/// Resident memory now, in MiB.
fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:").unwrap_or(0.0)
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    request(&mut stream, addr, path, &[("Connection", "close")])
        .map(|r| r.body)
        .unwrap_or_default()
}

/// CPU per second, resident MiB at the end and peak MiB of an agent scraped every few
/// seconds.
fn idle(pid: u32, addr: SocketAddr) -> (f64, f64, f64) {
    thread::sleep(Duration::from_secs(2));
    let cpu = cpu_seconds(pid);
    let begin = Instant::now();
    for _ in 0..IDLE_SCRAPES {
        get(addr, "/metrics");
        thread::sleep(IDLE_SCRAPE);
    }
    let cpu = (cpu_seconds(pid) - cpu) / begin.elapsed().as_secs_f64();
    (cpu, rss_mib(pid), peak_rss_mib(pid))
}

/// Resident KiB by kind of mapping, from `/proc/<pid>/smaps`.
fn memory_by_kind(pid: u32) -> BTreeMap<&'static str, f64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut kinds = BTreeMap::new();
    let mut kind = "";
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            let name = fields.get(5).copied().unwrap_or("");
            kind = match name {
                "" => "anonymous: heap arenas and thread stacks",
                "[heap]" => "anonymous: main heap",
                "[stack]" => "anonymous: main thread's stack",
                n if n.starts_with("anon_inode:bpf") => "BPF maps mapped into the agent",
                n if n == exe => "the netmon binary (file)",
                n if n.starts_with('/') => "shared libraries (file)",
                _ => "other",
            };
        } else if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: f64 = kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0.0);
            *kinds.entry(kind).or_default() += kib;
        }
    }
    kinds
}

fn node_exporter_defaults() -> Option<(Child, SocketAddr)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_serving(addr);
    Some((child, addr))
}

fn idle_footprint() -> String {
    let (netmon, addr) = start_netmon(DEFAULT_POLL);
    let (cpu, rss, peak) = idle(netmon.id(), addr);
    let kinds = memory_by_kind(netmon.id());
    stop(netmon);
    let mut out = format!(
        "## 8. Idle footprint\n\nThis host as it is, every hook attached, default configuration \
         (poll every {DEFAULT_POLL}); node_exporter with its default collectors; each scraped every {} s, \
         {IDLE_SCRAPES} times, after 2 s. RSS is VmRSS after the last scrape, peak is VmHWM.\n\n\
         | agent | CPU (s/s) | RSS (MiB) | peak RSS (MiB) |\n|---|---|---|---|\n\
         | netmon | {cpu:.4} | {rss:.1} | {peak:.1} |\n",
        IDLE_SCRAPE.as_secs()
    );
    match node_exporter_defaults() {
        Some((node, addr)) => {
            let (ncpu, nrss, npeak) = idle(node.id(), addr);
            stop(node);
            let ratio = rss / nrss;
            let _ = writeln!(
                out,
                "| node_exporter (default collectors) | {ncpu:.4} | {nrss:.1} | {npeak:.1} |\n\n\
                 netmon / node_exporter, idle RSS: **{ratio:.2}x** (target at most 0.5x: {}).\n",
                if ratio <= 0.5 { "met" } else { "missed" }
            );
        }
        None => out.push_str("\nnode_exporter could not start here.\n\n"),
    }
    let total: f64 = kinds.values().sum();
    let _ = writeln!(
        out,
        "### Where netmon's idle memory goes\n\nResident memory of the idle agent above by \
         mapping (`/proc/<pid>/smaps`). File-backed pages are shared with the page cache and \
         given back under memory pressure; anonymous ones are the agent's own.\n\n\
         | mapping | resident (MiB) |\n|---|---|"
    );
    for (kind, kib) in &kinds {
        let _ = writeln!(out, "| {kind} | {:.2} |", kib / 1024.0);
    }
    let _ = writeln!(out, "| **all** | **{:.2}** |\n", total / 1024.0);
    out
}

/// The namespaces collector's time (ms) of the newest poll, scraped every `every` for
/// `samples` times, sorted.
fn namespaces_ms(addr: SocketAddr, samples: usize, every: Duration) -> Vec<f64> {
    let mut found = Vec::new();
    for _ in 0..samples {
        thread::sleep(every);
        let metrics = Metrics::parse(&get(addr, "/metrics"));
        if let Some(seconds) = metrics.value(
            "netmon_collector_duration_seconds",
            &[("collector", "namespaces")],
        ) {
            found.push(seconds * 1000.0);
        }
    }
    found.sort_by(f64::total_cmp);
    found
}

/// Processes and threads on the host.
fn proc_entries() -> (usize, usize) {
    let mut processes = 0;
    let mut threads = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if entry
            .file_name()
            .as_encoded_bytes()
            .iter()
            .all(u8::is_ascii_digit)
        {
            processes += 1;
            threads += std::fs::read_dir(entry.path().join("task")).map_or(0, |d| d.count());
        }
    }
    (processes, threads)
}

/// One datagram on the namespace's loopback, so that the agent has counters to name there.
fn touch(ns: &Netns) {
    ns.run(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.send_to(b"x", "127.0.0.1:9").unwrap();
    });
}

fn namespace_discovery() -> String {
    // 2,000 more processes, and one of 3,000 threads.
    let sleepers: Vec<Child> = (0..2000)
        .map(|_| Command::new("sleep").arg("600").spawn().unwrap())
        .collect();
    let mut threads = Command::new("python3")
        .args([
            "-c",
            "import threading, time, sys\n\
             threading.stack_size(65536)\n\
             stop = threading.Event()\n\
             for _ in range(3000):\n    threading.Thread(target=stop.wait, daemon=True).start()\n\
             print('ready', flush=True); time.sleep(600)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(threads.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let others: Vec<Netns> = (0..3).map(|_| Netns::new("discover")).collect();
    let (processes, threads_on_host) = proc_entries();
    let (netmon, addr) = start_netmon("1s");
    thread::sleep(Duration::from_secs(2));
    // New namespaces with counters: the poll that first sees them walks /proc to find them.
    for ns in &others {
        touch(ns);
    }
    let walk = namespaces_ms(addr, 15, Duration::from_millis(200));
    let walk = walk[walk.len() - 1];
    // The polls after find each through the path kept for it.
    let steady = namespaces_ms(addr, 10, Duration::from_secs(1));
    let (median, largest) = (steady[steady.len() / 2], steady[steady.len() - 1]);
    stop(netmon);
    let _ = threads.kill();
    let _ = threads.wait();
    for mut sleeper in sleepers {
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }
    format!(
        "## 9. Namespace discovery\n\nnetmon on this host with 2,000 extra processes and one \
         process of 3,000 threads ({processes} processes, {threads_on_host} threads in all), \
         counters in 3 namespaces made by the bench besides the host's; \
         `netmon_collector_duration_seconds{{collector=\"namespaces\"}}`. A poll walks `/proc` \
         only when a namespace with counters has no known path (it is new, its holder exited, \
         or it is gone); every other poll checks one kept path a namespace.\n\n\
         | steady polls: median (ms) | steady polls: largest (ms) | target (ms) | the poll that walks (ms) |\n\
         |---|---|---|---|\n\
         | {median:.2} | **{largest:.2}** | at most 2 ({}) | {walk:.1} |\n",
        if largest <= 2.0 { "met" } else { "missed" }
    )
}

/// The collectors of pressure before loss.
const PRESSURE_COLLECTORS: [&str; 4] = ["namespace_pressure", "pressure", "softnet", "tcp_memory"];

/// How many namespaces the newest poll read the pressure of.
fn pressure_read(addr: SocketAddr) -> usize {
    let answer: serde_json::Value =
        serde_json::from_str(&get(addr, "/api/v1/pressure")).unwrap_or_default();
    let namespaces = answer["namespaces"].as_array().cloned().unwrap_or_default();
    namespaces
        .iter()
        .filter(|n| n["read_ms_ago"].as_u64() == Some(0))
        .count()
}

fn namespace_growth() -> String {
    let mut out = String::from(
        "## 10. How cost grows with namespaces\n\nnetmon (poll 1 s) on this host with the given \
         number of namespaces made by the bench, each with counters (a datagram on its \
         loopback), scraped once a second for 10 s after 2 s. \"pressure\" is the time of the \
         newest poll's pressure collectors (the other namespaces' within the namespaces \
         collector, the agent's own, the CPUs' and TCP memory; target at most 10 ms at 1,000 \
         namespaces), \"read\" how many namespaces that poll read the pressure of (the others \
         show their last reading).\n\n\
         | namespaces | CPU (s/s) | peak RSS (MiB) | namespaces (ms) | pressure (ms) | read | poll (ms) | series |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut made: Vec<Netns> = Vec::new();
    for count in [1, 100, 1000] {
        while made.len() < count {
            made.push(Netns::new("grow"));
        }
        let (netmon, addr) = start_netmon("1s");
        // Counters exist only for what the programs saw.
        for ns in &made {
            touch(ns);
        }
        thread::sleep(Duration::from_secs(2));
        let cpu = cpu_seconds(netmon.id());
        let begin = Instant::now();
        let mut metrics = Metrics::parse("");
        while begin.elapsed() < Duration::from_secs(10) {
            let tick = Instant::now();
            metrics = Metrics::parse(&get(addr, "/metrics"));
            thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
        }
        let cpu = (cpu_seconds(netmon.id()) - cpu) / begin.elapsed().as_secs_f64();
        let read = pressure_read(addr);
        let peak = peak_rss_mib(netmon.id());
        stop(netmon);
        let ms = |name: &str, labels: &[(&str, &str)]| {
            metrics.value(name, labels).unwrap_or(f64::NAN) * 1000.0
        };
        let collector =
            |name: &str| ms("netmon_collector_duration_seconds", &[("collector", name)]);
        let pressure: f64 = PRESSURE_COLLECTORS.iter().map(|c| collector(c)).sum();
        let verdict = match count {
            1000 if pressure <= 10.0 => " (met)",
            1000 => " (missed)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "| {count} | {cpu:.4} | {peak:.1} | {:.2} | {pressure:.2}{verdict} | {read} | {:.1} | \
             {} |",
            collector("namespaces"),
            ms("netmon_poll_duration_seconds", &[]),
            metrics.samples.len()
        );
    }
    out
}

pub fn footprint() -> String {
    format!(
        "{}\n{}\n{}",
        idle_footprint(),
        namespace_discovery(),
        namespace_growth()
    )
}
