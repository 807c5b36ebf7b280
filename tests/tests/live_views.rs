//! The live views as a person uses them: the page at `/` in Debian's Chromium, and
//! `netmon top` in a terminal under tmux, both against an agent with TLS and basic auth, in
//! a namespace of the test's own with traffic across a veth, an interface named `<b>x`, a
//! process whose name holds markup and a terminal escape sequence, and a group of peers (the
//! views' own connections on loopback) named the same way.
use std::{
    path::PathBuf,
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Agent, ConfigFile, Netns, Pki, Veth, netmon_bin, require_root, spawn_python};

const USER: &str = "operator";
const PASSWORD: &str = "s3cret-view";
/// The hostile process's name: markup, and an escape sequence that would set a terminal's
/// title to "pwn" (15 bytes at most: the kernel's limit for a name).
const PROCESS_NAME: &str = "<i>\u{1b}]2;pwn\u{7}x";
/// The hostile name of the loopback peers' group, and the configuration that gives it (TOML
/// escapes).
const PEER_GROUP: &str = "<b>lo\u{1b}]2;pwn\u{7}";
const PEER_CONFIG: &str = "[peers.groups]\n\"127.0.0.0/8\" = \"<b>lo\\u001b]2;pwn\\u0007\"\n";

/// What both views look at: an agent in a namespace of its own, reached over TLS with basic
/// auth, a veth whose far end sends it datagrams all along (from the hostile process), and an
/// interface named like markup.
struct Scene {
    agent: Agent,
    pki: Pki,
    _web: ConfigFile,
    _config: ConfigFile,
    ns: Netns,
    _peer: Netns,
    veth: Veth,
    sender: Child,
}

