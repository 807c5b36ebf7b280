//! The agent's configuration: embedded defaults, a TOML file, and command-line overrides.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Deserializer};

use crate::{
    collect::HostSettings,
    probes::{AttachMethod, Hook, ProbeSettings},
};

/// Default listen address: loopback only. Exposing the agent is the operator's choice.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_HISTORY_LENGTH: usize = 150;
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(10);

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
    /// Pins a probe to one attach method (`tp_btf`, `raw_tp`, `tracepoint`, `kprobe`).
    pub probe_methods: BTreeMap<Hook, AttachMethod>,
    /// Interfaces (over all namespaces) the kernel programs keep counters for; traffic of
    /// more is counted in `netmon_probe_map_full_total`.
    pub max_tracked_interfaces: u32,
    /// Capacity in Mbit/s per interface name, for utilization of links that report no speed.
    pub link_capacity_mbps: BTreeMap<String, u64>,
    /// TLS and basic auth, in the exporter-toolkit web-config.yml format.
    pub web_config: Option<PathBuf>,
    /// Window over which the API's rates and aggregates are computed.
    #[serde(deserialize_with = "duration")]
    pub rate_window: Duration,
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
            max_tracked_interfaces: ProbeSettings::default().max_tracked_interfaces,
            link_capacity_mbps: BTreeMap::new(),
            web_config: None,
            rate_window: DEFAULT_RATE_WINDOW,
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
            max_tracked_interfaces: self.max_tracked_interfaces,
        }
    }

    pub fn host_settings(&self) -> HostSettings {
        HostSettings {
            link_capacity_mbps: self.link_capacity_mbps.clone(),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some((name, _)) = self.link_capacity_mbps.iter().find(|(_, c)| **c == 0) {
            bail!("link_capacity_mbps.{name} must be more than 0");
        }
        if self.max_tracked_interfaces == 0 {
            bail!("max_tracked_interfaces must be at least 1");
        }
        if self.history_length < 2 {
            bail!(
                "history_length = {}: at least 2 snapshots are needed for rates",
                self.history_length
            );
        }
        for (hook, method) in &self.probe_methods {
            let kprobe_ok = matches!(hook, Hook::KfreeSkb | Hook::InetSockSetState);
            if *method == AttachMethod::Kprobe && !kprobe_ok {
                bail!(
                    "probe_methods.{}: kprobe is only a fallback of kfree_skb and inet_sock_set_state",
                    hook.as_str()
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
            [probe_methods]
            inet_sock_set_state = "tracepoint"
            kfree_skb = "kprobe"
            "#,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.poll_interval, Duration::from_millis(500));
        assert_eq!(config.history_length, 10);
        assert_eq!(
            config.probe_methods[&Hook::InetSockSetState],
            AttachMethod::Tracepoint
        );
    }

    #[test]
    fn refuses_bad_input_with_a_clear_error() {
        let err = |text| format!("{:#}", Config::from_toml(text).unwrap_err());
        assert!(err("poll_intervall = \"2s\"").contains("unknown field `poll_intervall`"));
        assert!(err("poll_interval = \"fast\"").contains("invalid duration \"fast\""));
        assert!(err("poll_interval = \"0s\"").contains("more than zero"));
        assert!(err("listen = \"localhost\"").contains("invalid socket address"));
        assert!(err("history_length = 1").contains("at least 2"));
        assert!(err("[probe_methods]\nnet_dev_xmit = \"kprobe\"").contains("only a fallback"));
        assert!(err("[probe_methods]\nnet_dev_xmit = \"fentry\"").contains("unknown variant"));
    }
}
