//! The Debian package under a real systemd: `cargo deb` builds it (cargo xtask test does), it
//! is installed into a Debian 12 root made by mmdebstrap (its maintainer script starts no
//! agent in that chroot), the root boots systemd in systemd-nspawn inside a network namespace
//! of the test's own, and the unit runs the agent as an unprivileged user with exactly its
//! capabilities: it serves counts equal to the kernel's, reloads, stops, and is purged. The
//! unit's exposure rating is checked offline.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Metrics, Netns, Veth, loaded_netmon_programs, require_root, send_udp};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The package `cargo deb -p netmon` wrote.
fn package() -> PathBuf {
    let dir = workspace().join("target/debian");
    std::fs::read_dir(&dir)
        .ok()
        .and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no package in {}: cargo deb -p netmon (cargo xtask test builds it)",
                dir.display()
            )
        })
}

/// The capabilities the README lists, in the unit's words.
const CAPABILITIES: &[&str] = &[
    "cap_dac_read_search",
    "cap_sys_ptrace",
    "cap_sys_admin",
    "cap_syslog",
    "cap_perfmon",
    "cap_bpf",
];

#[test]
fn the_units_exposure_is_ok() {
    let unit = workspace().join("deploy/debian/netmon.service");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for netmon.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rating in:\n{text}"));
    eprintln!("exposure of netmon.service: {score}");
    assert!(score <= 4.5, "exposure {score} (at most 4.5):\n{text}");
    // The unit grants exactly the README's capabilities, and the README lists them.
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    for key in ["AmbientCapabilities=", "CapabilityBoundingSet="] {
        let line = unit_text.lines().find(|l| l.starts_with(key)).unwrap();
        let mut granted: Vec<String> = line[key.len()..]
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        granted.sort();
        let mut wanted: Vec<String> = CAPABILITIES.iter().map(|c| c.to_string()).collect();
        wanted.sort();
        assert_eq!(granted, wanted, "{line}");
    }
    for capability in CAPABILITIES {
        assert!(
            readme.contains(&format!("`{}`", capability.to_uppercase())),
            "{capability} is not in the README"
        );
    }
}

/// A Debian 12 root with systemd and the package installed, removed when dropped.
struct Root {
    dir: PathBuf,
}

impl Root {
    fn with_package(deb: &Path) -> Self {
        let dir = workspace().join(format!("target/systemd-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let name = deb.file_name().unwrap().to_str().unwrap();
        let out = Command::new("mmdebstrap")
            .args([
                "--quiet",
                "--variant=minbase",
                "--include=systemd,systemd-sysv,dbus,curl",
                &format!("--customize-hook=copy-in {} /tmp", deb.display()),
                // The README's command: apt installs the file and what it depends on.
                &format!(
                    "--customize-hook=chroot \"$1\" sh -c 'cd /tmp && apt install -y ./{name}'"
                ),
                "bookworm",
            ])
            .arg(&dir)
            .output()
            .expect("mmdebstrap (cargo xtask setup installs it)");
        assert!(
            out.status.success(),
            "mmdebstrap: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Processes running the agent from inside `root`.
fn agents_in(root: &Path) -> Vec<u32> {
    let root = root.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == root)
                && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "netmon")
        })
        .collect()
}

/// systemd booted in `root` by systemd-nspawn, in the network namespace `ns`.
struct Container {
    nspawn: Child,
    leader: u32,
    log: PathBuf,
}

impl Container {
    fn boot(root: &Root, ns: &Netns) -> Self {
        let log = root.dir.with_extension("log");
        let nspawn = Command::new("systemd-nspawn")
            .args([
                "--quiet",
                "--boot",
                "--register=no",
                "--keep-unit",
                "--pipe",
            ])
            .arg("--directory")
            .arg(&root.dir)
            .arg(format!("--network-namespace-path={}", ns.path().display()))
            // nspawn keeps a container's capabilities and system calls to a default set; the
            // agent's unit asks for these besides.
            .arg("--capability=CAP_BPF,CAP_PERFMON,CAP_SYSLOG")
            .arg("--system-call-filter=bpf perf_event_open")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("systemd-nspawn (cargo xtask setup installs systemd-container)");
        let deadline = Instant::now() + Duration::from_secs(60);
        let leader = loop {
            let children =
                std::fs::read_to_string(format!("/proc/{}/task/{0}/children", nspawn.id()))
                    .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                break pid.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "nspawn started no container");
            thread::sleep(Duration::from_millis(100));
        };
        let container = Self {
            nspawn,
            leader,
            log,
        };
        loop {
            let state = container.run(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not finish booting ({state}); console:\n{}",
                container.console()
            );
            thread::sleep(Duration::from_millis(200));
        }
        container
    }