impl Scene {
    fn new() -> Self {
        require_root();
        let ns = Netns::new("views");
        let peer = Netns::new("viewpeer");
        let veth = Veth::connect_named(&ns, &peer, 71, "nmview0", "nmview1");
        ns.ip(&[
            "link", "add", "<b>x", "type", "veth", "peer", "name", "nmview2",
        ]);
        let pki = Pki::new();
        let hash = bcrypt::hash(PASSWORD, 6).unwrap();
        let web = ConfigFile::with_extension(
            &format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {USER}: '{hash}'\n",
                pki.path("server.crt"),
                pki.path("server.key")
            ),
            "yml",
        );
        let config = ConfigFile::new(PEER_CONFIG);
        let agent = Agent::builder()
            .inside(&ns)
            .args(&[
                "--web-config",
                web.path_str(),
                "--config",
                config.path_str(),
            ])
            .ready_when_listening()
            .start();
        // At most 100 datagrams a second (100 kB/s, more than the views' own requests on
        // loopback) for at most 120 s, to the agent's end of the veth.
        let code = format!(
            "import socket, time\n\
             open('/proc/self/comm', 'wb').write(bytes.fromhex('{name}'))\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             print('ready')\n\
             end = time.time() + 120\n\
             while time.time() < end:\n\
             \x20   s.sendto(b'x' * 1000, ('{ip}', 9))\n\
             \x20   time.sleep(0.01)\n",
            ip = veth.a_ip,
            name = PROCESS_NAME
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
        // The port accepts before the programs are attached: the views connect once they
        // are, so that their own connections are counted (the peers panel shows them).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !agent.log().contains("serving /metrics") {
            assert!(
                Instant::now() < deadline,
                "the agent never served:\n{}",
                agent.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
        let (sender, ready) = spawn_python(&peer, &code);
        assert_eq!(ready, "ready");
        Self {
            agent,
            pki,
            _web: web,
            _config: config,
            ns,
            _peer: peer,
            veth,
            sender,
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.agent.addr)
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = self.sender.kill();
        let _ = self.sender.wait();
    }
}

fn output_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Veth pairs the page's test adds to the agent's namespace: 1,000 more interfaces.
const PAIRS: usize = 500;

#[test]
fn the_page_shows_the_host_live_in_chromium() {
    let scene = Scene::new();
    let batch: String = (0..PAIRS)
        .map(|i| format!("link add nmk{i}a type veth peer name nmk{i}b\n"))
        .collect();
    let batch_file = ConfigFile::new(&batch);
    scene.ns.ip(&["-batch", batch_file.path_str()]);
    let shots = output_dir();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/page.mjs");
    let url = format!("{}/", scene.url());
    // Chromium runs in the agent's namespace, where the agent listens on loopback.
    let out = Command::new("ip")
        .args(["netns", "exec", &scene.ns.name, "node"])
        .arg(&script)
        .args([&url, USER, PASSWORD, &scene.veth.a_dev])
        .arg(&shots)
        .arg("nmk377")
        .output()
        .expect("starting node (cargo xtask setup installs it with the browser test's packages)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no report from the browser ({e}): {stdout}\n{}\nagent log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            scene.agent.log()
        )
    });
    assert!(
        report.get("failure").is_none(),
        "the page did not behave: {report:#}\nagent log:\n{}",
        scene.agent.log()
    );
    let strings = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} missing from {report:#}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };

    // The veth with its traffic (about 20 kB/s and 100 packets/s received).
    let row = strings("row");
    assert_eq!(row[0], scene.veth.a_dev);
    assert_ne!(row[2], "0", "rx B/s of the veth: {row:?}");
    assert_ne!(row[4], "0", "rx pkt/s of the veth: {row:?}");
    assert!(report["charts"].as_u64().unwrap() >= 3, "{report:#}");
    assert_eq!(report["chart_subject"], scene.veth.a_dev.as_str());

    // Nothing from outside the agent, no errors.
    let origin = format!("{}/", scene.url());
    let requests = strings("requests");
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with("/assets/uPlot.iife.min.js"))
    );
    for request in &requests {
        assert!(
            request.starts_with(&origin),
            "loaded from outside: {request}"
        );
    }
    assert_eq!(strings("errors"), Vec::<String>::new());

    // Hostile names are text: shown as they are, no element made of them.
    assert!(
        strings("interfaces").contains(&"<b>x".to_string()),
        "{report:#}"
    );
    assert!(
        strings("processes").contains(&PROCESS_NAME.to_string()),
        "{report:#}"
    );
    assert!(
        strings("peers").contains(&PEER_GROUP.to_string()),
        "{report:#}"
    );
    // The views' own connections to the agent are open ones of a loopback peer.
    let open = strings("peers_open");
    assert!(
        open.iter()
            .any(|count| count.parse().is_ok_and(|n: u64| n >= 1)),
        "{report:#}"
    );
    assert_eq!(report["markup"], 0);

    // The agent's own listener, in the queues and tables of its namespace.
    let listener = format!("listen {}", scene.agent.addr);
    assert!(
        strings("pressure").iter().any(|q| q.starts_with(&listener)),
        "{report:#}"
    );

    // The rest of what the page shows.
    assert!(report["listening"].as_u64().unwrap() >= 1, "{report:#}");
    let probes = strings("probes");
    assert!(
        probes.iter().any(|p| p.starts_with("net_dev_xmit")),
        "{probes:?}"
    );

    // The filter narrows the table to the veth.
    assert_eq!(
        report["filtered"][&scene.veth.a_dev],
        serde_json::json!([scene.veth.a_dev])
    );

    // A phone's width: nothing wider than the screen (tables scroll within their boxes).
    let narrow = &report["narrow"];
    assert!(
        narrow["scroll_width"].as_u64() <= narrow["width"].as_u64(),
        "{narrow}"
    );
    for shot in ["page.png", "page-narrow.png"] {
        let size = std::fs::metadata(shots.join(shot)).unwrap().len();
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
}

/// A tmux server of the test's own, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(width: u16, height: u16) -> Self {
        let tmux = Self {
            socket: format!("netmon-test-{}", std::process::id()),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "bash --norc --noprofile",
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux (cargo xtask setup installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend(keys);
        self.run(&args);
    }

    fn text(&self, keys: &str) {
        self.run(&["send-keys", "-t", "0", "-l", keys]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "0"])
    }

    fn format(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", "0", format])
            .trim()
            .to_string()
    }

    /// Waits until `ready` holds of the screen; panics with the screen otherwise.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited 30 s for {what}; the screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// The row of the interface `name` in the screen's table of interfaces, split into its cells.
fn row_of(screen: &str, name: &str) -> Option<Vec<String>> {
    screen
        .lines()
        .skip_while(|line| !line.starts_with("┌Interfaces"))
        .take_while(|line| !line.starts_with('└'))
        .find_map(|line| {
            let cells: Vec<String> = line
                .trim_matches(|c: char| c == '│' || c.is_whitespace())
                .split_whitespace()
                .map(str::to_string)
                .collect();
            (cells.first().map(String::as_str) == Some(name)).then_some(cells)
        })
}

