//! The processes the benchmarks start (netmon, node_exporter, servers): starting them, waiting
//! until they answer, measuring what they use and stopping them.
use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Netns, free_port, netmon_bin, request, status_mib};

/// netmon's default poll interval (`DEFAULT_POLL_INTERVAL` of its configuration): the agent
/// as an operator runs it.
pub(crate) const DEFAULT_POLL: &str = "2s";
/// How long the kernel-cost and packet-path runs wait after starting the agent.
pub(crate) const SETTLE: Duration = Duration::from_secs(2);
/// Seconds each agent-cost measurement lasts.
const MEASURE: Duration = Duration::from_secs(10);

/// netmon in the bench's namespace (the host's), polling every `poll`.
pub(crate) fn start_netmon(poll: &str) -> (Child, SocketAddr) {
    start_netmon_with(poll, &[])
}

/// [`start_netmon`] with `extra` arguments (a `--config` file, for instance).
pub(crate) fn start_netmon_with(poll: &str, extra: &[&str]) -> (Child, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new(netmon_bin());
    let child = serve(&mut command, addr, poll).args(extra).spawn().unwrap();
    wait_serving(addr);
    (child, addr)
}

/// `command` (netmon, or what runs it) told to serve on `addr`, polling every `poll`, quietly.
fn serve<'a>(command: &'a mut Command, addr: SocketAddr, poll: &str) -> &'a mut Command {
    command
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--poll-interval",
            poll,
        ])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
}

/// Waits until `addr` answers `/metrics`, from the bench's own namespace: netmon binds its
/// port before it attaches its programs, and answers once they are attached and polled.
pub(crate) fn wait_serving(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr)
        .ok()
        .and_then(|mut s| request(&mut s, addr, "/metrics", &[("Connection", "close")]).ok())
        .is_none_or(|r| r.status != 200)
    {
        assert!(Instant::now() < deadline, "nothing answers on {addr}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// netmon running in a namespace of the bench's, and where it listens there.
pub(crate) struct NetmonInNs {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

/// netmon in `ns`, polling every `poll`.
pub(crate) fn start_netmon_in(ns: &Netns, poll: &str) -> NetmonInNs {
    start_binary_in(ns, &netmon_bin(), poll)
}

/// The netmon binary `binary` (this build's, or the one `--before` built) in `ns`, polling
/// every `poll`.
pub(crate) fn start_binary_in(ns: &Netns, binary: &Path, poll: &str) -> NetmonInNs {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &ns.name]).arg(binary);
    let child = serve(&mut command, addr, poll).spawn().unwrap();
    wait_port(ns, addr);
    NetmonInNs { child, addr }
}

/// Waits until something listens on `addr` in `ns`.
pub(crate) fn wait_port(ns: &Netns, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ns.run(move || TcpStream::connect(addr).is_ok()) {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn stop(mut child: Child) {
    // SAFETY: stopping our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// CPU seconds (user + system) a process has used.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Peak resident set size in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:").unwrap_or(0.0)
}

/// Scrapes `path` once a second from inside `ns` for `MEASURE`, and returns the process's CPU
/// time per second and peak RSS over that time.
pub(crate) fn measure(ns: &Netns, pid: u32, addr: SocketAddr, path: &str) -> (f64, f64, usize) {
    thread::sleep(Duration::from_secs(2));
    let start_cpu = cpu_seconds(pid);
    let begin = Instant::now();
    let mut size = 0;
    let path = path.to_string();
    while begin.elapsed() < MEASURE {
        let p = path.clone();
        let tick = Instant::now();
        size = ns
            .run(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                request(&mut s, addr, &p, &[("Connection", "close")]).map(|r| r.body.len())
            })
            .unwrap_or(0);
        thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
    }
    let cpu = (cpu_seconds(pid) - start_cpu) / begin.elapsed().as_secs_f64();
    (cpu, peak_rss_mib(pid), size)
}
