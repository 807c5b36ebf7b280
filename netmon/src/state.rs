//! The running agent's state: the configuration in force, the History and the newest
//! Snapshot with its diagnosis and rates, the recent drop samples, and how the last reload
//! went. The poll loop and the reloader write it; the outputs read it. Nothing here routes
//! or renders.
use std::sync::{
    Arc, RwLock,
    atomic::{AtomicU64, Ordering},
};

use serde::Serialize;

use crate::{
    config::Config,
    diagnose::{Diagnosis, diagnose_window},
    model::{History, Snapshot, drops::RecentDrops},
    rates::Summary,
};

/// How the last configuration reload went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReloadStatus {
    pub last_reload_successful: bool,
    /// Unix time of the last successful load (the start counts as one).
    pub last_success_timestamp_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Settings changed in the file that take effect only after a restart.
    pub pending_restart: Vec<&'static str>,
}

/// How the agent itself is doing: what the exposition shows besides the snapshot.
#[derive(Clone, Debug, Default)]
pub struct AgentStatus {
    pub diagnosis: Arc<Diagnosis>,
    pub reload: ReloadStatus,
}

/// The running agent's state: the newest snapshot and the History, the recent drop samples,
/// the diagnosis and rates of the newest window, the configuration in force and how the last
/// reload went. The poll loop and the reloader publish it; the handlers read it.
pub struct AgentState {
    latest: RwLock<Arc<Snapshot>>,
    history: RwLock<History>,
    /// Drop samples are kept here, not in the snapshots of the History: their number is
    /// bounded by `drop_samples.keep`, not by the History's length times a poll's samples.
    recent_drops: RwLock<RecentDrops>,
    config: RwLock<Arc<Config>>,
    diagnosis: RwLock<Arc<Diagnosis>>,
    summary: RwLock<Option<Arc<Summary>>>,
    reload: RwLock<ReloadStatus>,
    /// Counts the changes of what outputs show: a new snapshot, a reload.
    generation: AtomicU64,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read()
        .map(|v| v.clone())
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
}

fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut guard) => *guard = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

impl AgentState {
    pub fn new(config: Config) -> Self {
        Self {
            latest: RwLock::new(Arc::new(Snapshot::default())),
            history: RwLock::new(History::new(config.poll.history_length)),
            recent_drops: RwLock::new(RecentDrops::new(config.samples.keep)),
            config: RwLock::new(Arc::new(config)),
            diagnosis: RwLock::new(Arc::new(Diagnosis::default())),
            summary: RwLock::new(None),
            reload: RwLock::new(ReloadStatus {
                last_reload_successful: true,
                last_success_timestamp_seconds: unix_now(),
                ..Default::default()
            }),
            generation: AtomicU64::new(0),
        }
    }

    /// Adds a snapshot to the History, its drop samples to the recent ones, and diagnoses
    /// the new window.
    pub fn publish(&self, mut snapshot: Snapshot) {
        let config = self.config();
        let samples = std::mem::take(&mut snapshot.drop_samples);
        let snapshot = Arc::new(snapshot);
        let mut recent = match self.recent_drops.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        recent.set_capacity(config.samples.keep);
        recent.add(samples);
        let (diagnosis, summary) = match self.history.write() {
            Ok(mut history) => {
                history.set_capacity(config.poll.history_length);
                history.push(snapshot.clone());
                diagnose_window(&history, &recent, config.poll.rate_window, &config)
            }
            Err(_) => (Diagnosis::default(), None),
        };
        drop(recent);
        write(&self.diagnosis, Arc::new(diagnosis));
        write(&self.summary, summary.map(Arc::new));
        write(&self.latest, snapshot);
        self.changed();
    }

    /// Marks a change of the snapshot or of the agent's state.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes with every new snapshot and reload: outputs that cache a rendering of the
    /// state render again when it moves.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn latest(&self) -> Arc<Snapshot> {
        read(&self.latest)
    }

    /// Runs `f` on the History.
    pub fn with_history<T>(&self, f: impl FnOnce(&History) -> T) -> T {
        match self.history.read() {
            Ok(history) => f(&history),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Runs `f` on the recent drop samples.
    pub fn with_recent_drops<T>(&self, f: impl FnOnce(&RecentDrops) -> T) -> T {
        match self.recent_drops.read() {
            Ok(recent) => f(&recent),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    pub fn config(&self) -> Arc<Config> {
        read(&self.config)
    }

    pub fn diagnosis(&self) -> Arc<Diagnosis> {
        read(&self.diagnosis)
    }

    pub fn reload_status(&self) -> ReloadStatus {
        read(&self.reload)
    }

    /// Puts a reloaded configuration in force; what only a restart can apply is kept from
    /// the running one and reported.
    pub fn apply_config(&self, mut new: Config) {
        let running = self.config();
        let pending = running.restart_only_changes(&new);
        running.carry_restart_only(&mut new);
        if !pending.is_empty() {
            tracing::warn!(settings = ?pending, "changed settings take effect after a restart");
        }
        write(&self.config, Arc::new(new));
        write(
            &self.reload,
            ReloadStatus {
                last_reload_successful: true,
                last_success_timestamp_seconds: unix_now(),
                last_error: None,
                pending_restart: pending,
            },
        );
        self.changed();
    }

    /// Records a failed reload; the running configuration stays.
    pub fn reject_config(&self, error: String) {
        let mut status = self.reload_status();
        status.last_reload_successful = false;
        status.last_error = Some(error);
        write(&self.reload, status);
        self.changed();
    }

    /// Rates over the configured window, computed once per poll.
    pub fn summary(&self) -> Option<Arc<Summary>> {
        read(&self.summary)
    }

    /// What the exposition needs besides the snapshot.
    pub fn agent_status(&self) -> AgentStatus {
        AgentStatus {
            diagnosis: self.diagnosis(),
            reload: self.reload_status(),
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
