//! `netmon serve`: the poll loop and the HTTP server, until SIGINT or SIGTERM.
use std::{
    sync::{Arc, mpsc},
    thread,
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    collect::Poller,
    config::Config,
    export::{
        http::{Shared, router},
        server,
        web_config::WebConfig,
    },
};

pub async fn run(config: Config) -> anyhow::Result<()> {
    let web = match &config.web_config {
        Some(path) => WebConfig::from_file(path)?,
        None => WebConfig::default(),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let shared = Arc::new(Shared::new(config.history_length, config.rate_window));

    // The poll loop owns the kernel programs on its own thread; it publishes one snapshot
    // before the server starts, so that no scrape sees an empty picture.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let poll_shared = shared.clone();
    let poll_config = config.clone();
    let poll_thread = thread::Builder::new()
        .name("netmon-poll".into())
        .spawn(move || {
            let mut poller =
                Poller::new(&poll_config.probe_settings(), poll_config.host_settings());
            poll_shared.publish(poller.poll());
            let _ = ready_tx.send(());
            // A message or a dropped sender both mean stop.
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stop_rx.recv_timeout(poll_config.poll_interval)
            {
                poll_shared.publish(poller.poll());
            }
            // Dropping the poller detaches and unloads every program.
            drop(poller);
        })
        .context("starting the poll thread")?;
    ready_rx
        .await
        .context("the poll thread stopped before its first poll")?;

    tracing::info!(
        listen = %config.listen,
        tls = web.tls.is_some(),
        basic_auth = !web.basic_auth_users.is_empty(),
        "serving /metrics, /api/v1 and /healthz"
    );
    server::serve(listener, router(shared), &web, shutdown_signal()).await;

    let _ = stop_tx.send(());
    poll_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the poll thread panicked"))?;
    tracing::info!("stopped; every program detached");
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::error!("cannot watch SIGTERM: {err}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
    }
}
