//! The agent's configuration: embedded defaults, a TOML file, and command-line overrides.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{
    model::probes::{AttachMethod, Hook, ProgramVariant},
    probes::{ProbeSettings, SampleBudget},
    settings::{HostSettings, InterfaceFilter},
};

/// Default listen address: loopback only. Exposing the agent is the operator's choice.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_HISTORY_LENGTH: usize = 32;
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(10);
/// Bounds of the drop sampling settings: a CPU's burst fills at most about three quarters
/// of the ring of samples, and the agent keeps a bounded record.
const MAX_SAMPLE_RATE: f64 = 10_000.0;
const MAX_SAMPLE_BURST: u64 = 512;
const MAX_SAMPLES_KEPT: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Time between two polls of the kernel and host state.
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// Snapshots kept for rates and diagnosis.
    pub history_length: usize,
    /// Pins a probe to one attach method (`tp_btf`, `raw_tp`, `tracepoint`, `kprobe`,
    /// `fexit`).
    pub probe_methods: BTreeMap<Hook, AttachMethod>,
    /// Probes not attached at all, e.g. `["sock_send_length", "sock_recv_length"]` to spare
    /// every send and receive their cost where per-process traffic is not wanted.
    pub disabled_probes: BTreeSet<Hook>,
    /// Interfaces (over all namespaces) the kernel programs keep counters for, rounded up to
    /// a power of two; traffic of an interface that finds no free slot among the 8 its hash
    /// picks is counted in `netmon_probe_map_full_total`.
    pub max_tracked_interfaces: u32,
    /// The build of the kernel programs to load (`bpf_loop` or `bounded_walk`) instead of the
    /// fastest the kernel takes: `bounded_walk` runs anywhere netmon does, at a higher cost.
    pub program_variant: Option<ProgramVariant>,
    /// Capacity in Mbit/s per interface name, for utilization of links that report no speed.
    pub link_capacity_mbps: BTreeMap<String, u64>,
    /// TLS and basic auth, in the exporter-toolkit web-config.yml format.
    pub web_config: Option<PathBuf>,
    /// Window over which rates, aggregates and the diagnosis are computed.
    #[serde(deserialize_with = "duration")]
    pub rate_window: Duration,
    /// Interface name patterns (`*` and `?` wildcards) to report; empty means all.
    pub interface_include: Vec<String>,
    /// Interface name patterns to leave out, applied after `interface_include`.
    pub interface_exclude: Vec<String>,
    /// Thresholds of the diagnosis.
    pub thresholds: Thresholds,
    /// Ports that should be listening; when any is given, other listeners are reported.
    pub expected_ports: Vec<ExpectedPort>,
    /// How many drops are sampled, and how many samples are kept.
    pub drop_samples: DropSamples,
    /// Socket I/O by process: how many processes get series of their own.
    pub processes: Processes,
}

/// Socket I/O by process (`/api/v1/processes`, `netmon_process_network_*`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Processes {
    /// Processes with series of their own, the busiest; the rest are summed in
    /// `process="other"`.
    pub top: usize,
    /// Whether `/api/v1/processes` shows command lines (off by default: arguments can carry
    /// secrets).
    pub command_line: bool,
}

impl Default for Processes {
    fn default() -> Self {
        Self {
            top: 20,
            command_line: false,
        }
    }
}

/// The most processes with series of their own.
const MAX_TOP_PROCESSES: usize = 1000;

/// Samples of dropped packets (`/api/v1/drops/recent`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropSamples {
    /// Samples each CPU may send a second, on average; 0 samples nothing (drops are then
    /// all counted as suppressed).
    pub per_cpu_rate: f64,
    /// Samples each CPU may send at once after a quiet time.
    pub per_cpu_burst: u64,
    /// Samples kept, and aggregates of them by (reason, location, flow).
    pub keep: usize,
}

impl Default for DropSamples {
    fn default() -> Self {
        Self {
            per_cpu_rate: 100.0,
            per_cpu_burst: 200,
            keep: 256,
        }
    }
}

/// Settings given on the command line or in the environment: they win over the file, also
/// after a reload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub poll_interval: Option<Duration>,
    pub web_config: Option<PathBuf>,
}

