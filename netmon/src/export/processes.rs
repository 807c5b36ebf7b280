//! `/api/v1/processes` and `/api/v1/cgroups`: who uses the network, with the sockets each
//! process listens on.
use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::json;

use crate::{
    model::{ListeningSocket, processes::ProcessEntry},
    state::AgentState,
};

/// A process as the API shows it: its entry and its listening sockets.
#[derive(Serialize)]
struct ProcessItem<'a> {
    #[serde(flatten)]
    process: &'a ProcessEntry,
    listening: Vec<&'a ListeningSocket>,
}

pub async fn processes_handler(State(state): State<Arc<AgentState>>) -> Response {
    let snapshot = state.latest();
    let traffic = &snapshot.processes;
    let items: Vec<ProcessItem> = traffic
        .processes
        .iter()
        .map(|process| ProcessItem {
            process,
            listening: snapshot
                .listening
                .iter()
                .filter(|l| l.processes.iter().any(|owner| owner.pid == process.pid))
                .collect(),
        })
        .collect();
    Json(json!({
        "items": items,
        "other": {
            "processes": traffic.other_processes,
            "io": traffic.other.with_rates(None, 0.0),
        },
    }))
    .into_response()
}

pub async fn cgroups_handler(State(state): State<Arc<AgentState>>) -> Response {
    Json(json!({ "items": state.latest().processes.cgroups })).into_response()
}