#[test]
fn netmon_top_shows_filters_and_quits_in_a_terminal() {
    let scene = Scene::new();
    let password = ConfigFile::new(&format!("{PASSWORD}\n"));
    let tmux = Tmux::new(160, 50);
    let command = format!(
        "ip netns exec {} {} top --url {} --user {USER} --password-file {} --ca-cert {} \
         --interval 500ms; echo top-exited-$?",
        scene.ns.name,
        netmon_bin().display(),
        scene.url(),
        password.path_str(),
        scene.pki.path("ca.crt"),
    );
    tmux.text(&command);
    tmux.keys(&["Enter"]);
    let veth = scene.veth.a_dev.clone();
    let screen = tmux.wait_for("the veth with its traffic", |screen| {
        row_of(screen, &veth).is_some_and(|cells| cells[2] != "0" && cells[4] != "0")
    });
    assert_eq!(tmux.format("#{alternate_on}"), "1");
    assert!(screen.contains("netmon top"), "{screen}");
    // The hostile names as plain text: the escape sequence is gone, and did nothing.
    assert!(row_of(&screen, "<b>x").is_some(), "{screen}");
    let screen = tmux.wait_for("the hostile process", |s| s.contains("<i>x"));
    assert!(!screen.contains("pwn"), "{screen}");
    assert_ne!(tmux.format("#{pane_title}"), "pwn");
    let screen = tmux.wait_for("the hostile peer group", |s| s.contains("<b>lo:"));
    assert!(!screen.contains("pwn"), "{screen}");
    let header = screen
        .lines()
        .any(|line| line.contains("failed") && line.contains("open"));
    assert!(header, "the peers' open connections:\n{screen}");
    for section in [
        "Top processes",
        "Drops by reason",
        "Connections",
        "Findings",
        "Peers",
        "Queues",
    ] {
        assert!(screen.contains(section), "{section} missing:\n{screen}");
    }
    // The agent's own listener among the queues.
    let listener = format!("listen {}", scene.agent.addr);
    tmux.wait_for("the agent's listener", |s| s.contains(&listener));
    // The busiest interface is selected, its History drawn.
    let screen = tmux.wait_for("the veth's history", |s| {
        s.contains(&format!("┌{veth} rx")) && !s.contains(&format!("┌{veth} rx 0B/s"))
    });
    // The picture of it for the README.
    let shots = output_dir();
    std::fs::write(shots.join("top.txt"), &screen).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/terminal.mjs");
    let status = Command::new("node")
        .arg(&script)
        .arg(shots.join("top.txt"))
        .arg(shots.join("top.png"))
        .status()
        .unwrap();
    assert!(status.success());

    // Filter: `/`, a name, Enter.
    tmux.text("/");
    tmux.text("b>");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the filter", |s| {
        s.contains("filter: b>") && row_of(s, &veth).is_none()
    });
    assert!(row_of(&screen, "<b>x").is_some(), "{screen}");
    assert!(row_of(&screen, "lo").is_none(), "{screen}");
    // Esc clears it.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the filter cleared", |s| row_of(s, &veth).is_some());
    // Sort keys move through their order.
    tmux.text("s");
    tmux.wait_for("sort by rx", |s| s.contains("sort: rx"));

    // q quits and gives the terminal back.
    tmux.text("q");
    let screen = tmux.wait_for("the shell again", |s| s.contains("top-exited-0"));
    assert_eq!(tmux.format("#{alternate_on}"), "0");
    assert!(!screen.contains("Interfaces"), "{screen}");
}

#[test]
fn netmon_top_says_why_it_cannot_show_an_agent() {
    let scene = Scene::new();
    let top = |args: &[&str], password: Option<&str>| {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &scene.ns.name])
            .arg(netmon_bin())
            .arg("top")
            .args(args)
            .env_remove("NETMON_PASSWORD");
        if let Some(password) = password {
            command.env("NETMON_PASSWORD", password);
        }
        let out = command.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let url = scene.url();
    let ca = scene.pki.path("ca.crt");
    let refused = top(
        &["--url", &url, "--user", USER, "--ca-cert", &ca],
        Some("wrong"),
    );
    assert!(refused.contains("refused the credentials"), "{refused}");
    let anonymous = top(&["--url", &url, "--ca-cert", &ca], None);
    assert!(anonymous.contains("401"), "{anonymous}");
    let untrusted = top(&["--url", &url, "--user", USER], Some(PASSWORD));
    assert!(untrusted.contains("cannot reach the agent"), "{untrusted}");
    let closed = top(&["--url", "http://127.0.0.1:1"], None);
    assert!(
        closed.contains("cannot reach the agent at http://127.0.0.1:1"),
        "{closed}"
    );
}