/// Where the configuration comes from: an optional file, then the overrides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub overrides: Overrides,
}

impl ConfigSource {
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config = match &self.path {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let o = &self.overrides;
        if let Some(listen) = o.listen {
            config.listen = listen;
        }
        if let Some(interval) = o.poll_interval {
            config.poll_interval = interval;
        }
        if let Some(web) = &o.web_config {
            config.web_config = Some(web.clone());
        }
        config.validate()?;
        Ok(config)
    }

    /// Modification time and size of the file, to notice that it changed.
    pub fn fingerprint(&self) -> Option<(std::time::SystemTime, u64)> {
        let meta = std::fs::metadata(self.path.as_ref()?).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }
}

/// Where the diagnosis starts to report.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Errors as a percentage of packets in a direction (warning; 5x is critical).
    pub error_rate_percent: f64,
    /// Drops (device and kernel) as a percentage of packets (warning; 5x is critical).
    pub drop_rate_percent: f64,
    /// Utilization of link speed or configured capacity (warning; 95 % is critical).
    pub saturation_percent: f64,
    /// Sockets in these states above which the diagnosis reports a surge.
    pub time_wait: u64,
    pub close_wait: u64,
    pub syn_sent: u64,
    pub syn_recv: u64,
    /// Ephemeral ports in use as a percentage of the range (warning; 95 % is critical).
    pub ephemeral_ports_percent: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            error_rate_percent: 1.0,
            drop_rate_percent: 1.0,
            saturation_percent: 80.0,
            time_wait: 5000,
            close_wait: 200,
            syn_sent: 100,
            syn_recv: 100,
            ephemeral_ports_percent: 80.0,
        }
    }
}

/// A port that should be listening.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedPort {
    pub port: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
    /// The process name that should hold it, if it matters.
    #[serde(default)]
    pub process: Option<String>,
    /// Whether it should listen on loopback only (a database, a cache).
    #[serde(default)]
    pub local_only: bool,
}

fn tcp() -> String {
    "tcp".to_string()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("valid default listen address"),
            poll_interval: DEFAULT_POLL_INTERVAL,
            history_length: DEFAULT_HISTORY_LENGTH,
            probe_methods: BTreeMap::new(),
            disabled_probes: BTreeSet::new(),
            max_tracked_interfaces: ProbeSettings::default().max_tracked_interfaces,
            program_variant: None,
            link_capacity_mbps: BTreeMap::new(),
            web_config: None,
            rate_window: DEFAULT_RATE_WINDOW,
            interface_include: Vec::new(),
            interface_exclude: Vec::new(),
            thresholds: Thresholds::default(),
            expected_ports: Vec::new(),
            drop_samples: DropSamples::default(),
            processes: Processes::default(),
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Parses `500ms`, `2s`, `1m`; refuses zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?}: {e} (write it like 500ms or 2s)"))?;
    if duration.is_zero() {
        return Err(format!("invalid duration {text:?}: must be more than zero"));
    }
    Ok(duration)
}

