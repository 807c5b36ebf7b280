//! `netmon serve`: the poll loop, the configuration reloader and the HTTP server, until
//! SIGINT or SIGTERM.
use std::{
    sync::{Arc, mpsc},
    thread,
    time::Duration,
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    collect::Poller,
    config::ConfigSource,
    export::{http::router, server, web_config::WebConfig},
    memory,
    privileges::{self, RunAs},
    state::AgentState,
};

/// How often the configuration file is checked for changes.
const CONFIG_CHECK: Duration = Duration::from_secs(1);

pub async fn run(source: ConfigSource, user: Option<RunAs>) -> anyhow::Result<()> {
    let config = source.load()?;
    let web = match &config.server.web_config {
        Some(path) => WebConfig::from_file(path)?,
        None => WebConfig::default(),
    };
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let state = Arc::new(AgentState::new(config.clone()));

    // The poll loop owns the kernel programs on its own thread; it publishes one snapshot
    // before the server starts, so that no scrape sees an empty picture.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let poll_state = state.clone();
    let poll_thread = thread::Builder::new()
        .name("netmon-poll".into())
        .spawn(move || {
            let mut config = poll_state.config();
            let mut poller = Poller::new(&config.probes, config.host_settings());
            // Attached: from here on this thread needs only what reading maps, entering
            // namespaces and reading descriptor tables take.
            privileges::settle_thread(user, &privileges::POLL_THREAD_CAPABILITIES);
            poll_state.publish(poller.poll());
            memory::release_free_memory();
            memory::release_start_up_code();
            let _ = ready_tx.send(());
            // A message or a dropped sender both mean stop.
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stop_rx.recv_timeout(config.poll.interval)
            {
                let current = poll_state.config();
                if !Arc::ptr_eq(&current, &config) {
                    poller.set_host_settings(current.host_settings());
                    config = current;
                }
                poll_state.publish(poller.poll());
                memory::release_free_memory();
            }
            // Dropping the poller detaches and unloads every program.
            drop(poller);
        })
        .context("starting the poll thread")?;
    ready_rx
        .await
        .context("the poll thread stopped before its first poll")?;

    // The programs are attached and the files read: this thread, which accepts connections,
    // needs no capability any more (the runtime's workers dropped theirs when they started).
    privileges::settle_thread(user, &[]);
    let reloader = tokio::spawn(reload_loop(source, state.clone()));
    tracing::info!(
        listen = %config.server.listen,
        tls = web.tls.is_some(),
        basic_auth = !web.basic_auth_users.is_empty(),
        "serving /metrics, /api/v1 and /healthz"
    );
    server::serve(listener, router(state), &web, shutdown_signal()).await;

    reloader.abort();
    let _ = stop_tx.send(());
    poll_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the poll thread panicked"))?;
    tracing::info!("stopped; every program detached");
    Ok(())
}

/// Reloads the configuration on SIGHUP and when its file changes. A broken file leaves the
/// running configuration in force and is reported.
async fn reload_loop(source: ConfigSource, state: Arc<AgentState>) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!("cannot watch SIGHUP: {err}; reloading on file changes only");
            None
        }
    };
    let mut fingerprint = source.fingerprint();
    let mut ticker = tokio::time::interval(CONFIG_CHECK);
    loop {
        let cause = tokio::select! {
            _ = async { hangup.as_mut()?.recv().await }, if hangup.is_some() => "SIGHUP",
            _ = ticker.tick() => {
                let now = source.fingerprint();
                if now == fingerprint {
                    continue;
                }
                fingerprint = now;
                "file changed"
            }
        };
        match source.load() {
            Ok(config) => {
                tracing::info!(cause, "configuration reloaded");
                state.apply_config(config);
            }
            Err(err) => {
                let error = format!("{err:#}");
                tracing::error!(
                    cause,
                    "configuration not reloaded, the running one stays: {error}"
                );
                state.reject_config(error);
            }
        }
    }
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
