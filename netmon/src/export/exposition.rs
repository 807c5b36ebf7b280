//! The exposition of the newest snapshot, rendered and compressed at most once per format
//! and state: many scrapers of one snapshot cost one render and one compression.
use std::{
    io::Write as _,
    sync::{Arc, OnceLock, RwLock},
};

use axum::body::Bytes;
use flate2::{Compression, write::GzEncoder};

use crate::{
    export::metrics,
    model::Snapshot,
    state::{AgentState, AgentStatus},
};

/// The newest snapshot with the agent's state, rendered at most once per format: many
/// scrapers of one snapshot cost one render.
pub struct Exposition {
    snapshot: Arc<Snapshot>,
    agent: AgentStatus,
    text: OnceLock<Result<Bytes, String>>,
    openmetrics: OnceLock<Bytes>,
    text_gzip: OnceLock<Result<Bytes, String>>,
    openmetrics_gzip: OnceLock<Bytes>,
}

impl Exposition {
    fn new(snapshot: Arc<Snapshot>, agent: AgentStatus) -> Self {
        Self {
            snapshot,
            agent,
            text: OnceLock::new(),
            openmetrics: OnceLock::new(),
            text_gzip: OnceLock::new(),
            openmetrics_gzip: OnceLock::new(),
        }
    }

    pub fn text(&self) -> Result<Bytes, String> {
        self.text
            .get_or_init(|| {
                metrics::render_text(&self.snapshot, &self.agent)
                    .map(Bytes::from)
                    .map_err(|e| format!("{e:#}"))
            })
            .clone()
    }

    pub fn openmetrics(&self) -> Bytes {
        self.openmetrics
            .get_or_init(|| Bytes::from(metrics::render_openmetrics(&self.snapshot, &self.agent)))
            .clone()
    }

    /// The text format, gzip-compressed.
    pub fn text_gzip(&self) -> Result<Bytes, String> {
        self.text_gzip
            .get_or_init(|| self.text().map(|text| gzip(&text)))
            .clone()
    }

    /// The OpenMetrics format, gzip-compressed.
    pub fn openmetrics_gzip(&self) -> Bytes {
        self.openmetrics_gzip
            .get_or_init(|| gzip(&self.openmetrics()))
            .clone()
    }
}

/// `body` compressed with gzip at the fastest level: an exposition repeats itself so much that
/// it still shrinks more than tenfold (the busy host of the bench: 834 kB to 61 kB, where the
/// default level gives 52 kB for several times the work).
fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 8), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// The exposition of the state's current generation, made again when the state moves.
#[derive(Default)]
pub struct Expositions {
    current: RwLock<Option<(u64, Arc<Exposition>)>>,
}

impl Expositions {
    pub fn current(&self, state: &AgentState) -> Arc<Exposition> {
        let generation = state.generation();
        if let Ok(current) = self.current.read()
            && let Some((made, exposition)) = current.as_ref()
            && *made == generation
        {
            return exposition.clone();
        }
        let exposition = Arc::new(Exposition::new(state.latest(), state.agent_status()));
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = Some((generation, exposition.clone()));
        exposition
    }
}
