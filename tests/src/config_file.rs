//! Configuration files handed to the agent.
use std::path::PathBuf;

use crate::machine::unique_name;

/// A configuration file for the agent, removed when dropped.
pub struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(text: &str) -> Self {
        Self::with_extension(text, "toml")
    }

    pub fn with_extension(text: &str, extension: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}.{extension}", unique_name("netmon-test")));
        std::fs::write(&path, text).unwrap();
        Self { path }
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
