//! The HTTP(S) server: accepts connections, terminates TLS when configured, checks basic auth,
//! and drains in-flight requests on shutdown within a deadline.
use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::Response,
};
use base64::Engine as _;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::export::{respond::error, web_config::WebConfig};

/// Largest request head accepted; a larger one is answered 431.
const MAX_REQUEST_HEAD: usize = 64 * 1024;
/// How long in-flight requests may take to finish after a stop signal.
pub const DRAIN_DEADLINE: Duration = Duration::from_millis(1500);
/// Time a client has to complete a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Verified credentials, so that bcrypt (slow by design) runs once per distinct header.
struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<String>>,
}

impl BasicAuth {
    fn check(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(value) = authorization.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        if self.verified.lock().is_ok_and(|v| v.contains(value)) {
            return true;
        }
        let Some(encoded) = value.strip_prefix("Basic ") else {
            return false;
        };
        let Some(decoded) = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
        else {
            return false;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return false;
        };
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let good = bcrypt::verify(password, hash).unwrap_or(false);
        if good && let Ok(mut verified) = self.verified.lock() {
            // Bounded: a flood of distinct good credentials only costs re-verification.
            if verified.len() > 64 {
                verified.clear();
            }
            verified.insert(value.to_string());
        }
        good
    }
}

async fn require_auth(
    State(auth): State<Arc<BasicAuth>>,
    request: Request,
    next: Next,
) -> Response {
    if auth.check(request.headers().get(header::AUTHORIZATION)) {
        return next.run(request).await;
    }
    let mut response = error(StatusCode::UNAUTHORIZED, "authentication required");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"netmon\", charset=\"UTF-8\""),
    );
    response
}

/// Adds basic auth in front of every route when users are configured.
pub fn protect(router: Router, web: &WebConfig) -> Router {
    if web.basic_auth_users.is_empty() {
        return router;
    }
    let auth = Arc::new(BasicAuth {
        users: web.basic_auth_users.clone(),
        verified: Mutex::new(HashSet::new()),
    });
    router.layer(middleware::from_fn_with_state(auth, require_auth))
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and gives
/// in-flight requests [`DRAIN_DEADLINE`] to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: &WebConfig,
    shutdown: impl Future<Output = ()>,
) {
    let router = protect(router, web);
    let tls = web.tls.clone().map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: scrapers and browsers speak it, and TLS offers only it (ALPN), so an
    // HTTP/2 server would serve only clients that assume it in plain text.
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(MAX_REQUEST_HEAD)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        match &tls {
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(%peer, "connection ended: {err}");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {err}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(err) = watcher.watch(connection).await {
                        tracing::debug!(%peer, "connection ended: {err}");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {DRAIN_DEADLINE:?}; closing them");
    }
}
