//! Reading the file, its errors, and what a reload keeps.
use std::{collections::BTreeSet, time::Duration};

use super::*;
use crate::model::probes::{AttachMethod, Hook};

#[test]
fn empty_file_gives_the_defaults() {
    assert_eq!(Config::from_toml("").unwrap(), Config::default());
    assert_eq!(Config::default().server.listen.to_string(), DEFAULT_LISTEN);
}

#[test]
fn reads_every_key() {
    let config = Config::from_toml(
        r#"
        listen = "127.0.0.1:9000"
        poll_interval = "500ms"
        history_length = 10
        disabled_probes = ["sock_send_length", "sock_recv_length"]
        [probe_methods]
        inet_sock_set_state = "tracepoint"
        kfree_skb = "kprobe"
        "#,
    )
    .unwrap();
    assert_eq!(
        config.probes.disabled,
        BTreeSet::from([Hook::SockSendLength, Hook::SockRecvLength])
    );
    assert_eq!(config.server.listen.port(), 9000);
    assert_eq!(config.poll.interval, Duration::from_millis(500));
    assert_eq!(config.poll.history_length, 10);
    assert_eq!(
        config.probes.forced[&Hook::InetSockSetState],
        AttachMethod::Tracepoint
    );
}

#[test]
fn reads_thresholds_ports_and_patterns() {
    let config = Config::from_toml(
        r#"
        interface_include = ["eth*", "wlan?"]
        interface_exclude = ["eth9"]
        [thresholds]
        drop_rate_percent = 2.5
        syn_sent = 3
        [[expected_ports]]
        port = 22
        process = "sshd"
        [[expected_ports]]
        port = 6379
        local_only = true
        "#,
    )
    .unwrap();
    assert_eq!(config.diagnosis.thresholds.drop_rate_percent, 2.5);
    assert_eq!(config.diagnosis.thresholds.syn_sent, 3);
    assert_eq!(
        config.diagnosis.thresholds.time_wait,
        Thresholds::default().time_wait
    );
    assert_eq!(config.diagnosis.expected_ports[0].protocol, "tcp");
    assert!(config.diagnosis.expected_ports[1].local_only);
    let filter = config.host_settings().interfaces;
    assert!(filter.allows("eth0") && filter.allows("wlan1"));
    assert!(!filter.allows("eth9") && !filter.allows("lo") && !filter.allows("wlan10"));
}

#[test]
fn restart_only_settings_are_kept_on_reload() {
    let running = Config::default();
    let mut new = Config::from_toml("listen = \"127.0.0.1:1\"\npoll_interval = \"1s\"").unwrap();
    assert_eq!(running.restart_only_changes(&new), vec!["listen"]);
    let off = Config::from_toml("disabled_probes = [\"kfree_skb\"]").unwrap();
    assert_eq!(running.restart_only_changes(&off), vec!["disabled_probes"]);
    running.carry_restart_only(&mut new);
    assert_eq!(new.server.listen, running.server.listen);
    assert_eq!(new.poll.interval, Duration::from_secs(1));
}

#[test]
fn refuses_bad_input_with_a_clear_error() {
    let err = |text| format!("{:#}", Config::from_toml(text).unwrap_err());
    assert!(err("poll_intervall = \"2s\"").contains("unknown field `poll_intervall`"));
    assert!(err("poll_interval = \"fast\"").contains("invalid duration \"fast\""));
    assert!(err("poll_interval = \"0s\"").contains("more than zero"));
    assert!(err("listen = \"localhost\"").contains("invalid socket address"));
    assert!(err("history_length = 1").contains("at least 2"));
    assert!(
        err("[probe_methods]\nnet_dev_xmit = \"kprobe\"").contains("not a method of this probe")
    );
    assert!(err("[probe_methods]\nnet_dev_xmit = \"fentry\"").contains("unknown variant"));
    assert!(err("[probe_methods]\nsock_send_length = \"raw_tp\"").contains("offers tp_btf, fexit"));
    assert!(err("disabled_probes = [\"tcp_send\"]").contains("unknown variant `tcp_send`"));
    assert!(
        err("disabled_probes = [\"kfree_skb\"]\n[probe_methods]\nkfree_skb = \"kprobe\"")
            .contains("pin its method or turn it off")
    );
    assert!(err("[processes]\ntop = 5000").contains("at most 1000"));
    assert!(err("[processes]\ncmdline = true").contains("unknown field `cmdline`"));
    assert!(err("[thresholds]\ndrop_rate_percent = 0").contains("more than 0"));
    assert!(err("[thresholds]\ndrop_rate = 1.0").contains("unknown field `drop_rate`"));
    assert!(err("[[expected_ports]]\nport = 80\nprotocol = \"sctp\"").contains("\"tcp\" or"));
    assert!(err("[[expected_ports]]\nport = 70000").contains("invalid value"));
    assert!(err("poll_interval = 2").contains("invalid type"));
    assert!(err("this is not toml").contains("expected"));
    assert!(err("[drop_samples]\nper_cpu_rate = -1.0").contains("from 0 to"));
    assert!(err("[drop_samples]\nper_cpu_burst = 100000").contains("at most 512"));
    assert!(err("[drop_samples]\nkeep = 0").contains("from 1 to"));
    assert!(err("[peers]\ntop = 5000").contains("at most 1000"));
    assert!(err("[peers.groups]\n\"10.0.0.0/33\" = \"x\"").contains("invalid"));
    assert!(err("[peers.groups]\n\"10.0.0.0/8\" = \"other\"").contains("a name of its own"));
}

#[test]
fn peer_groups_are_read_as_ranges() {
    let config = Config::from_toml(
        "[peers]\ntop = 5\npublic = true\n[peers.groups]\n\"10.96.0.0/12\" = \"cluster-services\"",
    )
    .unwrap();
    assert_eq!(config.peers.top, 5);
    assert!(config.peers.public);
    let range: ipnet::IpNet = "10.96.0.0/12".parse().unwrap();
    assert_eq!(config.peers.groups[&range], "cluster-services");
}
