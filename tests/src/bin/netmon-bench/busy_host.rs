//! Tables 3 and 4: the agent on a busy host (1,000 interfaces, 50,000 TCP sockets) beside
//! node_exporter, and /metrics latency under 50 scrapers; measured on the way through
//! table 6 (`agent_cost.rs`).
use std::{
    fmt::Write as _,
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Instant,
};

use netmon_tests::{Netns, free_port, request};

use crate::process::{DEFAULT_POLL, NetmonInNs, measure, start_netmon_in, stop, wait_port};

/// What tables 3 and 4 report of the busy host.
pub(crate) struct Busy {
    /// CPU (s/s) and peak RSS (MiB) polling at the default interval.
    default: (f64, f64),
    /// The same polling every second.
    fast: (f64, f64),
    size: usize,
    /// p50 and p99 (ms) under 50 scrapers, scrapes, and the gzip body's bytes.
    latency: (f64, f64, usize, usize),
    /// The empty walk of the sockets (ms).
    floor: f64,
    /// node_exporter's CPU (s/s), peak RSS (MiB) and scrape size; none when it cannot start.
    node: Option<(f64, f64, usize)>,
}

impl Busy {
    /// Measures the busy host `x`, beside what table 6 found of `netmon` there polling every
    /// second (`fast`, its scrape's `size`) and the empty walk (`floor`); stops `netmon`.
    pub(crate) fn measure(
        x: &Netns,
        netmon: NetmonInNs,
        fast: (f64, f64),
        size: usize,
        floor: f64,
    ) -> Self {
        let latency = latency(x, netmon.addr);
        stop(netmon.child);
        // The agent as an operator runs it, beside the rows' poll of a second.
        let default = start_netmon_in(x, DEFAULT_POLL);
        let (default_cpu, default_rss, _) =
            measure(x, default.child.id(), default.addr, "/metrics");
        stop(default.child);
        Self {
            default: (default_cpu, default_rss),
            fast,
            size,
            latency,
            floor,
            node: node_exporter(x),
        }
    }

    /// Tables 3 and 4.
    pub(crate) fn tables(&self) -> String {
        let Self {
            default: (cpu, rss),
            fast: (fast_cpu, fast_rss),
            size,
            latency: (p50, p99, n, gzipped),
            ..
        } = *self;
        let mut comparison = format!(
            "## 3. Agent cost on a busy host\n\n1,000 interfaces and 50,000 TCP sockets in one \
             namespace; one scrape a second for 10 s after 2 s of warm-up; CPU is user + system \
             time per second of wall time, RSS the peak (VmHWM). netmon runs as an operator runs \
             it, polling every {DEFAULT_POLL} (its default), and again polling every second (1s) as \
             in table 6.\n\n\
             | agent | CPU (s/s) | peak RSS (MiB) | scrape size (bytes) |\n|---|---|---|---|\n",
        );
        let _ = writeln!(
            comparison,
            "| netmon (all hooks attached, poll {}) | {cpu:.4} | {rss:.1} | {size} |\n\
             | netmon (all hooks attached, poll 1s) | {fast_cpu:.4} | {fast_rss:.1} | {size} |",
            DEFAULT_POLL,
        );
        self.node_exporter_rows(&mut comparison);
        let _ = writeln!(
            comparison,
            "## 4. /metrics latency under 50 concurrent scrapers\n\nSame busy host; 50 kept-alive \
             connections that take gzip as Prometheus does, 20 scrapes each ({n} in all).\n\n\
             | p50 (ms) | p99 (ms) | target p99 (ms) | body (bytes) | gzip body (bytes) |\n\
             |---|---|---|---|---|\n| {p50:.1} | {p99:.1} | 50 | {size} | {gzipped} |\n"
        );
        comparison
    }

    /// node_exporter's row of table 3, and netmon's cost against it.
    fn node_exporter_rows(&self, comparison: &mut String) {
        let ((cpu, rss), (fast_cpu, fast_rss), floor) = (self.default, self.fast, self.floor);
        let Some((ncpu, nrss, nsize)) = self.node else {
            let _ = writeln!(comparison, "\nnode_exporter could not start here.\n");
            return;
        };
        let peak = rss.max(fast_rss);
        let _ = writeln!(
            comparison,
            "| node_exporter (netdev, netclass, tcpstat, sockstat) | {ncpu:.4} | {nrss:.1} | {nsize} |\n\n\
             netmon / node_exporter: CPU **{:.3}x** at the default poll (target at most \
             0.05x: {}), {:.3}x polling every second; peak RSS **{:.2}x** (the larger of \
             the two; target at most 0.5x: {}).\n",
            cpu / ncpu,
            if cpu / ncpu <= 0.05 { "met" } else { "missed" },
            fast_cpu / ncpu,
            peak / nrss,
            if peak / nrss <= 0.5 { "met" } else { "missed" },
        );
        // The walk is all kernel time, once a poll.
        let walk = floor / 1000.0;
        let _ = writeln!(
            comparison,
            "The floor of the census by state, measured: the kernel's walk of these 50,000 \
             sockets with an iterator program that returns at once takes {floor:.1} ms, \
             {walk:.4} s/s at one poll a second, **{:.3}x** node_exporter's CPU by itself \
             (half that at the default poll); everything else netmon does polling every \
             second costs {:.4} s/s ({:.3}x).\n",
            walk / ncpu,
            fast_cpu - walk,
            (fast_cpu - walk) / ncpu,
        );
    }
}

/// p50 and p99 in ms of 1,000 scrapes by 50 scrapers that take gzip, as Prometheus does, how
/// many, and the compressed body's size.
fn latency(ns: &Netns, addr: SocketAddr) -> (f64, f64, usize, usize) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let compressed = Arc::new(Mutex::new(0));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let samples = samples.clone();
            let compressed = compressed.clone();
            let path = ns.path();
            thread::spawn(move || {
                let file = std::fs::File::open(path).unwrap();
                // SAFETY: entering the bench's namespace on this thread only.
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
                let mut stream = TcpStream::connect(addr).unwrap();
                for _ in 0..20 {
                    let begin = Instant::now();
                    let gzip = [("Accept-Encoding", "gzip")];
                    let response = request(&mut stream, addr, "/metrics", &gzip).unwrap();
                    assert_eq!(response.status, 200);
                    *compressed.lock().unwrap() = response.bytes.len();
                    samples
                        .lock()
                        .unwrap()
                        .push(begin.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut samples = samples.lock().unwrap().clone();
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    let compressed = *compressed.lock().unwrap();
    (at(0.5), at(0.99), samples.len(), compressed)
}

/// node_exporter with the collectors that cover what netmon reports, in `ns`, scraped the
/// same way as netmon.
fn node_exporter(ns: &Netns) -> Option<(f64, f64, usize)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "prometheus-node-exporter"])
        .arg(format!("--web.listen-address={addr}"))
        .args([
            "--collector.disable-defaults",
            "--collector.netdev",
            "--collector.netclass",
            "--collector.tcpstat",
            "--collector.sockstat",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_port(ns, addr);
    let result = measure(ns, child.id(), addr, "/metrics");
    stop(child);
    Some(result)
}
