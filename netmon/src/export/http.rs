//! The HTTP server's routes. Handlers read the newest snapshot; none of them collects.
use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use tower_http::compression::CompressionLayer;

use crate::{
    export::{
        drops,
        exposition::Expositions,
        history, metrics, page, peers, pressure, processes,
        respond::{error, method_not_allowed},
    },
    model::{Interface, Snapshot},
    rates::{InterfaceRates, Summary},
    state::AgentState,
};

/// The API's OpenAPI document, served as is and checked against real responses by the tests.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router(state: Arc<AgentState>) -> Router {
    let expositions = Arc::new(Expositions::default());
    page::routes()
        .route(
            "/metrics",
            get(
                move |State(state): State<Arc<AgentState>>, headers: HeaderMap| {
                    let expositions = expositions.clone();
                    async move { metrics_handler(&state, &expositions, &headers) }
                },
            ),
        )
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
            get(|State(state): State<Arc<AgentState>>| async move {
                Json((*state.diagnosis()).clone())
            }),
        )
        .route("/api/v1/drops", get(drops_handler))
        .route("/api/v1/drops/recent", get(drops::recent_handler))
        .route("/api/v1/drops/top", get(drops::top_handler))
        .route("/api/v1/history", get(history::history_handler))
        .route("/api/v1/tcp", get(tcp_handler))
        .route("/api/v1/tcp/transitions", get(transitions_handler))
        .route("/api/v1/tcp/handshakes", get(handshakes_handler))
        .route("/api/v1/tcp/peers", get(peers::peers_handler))
        .route("/api/v1/pressure", get(pressure::pressure_handler))
        .route("/api/v1/processes", get(processes::processes_handler))
        .route("/api/v1/cgroups", get(processes::cgroups_handler))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        // The JSON API compressed when the client takes gzip; /metrics sets its own encoding
        // from its cache, which the layer leaves alone.
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .no_br()
                .no_deflate()
                .no_zstd(),
        )
}

/// Whether an `Accept-Encoding` header takes gzip (with a quality above zero).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// The exposition, in the format the scraper asks for, compressed when it takes gzip (as
/// Prometheus always does). Both forms come from the exposition's cache.
fn metrics_handler(state: &AgentState, expositions: &Expositions, headers: &HeaderMap) -> Response {
    let exposition = expositions.current(state);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let gzip = accepts_gzip(headers);
    let (content_type, body) = if metrics::wants_openmetrics(accept) {
        let body = if gzip {
            exposition.openmetrics_gzip()
        } else {
            exposition.openmetrics()
        };
        (metrics::OPENMETRICS_FORMAT, body)
    } else {
        let body = if gzip {
            exposition.text_gzip()
        } else {
            exposition.text()
        };
        match body {
            Ok(body) => (prometheus::TEXT_FORMAT, body),
            Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, &err),
        }
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::VARY,
        HeaderValue::from_static("accept, accept-encoding"),
    );
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

async fn status_handler(State(state): State<Arc<AgentState>>) -> Response {
    let snapshot = state.latest();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "snapshot_timestamp_ms": snapshot.timestamp_ms,
        "probes": snapshot.probes,
        "probe_load_error": snapshot.probe_load_error,
        "connections_source": snapshot.connections_source,
        "socket_iterator_error": snapshot.socket_iterator_error,
        "socket_owners_source": snapshot.socket_owners_source,
        "file_iterator_error": snapshot.file_iterator_error,
        "drop_sampling_error": snapshot.drop_sampling_error,
        "namespace_watch": snapshot.namespace_watch,
        "namespace_watch_error": snapshot.namespace_watch_error,
        "socket_memo_error": snapshot.socket_memo_error,
        "program_variant": snapshot.program_variant,
        "config": state.reload_status(),
        "thresholds": state.config().diagnosis.thresholds,
        "collectors": snapshot.collectors,
    }))
    .into_response()
}

/// A list in the API's one list shape.
fn items<T: serde::Serialize>(items: &[T]) -> Response {
    Json(json!({ "items": items })).into_response()
}

async fn traffic_handler(State(state): State<Arc<AgentState>>) -> Response {
    items(&state.latest().kernel.traffic)
}

async fn drops_handler(State(state): State<Arc<AgentState>>) -> Response {
    items(&state.latest().kernel.drops)
}

async fn tcp_handler(State(state): State<Arc<AgentState>>) -> Response {
    items(&state.latest().kernel.tcp_events)
}

async fn transitions_handler(State(state): State<Arc<AgentState>>) -> Response {
    items(&state.latest().kernel.transitions)
}

async fn handshakes_handler(State(state): State<Arc<AgentState>>) -> Response {
    items(&state.latest().kernel.handshakes)
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

async fn interfaces_handler(State(state): State<Arc<AgentState>>) -> Response {
    let (snapshot, summary) = (state.latest(), state.summary());
    items(&interface_views(&snapshot, summary.as_deref()))
}

async fn interface_handler(
    State(state): State<Arc<AgentState>>,
    Path(name): Path<String>,
) -> Response {
    let (snapshot, summary) = (state.latest(), state.summary());
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

async fn connections_handler(State(state): State<Arc<AgentState>>) -> Response {
    let snapshot = state.latest();
    let items: Vec<_> = snapshot
        .connections
        .iter()
        .map(|(state, count)| json!({ "state": state, "count": count }))
        .collect();
    Json(json!({
        "items": items,
        "total": snapshot.connections.values().sum::<u64>(),
    }))
    .into_response()
}

async fn listening_handler(State(state): State<Arc<AgentState>>) -> Response {
    items(&state.latest().listening)
}

async fn summary_handler(State(state): State<Arc<AgentState>>) -> Response {
    match state.summary() {
        Some(summary) => Json(&*summary).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not enough snapshots yet for rates; try again after the next poll",
        ),
    }
}
