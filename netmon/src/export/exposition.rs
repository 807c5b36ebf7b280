//! The exposition of the newest snapshot, rendered at most once per format and state: many
//! scrapers of one snapshot cost one render.
use std::sync::{Arc, OnceLock, RwLock};

use axum::body::Bytes;

use crate::{
    export::metrics,
    model::Snapshot,
    state::{AgentState, Shared},
};

/// The newest snapshot with the agent's state, rendered at most once per format: many
/// scrapers of one snapshot cost one render.
pub struct Exposition {
    snapshot: Arc<Snapshot>,
    agent: AgentState,
    text: OnceLock<Result<Bytes, String>>,
    openmetrics: OnceLock<Bytes>,
}

impl Exposition {
    fn new(snapshot: Arc<Snapshot>, agent: AgentState) -> Self {
        Self {
            snapshot,
            agent,
            text: OnceLock::new(),
            openmetrics: OnceLock::new(),
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
}

/// The exposition of the state's current generation, made again when the state moves.
#[derive(Default)]
pub struct Expositions {
    current: RwLock<Option<(u64, Arc<Exposition>)>>,
}

impl Expositions {
    pub fn current(&self, shared: &Shared) -> Arc<Exposition> {
        let generation = shared.generation();
        if let Ok(current) = self.current.read()
            && let Some((made, exposition)) = current.as_ref()
            && *made == generation
        {
            return exposition.clone();
        }
        let exposition = Arc::new(Exposition::new(shared.latest(), shared.agent_state()));
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = Some((generation, exposition.clone()));
        exposition
    }
}
