//! A request's query parameters as the filtering endpoints take them: the pairs, or the
//! reason they could not be read.
use std::collections::HashMap;

use axum::extract::{Query, rejection::QueryRejection};

/// The query string of a request, as axum extracts it.
pub type Parameters = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The parameters by name, or why the query string could not be read.
pub fn pairs(query: Parameters) -> Result<HashMap<String, String>, String> {
    let Query(pairs) = query.map_err(|rejection| rejection.body_text())?;
    Ok(pairs)
}

/// The parameters of a query string made of `pairs`, for the endpoints' tests.
#[cfg(test)]
pub fn parameters(pairs: &[(&str, &str)]) -> Parameters {
    Ok(Query(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    ))
}
