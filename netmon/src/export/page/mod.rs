//! The live page at `/`: its HTML, script and style, and the charting library (uPlot, an npm
//! package that the build script installs and this binary embeds). Nothing is loaded from
//! outside the agent, and the policy sent with every asset forbids it, as it forbids inline
//! script and style: the page puts the host's names in as text only.
use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::export::respond::error;

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("index.html");

/// The assets under `/assets/`: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "page.js",
        "text/javascript; charset=utf-8",
        include_str!("page.js"),
    ),
    (
        "page.css",
        "text/css; charset=utf-8",
        include_str!("page.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!(concat!(env!("OUT_DIR"), "/page/uPlot.iife.min.js")),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!(concat!(env!("OUT_DIR"), "/page/uPlot.min.css")),
    ),
];

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route("/assets/{name}", get(asset))
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, body)) => page(content_type, body),
        None => error(StatusCode::NOT_FOUND, &format!("no asset named {name:?}")),
    }
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
