//! `/api/v1/tcp/peers`: connection results by namespace, role and remote endpoint, filtered
//! and sorted by the query.
use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use netmon_common::peers::PeerResult;
use serde_json::json;

use crate::{
    export::{
        query::{Parameters, pairs},
        respond::error,
    },
    model::peers::TcpPeer,
    state::AgentState,
};

/// The orders a request may ask for; failures first by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Order {
    #[default]
    Failures,
    Connects,
    Peer,
}

/// What a request asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct PeerQuery {
    netns: Option<u32>,
    role: Option<String>,
    /// Series with at least one attempt of this result.
    result: Option<PeerResult>,
    order: Order,
}

impl PeerQuery {
    fn parse(query: Parameters) -> Result<Self, String> {
        let query = pairs(query)?;
        let mut parsed = Self::default();
        for (name, value) in &query {
            let invalid = |what: &str| format!("{name}={value:?}: {what}");
            match name.as_str() {
                "netns" => {
                    let netns = value.parse();
                    parsed.netns = Some(netns.map_err(|_| invalid("a namespace inode number"))?);
                }
                "role" if value == "client" || value == "server" => {
                    parsed.role = Some(value.clone());
                }
                "role" => return Err(invalid("client or server")),
                "result" => {
                    let result = PeerResult::ALL.into_iter().find(|r| r.as_str() == value);
                    parsed.result =
                        Some(result.ok_or_else(|| {
                            invalid("ok, refused, timeout, unreachable or other")
                        })?);
                }
                "sort" => {
                    parsed.order = match value.as_str() {
                        "failures" => Order::Failures,
                        "connects" => Order::Connects,
                        "peer" => Order::Peer,
                        _ => return Err(invalid("failures, connects or peer")),
                    };
                }
                _ => {
                    return Err(format!(
                        "unknown parameter {name:?}: the parameters are netns, role, result and \
                         sort"
                    ));
                }
            }
        }
        Ok(parsed)
    }

    fn admits(&self, peer: &TcpPeer) -> bool {
        self.netns.is_none_or(|netns| peer.netns == netns)
            && self.role.as_deref().is_none_or(|role| peer.role == role)
            && self
                .result
                .is_none_or(|result| peer.results.get(result) > 0)
    }

    /// The peers it admits, in its order.
    fn select<'a>(&self, peers: &'a [TcpPeer]) -> Vec<&'a TcpPeer> {
        let mut items: Vec<&TcpPeer> = peers.iter().filter(|p| self.admits(p)).collect();
        match self.order {
            Order::Failures => items.sort_by_key(|p| {
                let results = &p.results;
                std::cmp::Reverse((results.failures(), results.total()))
            }),
            Order::Connects => items.sort_by_key(|p| std::cmp::Reverse(p.results.total())),
            Order::Peer => items.sort_by(|a, b| (&a.peer, &a.port).cmp(&(&b.peer, &b.port))),
        }
        items
    }
}

pub(super) async fn peers_handler(
    State(state): State<Arc<AgentState>>,
    query: Parameters,
) -> Response {
    let query = match PeerQuery::parse(query) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let snapshot = state.latest();
    Json(json!({ "items": query.select(&snapshot.kernel.peers) })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::query::parameters as query;

    #[test]
    fn reads_filters_and_refuses_what_is_not_one() {
        let parsed = PeerQuery::parse(query(&[
            ("netns", "4026531840"),
            ("role", "client"),
            ("result", "refused"),
            ("sort", "connects"),
        ]))
        .unwrap();
        assert_eq!(
            parsed,
            PeerQuery {
                netns: Some(4_026_531_840),
                role: Some("client".to_string()),
                result: Some(PeerResult::Refused),
                order: Order::Connects,
            }
        );
        for (name, value, says) in [
            ("role", "peer", "client or server"),
            ("result", "lost", "ok, refused"),
            ("sort", "name", "failures, connects"),
            ("netns", "x", "inode"),
            ("limit", "5", "unknown parameter"),
        ] {
            let err = PeerQuery::parse(query(&[(name, value)])).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
