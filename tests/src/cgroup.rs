//! Cgroups (v2) made by the tests.
use std::{
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use crate::machine::unique_name;

/// A cgroup (v2) the test makes, removed when dropped (once its processes have exited).
pub struct Cgroup {
    pub dir: PathBuf,
    /// Its path as `/proc/<pid>/cgroup` writes it.
    pub path: String,
}

impl Cgroup {
    pub fn new(tag: &str) -> Self {
        let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .iter()
            .map(Path::new)
            .find(|root| {
                root.join("cgroup.procs").exists() && root.join("cgroup.controllers").exists()
            })
            .expect("a cgroup v2 hierarchy under /sys/fs/cgroup");
        let name = unique_name(&format!("nmt-{tag}"));
        let dir = root.join(&name);
        std::fs::create_dir(&dir).unwrap();
        Self {
            dir,
            path: format!("/{name}"),
        }
    }

    /// Moves process `pid` into this cgroup.
    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Processes that have just exited may still be counted in it for a moment.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}
