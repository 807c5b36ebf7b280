//! The HTTP server's routes. Handlers read the newest snapshot; none of them collects.
use std::sync::{Arc, OnceLock, RwLock};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use serde_json::json;

use crate::{
    config::Config,
    diagnose::{Diagnosis, diagnose_window},
    export::{
        metrics::{self, AgentState},
        server,
    },
    model::{History, Interface, Snapshot},
    rates::{InterfaceRates, Summary},
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

/// What the poll loop and the reloader publish and the handlers read.
pub struct Shared {
    latest: RwLock<Arc<Snapshot>>,
    history: RwLock<History>,
    config: RwLock<Arc<Config>>,
    diagnosis: RwLock<Arc<Diagnosis>>,
    summary: RwLock<Option<Arc<Summary>>>,
    reload: RwLock<ReloadStatus>,
    exposition: RwLock<Arc<Exposition>>,
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

impl Shared {
    pub fn new(config: Config) -> Self {
        Self {
            latest: RwLock::new(Arc::new(Snapshot::default())),
            history: RwLock::new(History::new(config.history_length)),
            config: RwLock::new(Arc::new(config)),
            diagnosis: RwLock::new(Arc::new(Diagnosis::default())),
            summary: RwLock::new(None),
            reload: RwLock::new(ReloadStatus {
                last_reload_successful: true,
                last_success_timestamp_seconds: unix_now(),
                ..Default::default()
            }),
            exposition: RwLock::new(Arc::new(Exposition::new(
                Arc::new(Snapshot::default()),
                AgentState::default(),
            ))),
        }
    }

    /// Adds a snapshot to the History and diagnoses the new window.
    pub fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        let config = self.config();
        let (diagnosis, summary) = match self.history.write() {
            Ok(mut history) => {
                history.set_capacity(config.history_length);
                history.push(snapshot.clone());
                diagnose_window(&history, config.rate_window, &config)
            }
            Err(_) => (Diagnosis::default(), None),
        };
        write(&self.diagnosis, Arc::new(diagnosis));
        write(&self.summary, summary.map(Arc::new));
        write(&self.latest, snapshot);
        self.refresh_exposition();
    }

    /// Replaces the exposition after the snapshot or the agent's state changed.
    fn refresh_exposition(&self) {
        let exposition = Exposition::new(self.latest(), self.agent_state());
        write(&self.exposition, Arc::new(exposition));
    }

    pub fn exposition(&self) -> Arc<Exposition> {
        read(&self.exposition)
    }

    pub fn latest(&self) -> Arc<Snapshot> {
        read(&self.latest)
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
        self.refresh_exposition();
    }

    /// Records a failed reload; the running configuration stays.
    pub fn reject_config(&self, error: String) {
        let mut status = self.reload_status();
        status.last_reload_successful = false;
        status.last_error = Some(error);
        write(&self.reload, status);
        self.refresh_exposition();
    }

    /// Rates over the configured window, computed once per poll.
    pub fn summary(&self) -> Option<Arc<Summary>> {
        read(&self.summary)
    }

    /// What the exposition needs besides the snapshot.
    pub fn agent_state(&self) -> AgentState {
        AgentState {
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

/// The API's OpenAPI document, served as is and checked against real responses by the tests.
pub const OPENAPI: &str = include_str!("openapi.json");

const LANDING_PAGE: &str = "<!DOCTYPE html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>netmon</title></head>
<body><h1>netmon</h1>
<p>eBPF-backed network observer.</p>
<ul>
<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>
<li><a href=\"/api/v1/status\">/api/v1/status</a>: probes and collectors</li>
<li><a href=\"/api/v1/summary\">/api/v1/summary</a>: rates and aggregates</li>
<li><a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>: the API's OpenAPI document</li>
<li><a href=\"/healthz\">/healthz</a>: liveness</li>
</ul></body></html>
";

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(LANDING_PAGE) }))
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/api/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/api/v1/status", get(status_handler))
        .route("/api/v1/interfaces", get(interfaces_handler))
        .route("/api/v1/interfaces/{name}", get(interface_handler))
        .route("/api/v1/connections", get(connections_handler))
        .route("/api/v1/listening", get(listening_handler))
        .route("/api/v1/summary", get(summary_handler))
        .route("/api/v1/traffic", get(traffic_handler))
        .route(
            "/api/v1/diagnosis",
            get(|State(shared): State<Arc<Shared>>| async move {
                Json((*shared.diagnosis()).clone())
            }),
        )
        .route("/api/v1/drops", get(drops_handler))
        .route("/api/v1/tcp", get(tcp_handler))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(server::method_not_allowed)
        .with_state(shared)
}

