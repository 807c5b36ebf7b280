//! The agent under test: `netmon serve` started by the test, where and as whom the test
//! chooses, and the test's requests to it.
use std::{
    fs::File,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::{
    http::{Response, request},
    machine::{free_port, unique_name},
    metrics::Metrics,
    netns::{Netns, run_in},
};

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

/// The poll interval every agent under test runs with: short, so that tests wait little for
/// a fresh snapshot.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How to start an agent, from [`Agent::builder`]: by default on a free loopback port of the
/// test's own namespace, run directly, ready once `/healthz` answers 200.
#[must_use = "the agent starts only with `start`"]
pub struct AgentBuilder<'a> {
    args: &'a [&'a str],
    runner: &'a [&'a str],
    inside: Option<&'a Netns>,
    reached: Option<(&'a str, &'a Netns)>,
    speaks_plain_http: bool,
}

impl<'a> AgentBuilder<'a> {
    /// Flags after `netmon serve --listen ADDR --poll-interval 200ms`.
    pub fn args(self, args: &'a [&'a str]) -> Self {
        Self { args, ..self }
    }

    /// Runs the binary by `runner` (for instance `setpriv ...`), as its last argument.
    pub fn run_by(self, runner: &'a [&'a str]) -> Self {
        Self { runner, ..self }
    }

    /// Runs the agent inside `ns`: it sees that namespace's interfaces and sockets, and the
    /// test talks to it from inside the namespace.
    pub fn inside(self, ns: &'a Netns) -> Self {
        Self {
            inside: Some(ns),
            ..self
        }
    }

    /// Listens on `ip` and talks to the agent from `client`: the scrapes then cross only the
    /// link to `ip`.
    pub fn reached_from(self, ip: &'a str, client: &'a Netns) -> Self {
        Self {
            reached: Some((ip, client)),
            ..self
        }
    }

    /// Waits only for the port to accept connections: for agents that speak TLS or want
    /// credentials, which answer no plain `/healthz`.
    pub fn ready_when_listening(self) -> Self {
        Self {
            speaks_plain_http: false,
            ..self
        }
    }

    /// Starts the agent and waits until it is ready.
    pub fn start(self) -> Agent {
        let ip = self.reached.map_or("127.0.0.1", |(ip, _)| ip);
        let addr: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
        let client = self.reached.map(|(_, client)| client).or(self.inside);
        let log_path = std::env::temp_dir().join(format!("{}.log", unique_name("netmon-test")));
        let child = self
            .command(addr)
            .stderr(File::create(&log_path).unwrap())
            .spawn()
            .expect("starting netmon");
        let agent = Agent {
            child: Some(child),
            addr,
            poll_interval: POLL_INTERVAL,
            log_path,
            netns: client.map(Netns::path),
            connection: Mutex::new(None),
        };
        agent.wait_ready(self.speaks_plain_http);
        agent
    }

    /// `[ip netns exec NS] [RUNNER...] netmon serve ...`.
    fn command(&self, addr: SocketAddr) -> Command {
        let enter = self
            .inside
            .map(|ns| vec!["ip", "netns", "exec", ns.name.as_str()])
            .unwrap_or_default();
        let binary = netmon_bin();
        let mut words = enter.iter().chain(self.runner);
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        command
            .args(["serve", "--listen", &addr.to_string(), "--poll-interval"])
            .arg(format!("{}ms", POLL_INTERVAL.as_millis()))
            .args(self.args)
            .stdin(Stdio::null())
            .env(
                "RUST_LOG",
                std::env::var("NETMON_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        command
    }
}

/// A running `netmon serve`, stopped when dropped. Its log goes to a file, printed when the
/// test fails.
pub struct Agent {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub poll_interval: Duration,
    log_path: PathBuf,
    /// The namespace the test talks to the agent from, when not the test's own.
    netns: Option<PathBuf>,
    /// One kept-alive connection for every request, so that scraping adds no sockets.
    connection: Mutex<Option<TcpStream>>,
}

impl Agent {
    /// How to start an agent; see [`AgentBuilder`].
    pub fn builder<'a>() -> AgentBuilder<'a> {
        AgentBuilder {
            args: &[],
            runner: &[],
            inside: None,
            reached: None,
            speaks_plain_http: true,
        }
    }

    /// The common case of [`Agent::builder`]: the agent with `args` on a free loopback port,
    /// once it answers.
    pub fn start(args: &[&str]) -> Self {
        Self::builder().args(args).start()
    }

    /// Waits up to 30 s for the agent to answer `/healthz` (or, when it does not speak plain
    /// HTTP, to accept connections).
    fn wait_ready(&self, speaks_plain_http: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = if speaks_plain_http {
                self.try_get("/healthz")
                    .is_ok_and(|response| response.status == 200)
            } else {
                self.connect().is_ok()
            };
            if ready {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "netmon did not answer on {} within 30 s; its log:\n{}",
            self.addr,
            self.log()
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
            Some(path) => run_in(path, connect)?,
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

    /// Waits until the agent reports no traffic, transitions or TCP events of namespace
    /// `netns` (within 10 s), and returns the metrics that show it gone.
    pub fn wait_until_forgotten(&self, netns: &str) -> Metrics {
        let deadline = Instant::now() + Duration::from_secs(10);
        let reported = |m: &Metrics| {
            [
                "netmon_kernel_packets_total",
                "netmon_tcp_state_transitions_total",
                "netmon_tcp_resets_total",
                "netmon_tcp_retransmits_total",
            ]
            .iter()
            .any(|name| !m.find(name, &[("netns", netns)]).is_empty())
        };
        loop {
            let m = self.fresh_metrics();
            if !reported(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "namespace {netns} is still reported"
            );
            thread::sleep(Duration::from_millis(100));
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

/// The item of probe `name` in a `/api/v1/status` document.
pub fn probe_status<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["probes"]
        .as_array()
        .and_then(|probes| probes.iter().find(|p| p["probe"] == name))
        .unwrap_or_else(|| panic!("no probe {name} in the status: {status}"))
}
