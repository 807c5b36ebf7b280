//! `/api/v1/pressure`: the queues and tables that fill up before packets die, per namespace
//! (`netns=` keeps one) and host-wide.
use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::{
    export::{
        query::{Parameters, pairs},
        respond::error,
    },
    model::pressure::Pressure,
    state::AgentState,
};

/// The namespace a request keeps, if it names one.
fn namespace(query: Parameters) -> Result<Option<u32>, String> {
    let mut netns = None;
    for (name, value) in pairs(query)? {
        match name.as_str() {
            "netns" => {
                let parsed = value.parse();
                netns = Some(parsed.map_err(|_| format!("netns={value:?}: a namespace inode"))?);
            }
            _ => {
                return Err(format!(
                    "unknown parameter {name:?}: the parameter is netns"
                ));
            }
        }
    }
    Ok(netns)
}

/// `pressure` with only the namespace `netns`, where one is named.
fn select(pressure: &Pressure, netns: Option<u32>) -> Pressure {
    let mut selected = pressure.clone();
    if let Some(netns) = netns {
        selected.namespaces.retain(|n| n.netns == netns);
    }
    selected
}

pub(super) async fn pressure_handler(
    State(state): State<Arc<AgentState>>,
    query: Parameters,
) -> Response {
    let netns = match namespace(query) {
        Ok(netns) => netns,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let snapshot = state.latest();
    Json(select(&snapshot.pressure, netns)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{export::query::parameters, model::pressure::NamespacePressure};

    #[test]
    fn keeps_the_namespace_asked_for_and_refuses_the_rest() {
        let pressure = Pressure {
            namespaces: [1, 2]
                .map(|netns| NamespacePressure {
                    netns,
                    ..NamespacePressure::default()
                })
                .into(),
            ..Pressure::default()
        };
        let netns = namespace(parameters(&[("netns", "2")])).unwrap();
        assert_eq!(select(&pressure, netns).namespaces[0].netns, 2);
        assert_eq!(select(&pressure, None).namespaces.len(), 2);
        assert!(namespace(parameters(&[("netns", "x")])).is_err());
        assert!(namespace(parameters(&[("cpu", "1")])).is_err());
    }
}
