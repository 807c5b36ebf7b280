//! The configuration file as operators write it (README.md, "Configuration"): flat top-level
//! keys and a few sections, with their defaults. It is read whole and then moved into the
//! groups of `Config`. serde's `flatten` would let each group read its own keys, but it does
//! not combine with `deny_unknown_fields`, which makes a misspelt key an error.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use serde::{Deserialize, Deserializer};

use super::{
    Config, DiagnosisSettings, DropSamples, ExpectedPort, InterfaceFilter, InterfaceSettings,
    PollSettings, Processes, ServerSettings, Thresholds,
};
use crate::{
    model::peer_names::PeerFolding,
    model::probes::{AttachMethod, Hook, ProgramVariant},
    probes::ProbeSettings,
};

/// Default listen address: loopback only. Exposing the agent is the operator's choice.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_HISTORY_LENGTH: usize = 32;
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ConfigFile {
    /// Address the HTTP server listens on.
    listen: SocketAddr,
    /// Time between two polls of the kernel and host state.
    #[serde(deserialize_with = "duration")]
    poll_interval: Duration,
    /// Snapshots kept for rates and diagnosis.
    history_length: usize,
    /// Pins a probe to one attach method (`tp_btf`, `raw_tp`, `tracepoint`, `kprobe`,
    /// `fexit`).
    probe_methods: BTreeMap<Hook, AttachMethod>,
    /// Probes not attached at all, e.g. `["sock_send_length", "sock_recv_length"]` to spare
    /// every send and receive their cost where per-process traffic is not wanted.
    disabled_probes: BTreeSet<Hook>,
    /// Interfaces (over all namespaces) the kernel programs keep counters for, rounded up to
    /// a power of two. A program looks for an interface's slot among the 128 consecutive
    /// slots from the one its hash picks (`SLOT_PROBES` in `netmon-common/src/slots.rs`), so
    /// the table fills about three quarters before it refuses one; traffic of an interface
    /// that finds no free slot there is counted in `netmon_probe_map_full_total`.
    max_tracked_interfaces: u32,
    /// The build of the kernel programs to load (`bpf_loop` or `bounded_walk`) instead of the
    /// fastest the kernel takes: `bounded_walk` runs anywhere netmon does, at a higher cost.
    program_variant: Option<ProgramVariant>,
    /// Capacity in Mbit/s per interface name, for utilization of links that report no speed.
    link_capacity_mbps: BTreeMap<String, u64>,
    /// TLS and basic auth, in the exporter-toolkit web-config.yml format.
    web_config: Option<PathBuf>,
    /// Window over which rates, aggregates and the diagnosis are computed.
    #[serde(deserialize_with = "duration")]
    rate_window: Duration,
    /// Interface name patterns (`*` and `?` wildcards) to report; empty means all.
    interface_include: Vec<String>,
    /// Interface name patterns to leave out, applied after `interface_include`.
    interface_exclude: Vec<String>,
    /// Thresholds of the diagnosis.
    thresholds: Thresholds,
    /// Ports that should be listening; when any is given, other listeners are reported.
    expected_ports: Vec<ExpectedPort>,
    /// How many drops are sampled, and how many samples are kept.
    drop_samples: DropSamples,
    /// Socket I/O by process: how many processes get series of their own.
    processes: Processes,
    /// TCP peers: how many get series of their own, and what they are called.
    peers: PeerFolding,
}

impl Default for ConfigFile {
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
            peers: PeerFolding::default(),
        }
    }
}

impl From<ConfigFile> for Config {
    fn from(file: ConfigFile) -> Self {
        // Taken apart whole: a key added to the file does not compile until it has a place
        // in a group.
        let ConfigFile {
            listen,
            poll_interval,
            history_length,
            probe_methods,
            disabled_probes,
            max_tracked_interfaces,
            program_variant,
            link_capacity_mbps,
            web_config,
            rate_window,
            interface_include,
            interface_exclude,
            thresholds,
            expected_ports,
            drop_samples,
            processes,
            peers,
        } = file;
        Config {
            server: ServerSettings { listen, web_config },
            probes: ProbeSettings {
                forced: probe_methods,
                disabled: disabled_probes,
                max_tracked_interfaces,
                variant: program_variant,
            },
            poll: PollSettings {
                interval: poll_interval,
                history_length,
                rate_window,
            },
            interfaces: InterfaceSettings {
                filter: InterfaceFilter {
                    include: interface_include,
                    exclude: interface_exclude,
                },
                link_capacity_mbps,
            },
            samples: drop_samples,
            processes,
            peers,
            diagnosis: DiagnosisSettings {
                thresholds,
                expected_ports,
            },
        }
    }
}

impl Config {
    /// Parses and validates a configuration file's text.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let config = Config::from(file);
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in configuration {}", path.display()))
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