    /// Runs a command inside the container.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .unwrap()
    }

    /// Runs a command inside the container and returns its stdout; it must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} in the container: {}{}\njournal:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journal()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn journal(&self) -> String {
        String::from_utf8_lossy(
            &self
                .run(&["journalctl", "-u", "netmon", "--no-pager", "-n", "60"])
                .stdout,
        )
        .into_owned()
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The agent's answer to a GET, with curl inside the container; `None` when it gave none.
    fn try_get(&self, path: &str) -> Option<String> {
        let url = format!("http://127.0.0.1:9469{path}");
        let out = self.run(&["curl", "--silent", "--fail", "--max-time", "5", &url]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The agent's answer to a GET; it must answer.
    fn get(&self, path: &str) -> String {
        self.try_get(path).unwrap_or_else(|| {
            panic!(
                "no answer to {path} in the container; journal:\n{}",
                self.journal()
            )
        })
    }

    /// The metrics of a poll after `after` (the snapshot's time in ms).
    fn metrics_after(&self, after: f64) -> Metrics {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(out) = self.try_get("/metrics") {
                let metrics = Metrics::parse(&out);
                if metrics
                    .value("netmon_snapshot_timestamp_seconds", &[])
                    .is_some_and(|t| t * 1000.0 > after)
                {
                    return metrics;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no fresh metrics; journal:\n{}",
                self.journal()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.run(&["systemctl", "poweroff"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.nspawn.try_wait().ok().flatten().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64
}

#[test]
fn the_package_installs_serves_reloads_stops_and_purges_under_systemd() {
    require_root();
    let deb = package();
    let root = Root::with_package(&deb);

    // Installed in a chroot: the unit is enabled, and no agent was started there, even when
    // the maintainer script runs again without the installer's guards.
    // (The link points into the root, absolute: look at the link itself.)
    let wants = root
        .dir
        .join("etc/systemd/system/multi-user.target.wants/netmon.service");
    assert!(wants.symlink_metadata().is_ok(), "the unit is not enabled");
    assert!(root.dir.join("etc/netmon/netmon.toml").exists());
    let postinst = Command::new("chroot")
        .arg(&root.dir)
        .args(["/var/lib/dpkg/info/netmon.postinst", "configure"])
        // As dpkg runs it.
        .env("DPKG_MAINTSCRIPT_PACKAGE", "netmon")
        .env("DPKG_MAINTSCRIPT_NAME", "postinst")
        .status()
        .unwrap();
    assert!(postinst.success());
    thread::sleep(Duration::from_millis(500));
    assert_eq!(agents_in(&root.dir), Vec::<u32>::new());

    let ns = Netns::new("unit");
    let peer = Netns::new("unitpeer");
    let veth = Veth::connect(&ns, &peer, 73);
    let container = Container::boot(&root, &ns);

    // The unit started the agent at boot, as a user of its own with exactly its capabilities.
    assert_eq!(
        container.ok(&["systemctl", "is-active", "netmon"]).trim(),
        "active"
    );
    let pid = container
        .ok(&["systemctl", "show", "--value", "-p", "MainPID", "netmon"])
        .trim()
        .to_string();
    let status = container.ok(&["cat", &format!("/proc/{pid}/status")]);
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:\t")))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    // A user systemd made for the unit (DynamicUser=): its range is 61184 to 65519.
    let uid: u32 = field("Uid").parse().unwrap();
    assert!((61184..=65519).contains(&uid), "uid {uid}");
    let bounding = u64::from_str_radix(&field("CapBnd"), 16).unwrap();
    let wanted = [2u32, 19, 21, 34, 38, 39]
        .iter()
        .fold(0u64, |mask, cap| mask | 1 << cap);
    assert_eq!(bounding, wanted, "CapBnd {bounding:#x}");

    // Real counts: 40 datagrams across the veth, and the agent's counts equal the kernel's.
    let status: serde_json::Value = serde_json::from_str(&container.get("/api/v1/status")).unwrap();
    let methods: Vec<String> = status["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}={}", p["probe"].as_str().unwrap(), p["method"]))
        .collect();
    assert!(
        methods.contains(&"net_dev_xmit=\"tp_btf\"".to_string()),
        "{methods:?}\n{}",
        container.journal()
    );
    send_udp(&peer, &veth.b_ip, &format!("{}:9", veth.a_ip), 40, 100);
    let stats = ns.link_stats(&veth.a_dev);
    let metrics = container.metrics_after(now_ms());
    let labels = [("interface", veth.a_dev.as_str()), ("direction", "rx")];
    assert_eq!(
        metrics.counter("netmon_network_packets_total", &labels),
        stats.rx_packets
    );
    assert_eq!(
        metrics.counter("netmon_network_bytes_total", &labels),
        stats.rx_bytes
    );
    assert!(stats.rx_packets >= 40);

    // Reload (SIGHUP from ExecReload) puts a changed file in force.
    let config = root.dir.join("etc/netmon/netmon.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[thresholds]\ndrop_rate_percent = 2.5\n"),
    )
    .unwrap();
    container.ok(&["systemctl", "reload", "netmon"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&container.get("/api/v1/status")).unwrap();
        if status["thresholds"]["drop_rate_percent"] == 2.5 {
            assert_eq!(status["config"]["last_reload_successful"], true);
            break;
        }
        assert!(Instant::now() < deadline, "not reloaded: {status}");
        thread::sleep(Duration::from_millis(200));
    }
    assert!(
        container.journal().contains("SIGHUP"),
        "{}",
        container.journal()
    );
    assert_eq!(
        container.ok(&["systemctl", "is-active", "netmon"]).trim(),
        "active"
    );

    // Stop: the agent is gone, and so are its kernel programs.
    container.ok(&["systemctl", "stop", "netmon"]);
    assert_eq!(agents_in(&root.dir), Vec::<u32>::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !loaded_netmon_programs().is_empty() {
        assert!(
            Instant::now() < deadline,
            "left loaded: {:?}",
            loaded_netmon_programs()
        );
        thread::sleep(Duration::from_millis(100));
    }

    // Purge: binary, unit and configuration are gone.
    container.ok(&["apt", "purge", "-y", "netmon"]);
    for path in [
        "usr/bin/netmon",
        "usr/lib/systemd/system/netmon.service",
        "etc/netmon/netmon.toml",
        "etc/systemd/system/multi-user.target.wants/netmon.service",
    ] {
        assert!(
            root.dir.join(path).symlink_metadata().is_err(),
            "{path} left after purge"
        );
    }
    let gone = container.run(&["systemctl", "cat", "netmon"]);
    assert!(!gone.status.success());
}
