//! `/api/v1/history`: the History as a time series of rates, for the live views' charts.
use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{export::respond::error, rates, state::AgentState};

pub(super) async fn history_handler(
    State(state): State<Arc<AgentState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    if let Some(name) = query.keys().find(|name| *name != "interface") {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("unknown parameter {name:?}: the only filter is interface"),
        );
    }
    let interface = query.get("interface").map(String::as_str);
    if let Some(name) = interface
        && !state.latest().interfaces.iter().any(|i| i.name == name)
    {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no interface named {name:?}"),
        );
    }
    let items = state.with_history(|history| rates::series(history.iter(), interface));
    Json(json!({ "interface": interface, "items": items })).into_response()
}
