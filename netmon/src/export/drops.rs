//! `/api/v1/drops/recent` and `/api/v1/drops/top`: the sampled drops, newest first, and
//! their aggregates by (reason, location, flow), filtered by the query.
use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    export::{
        query::{Parameters, pairs},
        respond::error,
    },
    model::drops::DropFilter,
    state::AgentState,
};

/// What a request may ask for: the filter and how many items at most.
fn parse(query: Parameters) -> Result<(DropFilter, Option<usize>), String> {
    let query = pairs(query)?;
    let mut filter = DropFilter::default();
    let mut limit = None;
    for (name, value) in &query {
        let invalid = |what: &str| format!("{name}={value:?}: {what}");
        match name.as_str() {
            "reason" => filter.reason = Some(value.clone()),
            "interface" => filter.interface = Some(value.clone()),
            "netns" => {
                filter.netns = Some(
                    value
                        .parse()
                        .map_err(|_| invalid("a namespace inode number"))?,
                );
            }
            "port" => {
                filter.port = Some(value.parse().map_err(|_| invalid("a port (0 to 65535)"))?);
            }
            "limit" => {
                limit = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|l| *l > 0)
                        .ok_or_else(|| invalid("a number of items, at least 1"))?,
                );
            }
            _ => {
                return Err(format!(
                    "unknown parameter {name:?}: the filters are reason, interface, netns, port \
                     and limit"
                ));
            }
        }
    }
    Ok((filter, limit))
}

pub(super) async fn recent_handler(
    State(state): State<Arc<AgentState>>,
    query: Parameters,
) -> Response {
    let (filter, limit) = match parse(query) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    state.with_recent_drops(|recent| {
        let items: Vec<_> = recent
            .newest_first(&filter)
            .take(limit.unwrap_or(usize::MAX))
            .collect();
        Json(json!({ "items": items })).into_response()
    })
}

pub(super) async fn top_handler(
    State(state): State<Arc<AgentState>>,
    query: Parameters,
) -> Response {
    let (filter, limit) = match parse(query) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    state.with_recent_drops(|recent| {
        let mut items = recent.top(&filter);
        items.truncate(limit.unwrap_or(usize::MAX));
        Json(json!({ "items": items })).into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::query::parameters as query;

    #[test]
    fn reads_filters_and_refuses_what_is_not_one() {
        let (filter, limit) = parse(query(&[
            ("reason", "NO_SOCKET"),
            ("port", "9"),
            ("netns", "4026531840"),
            ("limit", "5"),
        ]))
        .unwrap();
        assert_eq!(filter.reason.as_deref(), Some("NO_SOCKET"));
        assert_eq!(
            (filter.port, filter.netns, limit),
            (Some(9), Some(4026531840), Some(5))
        );
        assert!(
            parse(query(&[("port", "70000")]))
                .unwrap_err()
                .contains("a port")
        );
        assert!(
            parse(query(&[("limit", "0")]))
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(
            parse(query(&[("protocol", "udp")]))
                .unwrap_err()
                .contains("unknown parameter")
        );
    }
}