impl Config {
    /// Parses and validates a configuration file's text.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in configuration {}", path.display()))
    }

    pub fn probe_settings(&self) -> ProbeSettings {
        ProbeSettings {
            forced: self.probe_methods.clone(),
            disabled: self.disabled_probes.clone(),
            max_tracked_interfaces: self.max_tracked_interfaces,
            variant: self.program_variant,
        }
    }

    pub fn host_settings(&self) -> HostSettings {
        HostSettings {
            link_capacity_mbps: self.link_capacity_mbps.clone(),
            interfaces: InterfaceFilter {
                include: self.interface_include.clone(),
                exclude: self.interface_exclude.clone(),
            },
            drop_sample_budget: SampleBudget {
                rate: self.drop_samples.per_cpu_rate,
                burst: self.drop_samples.per_cpu_burst,
            },
            top_processes: self.processes.top,
            command_lines: self.processes.command_line,
        }
    }

    /// Settings that only a restart applies, by name, which differ between two configurations.
    pub fn restart_only_changes(&self, other: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.listen != other.listen {
            changed.push("listen");
        }
        if self.web_config != other.web_config {
            changed.push("web_config");
        }
        if self.probe_methods != other.probe_methods {
            changed.push("probe_methods");
        }
        if self.disabled_probes != other.disabled_probes {
            changed.push("disabled_probes");
        }
        if self.max_tracked_interfaces != other.max_tracked_interfaces {
            changed.push("max_tracked_interfaces");
        }
        if self.program_variant != other.program_variant {
            changed.push("program_variant");
        }
        changed
    }

    /// Keeps this configuration's restart-only settings in `new`, so that a reload changes only
    /// what it can apply.
    pub fn carry_restart_only(&self, new: &mut Config) {
        new.listen = self.listen;
        new.web_config = self.web_config.clone();
        new.probe_methods = self.probe_methods.clone();
        new.disabled_probes = self.disabled_probes.clone();
        new.max_tracked_interfaces = self.max_tracked_interfaces;
        new.program_variant = self.program_variant;
    }

    /// The settings in force, one per line, for `netmon check-config`.
    pub fn explain(&self) -> String {
        let t = &self.thresholds;
        let mut lines = vec![
            format!("listen = {}", self.listen),
            format!(
                "poll_interval = {}",
                humantime::format_duration(self.poll_interval)
            ),
            format!("history_length = {} snapshots", self.history_length),
            format!(
                "rate_window = {}",
                humantime::format_duration(self.rate_window)
            ),
            format!(
                "web_config = {}",
                self.web_config
                    .as_ref()
                    .map_or("none (plain HTTP, no auth)".to_string(), |p| p
                        .display()
                        .to_string())
            ),
            format!("interface_include = {:?}", self.interface_include),
            format!("interface_exclude = {:?}", self.interface_exclude),
            format!("link_capacity_mbps = {:?}", self.link_capacity_mbps),
            format!("max_tracked_interfaces = {}", self.max_tracked_interfaces),
            format!(
                "program_variant = {}",
                self.program_variant
                    .map_or("the fastest the kernel takes", ProgramVariant::as_str)
            ),
            format!(
                "probe_methods = {:?}",
                self.probe_methods
                    .iter()
                    .map(|(h, m)| format!("{}={m}", h.as_str()))
                    .collect::<Vec<_>>()
            ),
            format!(
                "disabled_probes = {:?}",
                self.disabled_probes
                    .iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
            ),
            format!(
                "thresholds: error_rate {} %, drop_rate {} %, saturation {} %, ephemeral ports \
                 {} %, TIME_WAIT {}, CLOSE_WAIT {}, SYN_SENT {}, SYN_RECV {}",
                t.error_rate_percent,
                t.drop_rate_percent,
                t.saturation_percent,
                t.ephemeral_ports_percent,
                t.time_wait,
                t.close_wait,
                t.syn_sent,
                t.syn_recv
            ),
        ];
        let d = &self.drop_samples;
        lines.push(format!(
            "drop_samples: {} a second and a burst of {} per CPU, {} kept",
            d.per_cpu_rate, d.per_cpu_burst, d.keep
        ));
        for e in &self.expected_ports {
            lines.push(format!(
                "expected port {}/{}{}{}",
                e.protocol,
                e.port,
                e.process
                    .as_ref()
                    .map_or(String::new(), |p| format!(" held by {p}")),
                if e.local_only { ", loopback only" } else { "" }
            ));
        }
        lines.join("\n")
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some((name, _)) = self.link_capacity_mbps.iter().find(|(_, c)| **c == 0) {
            bail!("link_capacity_mbps.{name} must be more than 0");
        }
        if self.max_tracked_interfaces == 0 {
            bail!("max_tracked_interfaces must be at least 1");
        }
        let t = &self.thresholds;
        for (name, value) in [
            ("error_rate_percent", t.error_rate_percent),
            ("drop_rate_percent", t.drop_rate_percent),
            ("saturation_percent", t.saturation_percent),
            ("ephemeral_ports_percent", t.ephemeral_ports_percent),
        ] {
            if !(value > 0.0 && value <= 100.0) {
                bail!("thresholds.{name} = {value}: must be more than 0 and at most 100");
            }
        }
        for expected in &self.expected_ports {
            if expected.protocol != "tcp" && expected.protocol != "udp" {
                bail!(
                    "expected_ports: protocol {:?} of port {} must be \"tcp\" or \"udp\"",
                    expected.protocol,
                    expected.port
                );
            }
            if expected.port == 0 {
                bail!("expected_ports: port 0 is not a port");
            }
        }
        for pattern in self.interface_include.iter().chain(&self.interface_exclude) {
            if pattern.is_empty() {
                bail!("interface_include/interface_exclude: empty pattern");
            }
        }
        if self.history_length < 2 {
            bail!(
                "history_length = {}: at least 2 snapshots are needed for rates",
                self.history_length
            );
        }
        let d = &self.drop_samples;
        if !(d.per_cpu_rate.is_finite() && (0.0..=MAX_SAMPLE_RATE).contains(&d.per_cpu_rate)) {
            bail!(
                "drop_samples.per_cpu_rate = {}: must be from 0 to {MAX_SAMPLE_RATE} samples a \
                 second",
                d.per_cpu_rate
            );
        }
        if d.per_cpu_burst > MAX_SAMPLE_BURST {
            bail!(
                "drop_samples.per_cpu_burst = {}: at most {MAX_SAMPLE_BURST} (the ring of \
                 samples holds about {} samples)",
                d.per_cpu_burst,
                netmon_common::DROP_SAMPLE_RING_BYTES as usize
                    / (size_of::<netmon_common::DropSample>() + 8)
            );
        }
        if !(1..=MAX_SAMPLES_KEPT).contains(&d.keep) {
            bail!(
                "drop_samples.keep = {}: must be from 1 to {MAX_SAMPLES_KEPT}",
                d.keep
            );
        }
        if self.processes.top > MAX_TOP_PROCESSES {
            bail!(
                "processes.top = {}: at most {MAX_TOP_PROCESSES}",
                self.processes.top
            );
        }
        for (hook, method) in &self.probe_methods {
            if self.disabled_probes.contains(hook) {
                bail!(
                    "probe_methods.{0}: the probe is also in disabled_probes; pin its method or \
                     turn it off, not both",
                    hook.as_str()
                );
            }
            if !hook.offers(*method) {
                bail!(
                    "probe_methods.{}: {method} is not a method of this probe (it offers {})",
                    hook.as_str(),
                    AttachMethod::ALL
                        .into_iter()
                        .filter(|m| hook.offers(*m))
                        .map(AttachMethod::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
        assert_eq!(Config::default().listen.to_string(), DEFAULT_LISTEN);
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
            config.probe_settings().disabled,
            BTreeSet::from([Hook::SockSendLength, Hook::SockRecvLength])
        );
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.poll_interval, Duration::from_millis(500));
        assert_eq!(config.history_length, 10);
        assert_eq!(
            config.probe_methods[&Hook::InetSockSetState],
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
        assert_eq!(config.thresholds.drop_rate_percent, 2.5);
        assert_eq!(config.thresholds.syn_sent, 3);
        assert_eq!(config.thresholds.time_wait, Thresholds::default().time_wait);
        assert_eq!(config.expected_ports[0].protocol, "tcp");
        assert!(config.expected_ports[1].local_only);
        let filter = config.host_settings().interfaces;
        assert!(filter.allows("eth0") && filter.allows("wlan1"));
        assert!(!filter.allows("eth9") && !filter.allows("lo") && !filter.allows("wlan10"));
    }

    #[test]
    fn restart_only_settings_are_kept_on_reload() {
        let running = Config::default();
        let mut new =
            Config::from_toml("listen = \"127.0.0.1:1\"\npoll_interval = \"1s\"").unwrap();
        assert_eq!(running.restart_only_changes(&new), vec!["listen"]);
        let off = Config::from_toml("disabled_probes = [\"kfree_skb\"]").unwrap();
        assert_eq!(running.restart_only_changes(&off), vec!["disabled_probes"]);
        running.carry_restart_only(&mut new);
        assert_eq!(new.listen, running.listen);
        assert_eq!(new.poll_interval, Duration::from_secs(1));
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
            err("[probe_methods]\nnet_dev_xmit = \"kprobe\"")
                .contains("not a method of this probe")
        );
        assert!(err("[probe_methods]\nnet_dev_xmit = \"fentry\"").contains("unknown variant"));
        assert!(
            err("[probe_methods]\nsock_send_length = \"raw_tp\"").contains("offers tp_btf, fexit")
        );
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
    }
}
