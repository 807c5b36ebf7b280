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
    let agent = Agent::start_as(
        &[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ],
        &[],
    );
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
