//! The command line's answers to bad input, and the agent without privileges.
use std::{net::TcpListener, process::Command};

use netmon_tests::{Agent, Metrics, netmon_bin, require_root};

#[test]
fn unknown_flags_are_usage_errors() {
    let out = Command::new(netmon_bin())
        .args(["serve", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    let out = Command::new(netmon_bin())
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unparseable_listen_address_names_it() {
    let out = Command::new(netmon_bin())
        .args(["serve", "--listen", "localhost:notaport"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("localhost:notaport"));
}

#[test]
fn listen_address_in_use_is_one_clear_line() {
    require_root();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(netmon_bin())
        .args(["serve", "--listen", &addr])
        .env("RUST_LOG", "off")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("Address already in use"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
}

#[test]
fn without_privileges_it_serves_host_statistics_and_says_what_is_missing() {
    require_root();
    let agent = Agent::builder()
        .run_by(&[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .start();
    let metrics = Metrics::parse(&agent.get("/metrics").body);
    assert!(
        metrics
            .value(
                "netmon_network_packets_total",
                &[("interface", "lo"), ("direction", "rx")]
            )
            .is_some(),
        "host statistics are served without privileges"
    );
    assert_eq!(
        metrics.value(
            "netmon_probe_attached",
            &[("probe", "net_dev_xmit"), ("method", "none")]
        ),
        Some(0.0)
    );
    let status = agent.get("/api/v1/status").body;
    assert!(status.contains("CAP_BPF"), "{status}");
    assert!(agent.log().contains("CAP_BPF"), "{}", agent.log());
}

#[test]
fn check_config_explains_a_good_file() {
    let file = netmon_tests::ConfigFile::new(
        "poll_interval = \"500ms\"\n[thresholds]\ndrop_rate_percent = 2.0\n\
         [[expected_ports]]\nport = 22\nprocess = \"sshd\"\n",
    );
    let out = Command::new(netmon_bin())
        .args(["check-config", file.path_str()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("valid"), "{text}");
    assert!(text.contains("poll_interval = 500ms"), "{text}");
    assert!(text.contains("drop_rate 2 %"), "{text}");
    assert!(text.contains("expected port tcp/22 held by sshd"), "{text}");
}

#[test]
fn broken_configuration_files_get_clear_errors() {
    let cases = [
        ("poll_interval = \"fast\"", "invalid duration \"fast\""),
        ("poll_intervall = \"2s\"", "unknown field `poll_intervall`"),
        ("listen = \"localhost\"", "invalid socket address"),
        ("history_length = 1", "at least 2 snapshots"),
        ("history_length = -3", "invalid value"),
        ("[thresholds]\nsaturation_percent = 150", "at most 100"),
        (
            "[probe_methods]\nnet_dev_xmit = \"kprobe\"",
            "not a method of this probe",
        ),
        (
            "[probe_methods]\nno_such_probe = \"tp_btf\"",
            "unknown variant `no_such_probe`",
        ),
        ("[link_capacity_mbps]\neth0 = 0", "must be more than 0"),
        ("[[expected_ports]]\nport = 0", "port 0"),
        ("interface_include = [\"\"]", "empty pattern"),
        ("max_tracked_interfaces = 0", "at least 1"),
        (
            "poll_interval = \"2s\"\npoll_interval = \"3s\"",
            "duplicate key",
        ),
        ("[thresholds", "unclosed table"),
    ];
    for (text, expected) in cases {
        let file = netmon_tests::ConfigFile::new(text);
        let out = Command::new(netmon_bin())
            .args(["check-config", file.path_str()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{text:?}: expected {expected:?} in {stderr}"
        );
        assert!(
            stderr.contains(file.path_str()),
            "{text:?}: the message names the file"
        );
    }
    let out = Command::new(netmon_bin())
        .args(["check-config", "/nonexistent/netmon.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/netmon.toml"));
}

#[test]
fn environment_variables_are_checked_like_flags() {
    let out = Command::new(netmon_bin())
        .arg("serve")
        .env("NETMON_POLL_INTERVAL", "0s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("more than zero"), "{stderr}");
}

#[test]
fn diagnose_samples_a_window_and_reports() {
    require_root();
    let ns = netmon_tests::Netns::new("cli-diagnose");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(netmon_bin())
        .args(["diagnose", "--window", "1s", "--json"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "ok", "{json}");
    assert!(json["window_seconds"].as_f64().unwrap() >= 0.8);
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(netmon_bin())
        .args(["diagnose", "--window", "500ms"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("status: ok"));
}

#[test]
fn an_unknown_user_is_refused_before_anything_starts() {
    let out = Command::new(netmon_bin())
        .args(["serve", "--user", "no-such-user-here"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named \"no-such-user-here\""));
}

#[test]
fn snapshot_samples_a_window_and_shows_what_the_kernel_counted() {
    require_root();
    let (a, b) = (
        netmon_tests::Netns::new("snap-a"),
        netmon_tests::Netns::new("snap-b"),
    );
    let veth = netmon_tests::Veth::connect(&a, &b, 236);
    // A configuration that only the file can give: the interface's capacity.
    let config =
        netmon_tests::ConfigFile::new(&format!("[link_capacity_mbps]\n{} = 100\n", veth.a_dev));
    let snapshot = Command::new("ip")
        .args(["netns", "exec", &a.name])
        .arg(netmon_bin())
        .args(["snapshot", "--duration", "3s", "--json", "--config"])
        .arg(config.path_str())
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // 40 datagrams while it samples, from the namespace it watches.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let before = a.link_stats(&veth.a_dev);
    netmon_tests::send_udp(&a, &veth.a_ip, &format!("{}:9", veth.b_ip), 40, 100);
    let sent = a.link_stats(&veth.a_dev).tx_packets - before.tx_packets;
    let out = snapshot.wait_with_output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let traffic = json["snapshot"]["kernel"]["traffic"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["interface"] == veth.a_dev.as_str() && t["netns"] == a.inode())
        .unwrap_or_else(|| panic!("no kernel traffic of {}: {json:#}", veth.a_dev))
        .clone();
    // The interface sent nothing but these in the window, and the programs counted them.
    assert_eq!(sent, 40);
    assert_eq!(traffic["tx_packets"].as_u64(), Some(sent));
    let rates = json["rates"]["per_interface"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["interface"] == veth.a_dev.as_str())
        .unwrap()
        .clone();
    assert!(rates["tx"]["packets_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(rates["capacity_mbps"], 100);

    // The tables name the window's rates and the kernel's counts.
    let text = Command::new("ip")
        .args(["netns", "exec", &a.name])
        .arg(netmon_bin())
        .args(["snapshot", "--duration", "500ms"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for heading in [
        "RATES (over 0.5 s)",
        "KERNEL TRAFFIC",
        "KERNEL DROPS",
        "TCP:",
    ] {
        assert!(text.contains(heading), "{heading} missing:\n{text}");
    }
    // A broken file is refused.
    let broken = netmon_tests::ConfigFile::new("poll_interval = \"soon\"\n");
    let out = Command::new(netmon_bin())
        .args(["snapshot", "--config", broken.path_str()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("poll_interval"));
}