/// A JSON error body with its status.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn metrics_handler(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let exposition = shared.exposition();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if metrics::wants_openmetrics(accept) {
        return (
            [(header::CONTENT_TYPE, metrics::OPENMETRICS_FORMAT)],
            exposition.openmetrics(),
        )
            .into_response();
    }
    match exposition.text() {
        Ok(body) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, &err),
    }
}

async fn status_handler(State(shared): State<Arc<Shared>>) -> Response {
    let snapshot = shared.latest();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "snapshot_timestamp_ms": snapshot.timestamp_ms,
        "probes": snapshot.probes,
        "probe_load_error": snapshot.probe_load_error,
        "config": shared.reload_status(),
        "collectors": snapshot.collectors,
    }))
    .into_response()
}

/// A list in the API's one list shape.
fn items<T: serde::Serialize>(items: &[T]) -> Response {
    Json(json!({ "items": items })).into_response()
}

async fn traffic_handler(State(shared): State<Arc<Shared>>) -> Response {
    items(&shared.latest().kernel.traffic)
}

async fn drops_handler(State(shared): State<Arc<Shared>>) -> Response {
    items(&shared.latest().kernel.drops)
}

async fn tcp_handler(State(shared): State<Arc<Shared>>) -> Response {
    let snapshot = shared.latest();
    let kernel = &snapshot.kernel;
    Json(json!({
        "transitions": kernel.transitions,
        "handshakes": kernel.handshakes,
        "retransmits": kernel.tcp_retransmits,
        "resets_sent": kernel.tcp_resets_sent,
        "resets_received": kernel.tcp_resets_received,
    }))
    .into_response()
}

/// An interface with its rates over the window, when there are two snapshots in it.
#[derive(serde::Serialize)]
struct InterfaceView<'a> {
    #[serde(flatten)]
    interface: &'a Interface,
    rates: Option<&'a InterfaceRates>,
}

fn interface_views<'a>(
    snapshot: &'a Snapshot,
    summary: Option<&'a Summary>,
) -> Vec<InterfaceView<'a>> {
    snapshot
        .interfaces
        .iter()
        .map(|interface| InterfaceView {
            interface,
            rates: summary.and_then(|s| {
                s.per_interface
                    .iter()
                    .find(|r| r.interface == interface.name)
            }),
        })
        .collect()
}

async fn interfaces_handler(State(shared): State<Arc<Shared>>) -> Response {
    let (snapshot, summary) = (shared.latest(), shared.summary());
    items(&interface_views(&snapshot, summary.as_deref()))
}

async fn interface_handler(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Response {
    let (snapshot, summary) = (shared.latest(), shared.summary());
    match interface_views(&snapshot, summary.as_deref())
        .into_iter()
        .find(|view| view.interface.name == name)
    {
        Some(view) => Json(view).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("no interface named {name:?}"),
        ),
    }
}

async fn connections_handler(State(shared): State<Arc<Shared>>) -> Response {
    let snapshot = shared.latest();
    Json(json!({
        "states": snapshot.connections,
        "total": snapshot.connections.values().sum::<u64>(),
    }))
    .into_response()
}

async fn listening_handler(State(shared): State<Arc<Shared>>) -> Response {
    items(&shared.latest().listening)
}

async fn summary_handler(State(shared): State<Arc<Shared>>) -> Response {
    match shared.summary() {
        Some(summary) => Json(&*summary).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not enough snapshots yet for rates; try again after the next poll",
        ),
    }
}
