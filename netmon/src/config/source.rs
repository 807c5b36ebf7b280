//! Where the configuration comes from: an optional file, then the command line's overrides.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::Config;

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
            config.server.listen = listen;
        }
        if let Some(interval) = o.poll_interval {
            config.poll.interval = interval;
        }
        if let Some(web) = &o.web_config {
            config.server.web_config = Some(web.clone());
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
