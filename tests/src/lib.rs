//! Helpers for netmon's privileged end-to-end tests: network namespaces and veth pairs made by
//! the test itself, the real agent binary, and the kernel's own counters to compare with.
//! Traffic only ever goes to loopback or between the test's own namespaces.
use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Fails the test unless it runs as root: these tests load kernel programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the integration tests load kernel programs and make namespaces: run them as root \
         (cargo xtask test)"
    );
}

/// Runs a command and returns its stdout, panicking with its stderr when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A network namespace made by the test, deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "nmt-{tag}-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        sh("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // No IPv6 autoconfiguration chatter: the tests count every packet.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Inode number of the namespace, the `netns` label netmon uses.
    pub fn inode(&self) -> u32 {
        std::fs::metadata(self.path()).unwrap().ino() as u32
    }

    /// `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend(args);
        sh("ip", &full)
    }

    /// `ip netns exec <ns> ARGS`.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend(args);
        sh("ip", &full)
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens live there.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = File::open(self.path()).unwrap();
        thread::spawn(move || {
            // SAFETY: a valid namespace descriptor; only this short-lived thread moves.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    /// Kernel counters of a device in this namespace, as `ip -s link` shows them.
    pub fn link_stats(&self, dev: &str) -> LinkStats {
        let json = self.ip(&["-s", "-j", "link", "show", "dev", dev]);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        LinkStats::from_json(&value[0])
    }

    /// The kernel's counters of every interface in this namespace, by name, read at once.
    pub fn all_link_stats(&self) -> BTreeMap<String, LinkStats> {
        let json = self.ip(&["-s", "-j", "link", "show"]);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|link| {
                let name = link["ifname"].as_str().unwrap().to_owned();
                (name, LinkStats::from_json(link))
            })
            .collect()
    }

    /// Interface index of a device in this namespace.
    pub fn ifindex(&self, dev: &str) -> u32 {
        let json = self.ip(&["-j", "link", "show", "dev", dev]);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value[0]["ifindex"].as_u64().unwrap() as u32
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub rx_errors: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub tx_errors: u64,
}

impl LinkStats {
    /// One link of `ip -s -j link`.
    fn from_json(link: &serde_json::Value) -> Self {
        let stats = &link["stats64"];
        let get = |dir: &str, key: &str| stats[dir][key].as_u64().unwrap();
        Self {
            rx_packets: get("rx", "packets"),
            rx_bytes: get("rx", "bytes"),
            rx_dropped: get("rx", "dropped"),
            rx_errors: get("rx", "errors"),
            tx_packets: get("tx", "packets"),
            tx_bytes: get("tx", "bytes"),
            tx_dropped: get("tx", "dropped"),
            tx_errors: get("tx", "errors"),
        }
    }
}

/// A veth pair between two test namespaces, addressed 10.<subnet>.0.1/24 and .2, with static
/// neighbour entries so that no ARP packet mixes with the test's own traffic.
pub struct Veth {
    pub a_dev: String,
    pub b_dev: String,
    pub a_ip: String,
    pub b_ip: String,
}

impl Veth {
    pub fn connect(a: &Netns, b: &Netns, subnet: u8) -> Self {
        Self::connect_named(
            a,
            b,
            subnet,
            &format!("nma{subnet}"),
            &format!("nmb{subnet}"),
        )
    }

    /// Like [`Veth::connect`] with chosen device names.
    pub fn connect_named(a: &Netns, b: &Netns, subnet: u8, a_dev: &str, b_dev: &str) -> Self {
        let (a_dev, b_dev) = (a_dev.to_string(), b_dev.to_string());
        let a_ip = format!("10.{subnet}.0.1");
        let b_ip = format!("10.{subnet}.0.2");
        sh(
            "ip",
            &[
                "link", "add", &a_dev, "netns", &a.name, "type", "veth", "peer", "name", &b_dev,
                "netns", &b.name,
            ],
        );
        for (ns, dev, ip) in [(a, &a_dev, &a_ip), (b, &b_dev, &b_ip)] {
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        let mac = |ns: &Netns, dev: &str| {
            let json = ns.ip(&["-j", "link", "show", "dev", dev]);
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            value[0]["address"].as_str().unwrap().to_string()
        };
        let (a_mac, b_mac) = (mac(a, &a_dev), mac(b, &b_dev));
        a.ip(&[
            "neigh",
            "replace",
            &b_ip,
            "lladdr",
            &b_mac,
            "dev",
            &a_dev,
            "nud",
            "permanent",
        ]);
        b.ip(&[
            "neigh",
            "replace",
            &a_ip,
            "lladdr",
            &a_mac,
            "dev",
            &b_dev,
            "nud",
            "permanent",
        ]);
        Self {
            a_dev,
            b_dev,
            a_ip,
            b_ip,
        }
    }
}

/// Sends `count` UDP datagrams of `payload` bytes from `from` (in `ns`) to `to`.
pub fn send_udp(ns: &Netns, from: &str, to: &str, count: u64, payload: usize) {
    let (from, to) = (format!("{from}:0"), to.to_string());
    ns.run(move || {
        let socket = std::net::UdpSocket::bind(from).unwrap();
        for _ in 0..count {
            socket.send_to(&vec![7u8; payload], &to).unwrap();
        }
    });
}

/// A cgroup (v2) the test makes, removed when dropped (once its processes have exited).
pub struct Cgroup {
    pub dir: PathBuf,
    /// Its path as `/proc/<pid>/cgroup` writes it.
    pub path: String,
}

impl Cgroup {
    pub fn new(tag: &str) -> Self {
        let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .iter()
            .map(Path::new)
            .find(|root| {
                root.join("cgroup.procs").exists() && root.join("cgroup.controllers").exists()
            })
            .expect("a cgroup v2 hierarchy under /sys/fs/cgroup");
        let name = format!(
            "nmt-{tag}-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let dir = root.join(&name);
        std::fs::create_dir(&dir).unwrap();
        Self {
            dir,
            path: format!("/{name}"),
        }
    }

    /// Moves process `pid` into this cgroup.
    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Processes that have just exited may still be counted in it for a moment.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A python process in `ns` running `code`, which prints one line when it is ready; returns
/// the process and that line.
pub fn spawn_python(ns: &Netns, code: &str) -> (Child, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-u", "-c", code])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    (child, line.trim().to_string())
}

/// A configuration file for the agent, removed when dropped.
pub struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(text: &str) -> Self {
        Self::with_extension(text, "toml")
    }

    pub fn with_extension(text: &str, extension: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "netmon-test-{}-{}.{extension}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        Self { path }
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The netmon binary under test.
pub fn netmon_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NETMON_BIN") {
        return path.into();
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/netmon");
    assert!(
        path.exists(),
        "{} missing: build it with `cargo build -p netmon` (cargo xtask test does)",
        path.display()
    );
    path
}

/// A memory figure of a process from `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`...), in MiB.
pub fn status_mib(pid: u32, field: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `netmon serve`, stopped when dropped. Its log goes to a file, printed when the
/// test fails.
pub struct Agent {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub poll_interval: Duration,
    log_path: PathBuf,
    /// The namespace the agent runs in, when not the test's own.
    netns: Option<PathBuf>,
    /// One kept-alive connection for every request, so that scraping adds no sockets.
    connection: std::sync::Mutex<Option<TcpStream>>,
}

impl Agent {
    /// Starts the agent on a free loopback port with a short poll interval and `extra` flags,
    /// and waits until it answers.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_as(&[], extra)
    }

    /// Like [`Agent::start`], with the binary run by `prefix` (for instance `setpriv ...`).
    pub fn start_as(prefix: &[&str], extra: &[&str]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::launch(prefix, extra, addr, None)
    }

    /// Starts the agent inside a test namespace: it sees that namespace's interfaces and
    /// sockets, and the test talks to it from inside the namespace.
    pub fn start_in(ns: &Netns, extra: &[&str]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::launch(
            &["ip", "netns", "exec", &ns.name],
            extra,
            addr,
            Some(ns.path()),
        )
    }

    /// Starts the agent inside `ns` listening on `ip`, and talks to it from `client`: the
    /// scrapes then cross only the link to `ip`.
    pub fn start_in_reached_from(ns: &Netns, ip: &str, client: &Netns, extra: &[&str]) -> Self {
        let addr = format!("{ip}:{}", free_port()).parse().unwrap();
        Self::launch(
            &["ip", "netns", "exec", &ns.name],
            extra,
            addr,
            Some(client.path()),
        )
    }

    /// Starts the agent and waits only for its port to accept connections: for agents that
    /// speak TLS or want credentials.
    pub fn start_unchecked(extra: &[&str]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::spawn(&[], extra, addr, None, false)
    }

    /// Starts the agent inside `ns` and waits only for its port to accept connections there.
    pub fn start_in_unchecked(ns: &Netns, extra: &[&str]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::spawn(
            &["ip", "netns", "exec", &ns.name],
            extra,
            addr,
            Some(ns.path()),
            false,
        )
    }

    fn launch(prefix: &[&str], extra: &[&str], addr: SocketAddr, netns: Option<PathBuf>) -> Self {
        Self::spawn(prefix, extra, addr, netns, true)
    }

    fn spawn(
        prefix: &[&str],
        extra: &[&str],
        addr: SocketAddr,
        netns: Option<PathBuf>,
        speaks_plain_http: bool,
    ) -> Self {
        let poll_interval = Duration::from_millis(200);
        let log_path = std::env::temp_dir().join(format!(
            "netmon-test-{}-{}.log",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ));
        let log = File::create(&log_path).unwrap();
        let binary = netmon_bin();
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let child = command
            .args([
                "serve",
                "--listen",
                &addr.to_string(),
                "--poll-interval",
                "200ms",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(log)
            .env(
                "RUST_LOG",
                std::env::var("NETMON_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .spawn()
            .expect("starting netmon");
        let agent = Self {
            child: Some(child),
            addr,
            poll_interval,
            log_path,
            netns,
            connection: std::sync::Mutex::new(None),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = if speaks_plain_http {
                agent
                    .try_get("/healthz")
                    .is_ok_and(|response| response.status == 200)
            } else {
                agent.connect().is_ok()
            };
            if ready {
                return agent;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "netmon did not answer on {addr} within 30 s; its log:\n{}",
            agent.log()
        );
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Opens a TCP connection to the agent, from inside its namespace if it has one.
    pub fn connect(&self) -> std::io::Result<TcpStream> {
        let addr = self.addr;
        let connect = move || TcpStream::connect_timeout(&addr, Duration::from_secs(5));
        match &self.netns {
            None => connect(),
            Some(path) => {
                let file = File::open(path)?;
                thread::spawn(move || {
                    // SAFETY: a valid namespace descriptor; only this short-lived thread moves.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    connect()
                })
                .join()
                .unwrap()
            }
        }
    }

    /// One request on a new connection, closed afterwards.
    pub fn try_get(&self, path: &str) -> std::io::Result<Response> {
        let mut stream = self.connect()?;
        request(&mut stream, self.addr, path, &[("Connection", "close")])
    }

    /// A request on the kept-alive connection (opened again if the agent closed it).
    pub fn get(&self, path: &str) -> Response {
        let mut connection = self.connection.lock().unwrap();
        for _ in 0..2 {
            if connection.is_none() {
                *connection = Some(self.connect().unwrap_or_else(|e| panic!("connect: {e}")));
            }
            match request(connection.as_mut().unwrap(), self.addr, path, &[]) {
                Ok(response) => return response,
                Err(_) => *connection = None,
            }
        }
        panic!("GET {path} failed twice");
    }

    /// `/api/v1/status`, parsed.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/api/v1/status").body).unwrap()
    }

    /// Metrics from a snapshot taken after this call began.
    pub fn fresh_metrics(&self) -> Metrics {
        let asked = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = Metrics::parse(&self.get("/metrics").body);
            if metrics.value("netmon_snapshot_timestamp_seconds", &[]) >= Some(asked) {
                return metrics;
            }
            assert!(Instant::now() < deadline, "no fresh snapshot within 10 s");
            thread::sleep(self.poll_interval / 2);
        }
    }

    /// Sends SIGTERM and waits for the exit, at most `limit`.
    pub fn stop(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("agent already stopped");
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("netmon did not exit within {limit:?} of SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("--- netmon log ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// An HTTP response: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// The body's bytes as they came (after chunked transfer decoding): a compressed body.
    pub bytes: Vec<u8>,
}

/// A minimal HTTP/1.1 GET with `Connection: close`.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    request(&mut stream, addr, path, &all)
}

/// Sends a GET on `stream` and reads exactly one response (by Content-Length or chunks).
pub fn request(
    stream: &mut TcpStream,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(response) = complete_response(&raw)? {
            return Ok(response);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            // Closed: what arrived is all there is.
            return parse_response(&raw);
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

/// The response in `raw`, once all of it has arrived.
fn complete_response(raw: &[u8]) -> std::io::Result<Option<Response>> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let complete = match length {
        Some(length) => body.len() >= length,
        None if head.contains("transfer-encoding: chunked") => body.ends_with(b"0\r\n\r\n"),
        None => false,
    };
    if complete {
        parse_response(raw).map(Some)
    } else {
        Ok(None)
    }
}

/// Parses a whole HTTP response.
pub fn parse_http_response(raw: &[u8]) -> std::io::Result<Response> {
    parse_response(raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        bytes: body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Parsed Prometheus text: one entry per sample.
#[derive(Debug, Default)]
pub struct Metrics {
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("sample value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples.push((name.to_string(), labels, value));
        }
        Self { samples }
    }

    /// Samples of `name` whose labels include every pair of `labels`.
    pub fn find(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, l, v)| (l, *v))
            .collect()
    }

    /// The single sample matching, if exactly one does.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels).as_slice() {
            [(_, value)] => Some(*value),
            [] => None,
            many => panic!(
                "{} samples of {name} match {labels:?}: {many:?}",
                many.len()
            ),
        }
    }

    /// Like [`Metrics::value`], 0 when absent (a counter not yet created).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.value(name, labels).unwrap_or(0.0) as u64
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(name.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// The item of probe `name` in a `/api/v1/status` document.
pub fn probe_status<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["probes"]
        .as_array()
        .and_then(|probes| probes.iter().find(|p| p["probe"] == name))
        .unwrap_or_else(|| panic!("no probe {name} in the status: {status}"))
}

/// Names of the kernel programs currently loaded whose names are netmon's (`nm_` prefix).
pub fn loaded_netmon_programs() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|info| info.name_as_str().map(str::to_string))
        .filter(|name| name.starts_with("nm_"))
        .collect()
}

/// Waits until no netmon program is loaded; the kernel frees a program's links and the
/// program itself after RCU grace periods, so an exited agent's programs go shortly after.
/// Returns the names still loaded at the deadline.
pub fn wait_for_unload(limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let loaded = loaded_netmon_programs();
        if loaded.is_empty() || Instant::now() > deadline {
            return loaded;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A certificate authority, a server certificate for 127.0.0.1 and client certificates, as
/// PEM files in a temporary directory.
pub struct Pki {
    dir: std::path::PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("netmon-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let issuer = |name: &str| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap()
        };
        let ca = issuer("netmon test CA");
        let other_ca = issuer("another CA");
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        write("ca.crt", ca.pem());
        let leaf = |names: Vec<String>,
                    signer: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
                    file: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, signer)
                .unwrap();
            write(&format!("{file}.crt"), cert.pem());
            write(&format!("{file}.key"), key.serialize_pem());
        };
        leaf(vec!["127.0.0.1".into()], &ca, "server");
        leaf(vec!["client".into()], &ca, "client");
        leaf(vec!["stranger".into()], &other_ca, "stranger");
        Self { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let metrics =
            Metrics::parse("# HELP x y\n# TYPE x counter\nx{a=\"1\",b=\"q\\\"z\"} 5\ny 2.5\n");
        assert_eq!(metrics.value("x", &[("a", "1")]), Some(5.0));
        assert_eq!(metrics.find("x", &[])[0].0["b"], "q\"z");
        assert_eq!(metrics.value("y", &[]), Some(2.5));
        assert_eq!(metrics.counter("z", &[]), 0);
    }

    #[test]
    fn parses_chunked_responses() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let response = parse_response(raw).unwrap();
        assert_eq!((response.status, response.body.as_str()), (200, "abcde"));
    }
}
