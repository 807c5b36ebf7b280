use std::{
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use netmon::{
    collect::Poller,
    config::{Config, ConfigSource, Overrides, parse_duration},
    diagnose::{Severity, diagnose},
    export::report,
    memory,
    model::{History, drops::RecentDrops},
    privileges::{self, RunAs},
    serve,
};
use tracing_subscriber::{
    filter::Targets, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

/// eBPF-backed network observer: Prometheus metrics and a JSON API about this host's network.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent until SIGINT or SIGTERM; reload the configuration on SIGHUP or when its
    /// file changes.
    Serve {
        /// Address to listen on (default 127.0.0.1:9469).
        #[arg(long, env = "NETMON_LISTEN", value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Configuration file (TOML); keys are these flags' names with underscores.
        #[arg(long, env = "NETMON_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Time between polls, like 500ms or 2s (default 2s).
        #[arg(long, env = "NETMON_POLL_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
        poll_interval: Option<Duration>,
        /// TLS and basic auth settings (exporter-toolkit web-config.yml format).
        #[arg(long, env = "NETMON_WEB_CONFIG", value_name = "FILE")]
        web_config: Option<PathBuf>,
        /// Run as this user once the programs are attached and the port is bound.
        #[arg(long, env = "NETMON_USER", value_name = "NAME")]
        user: Option<String>,
    },
    /// Attach, sample for a short window, and print what the host and the kernel programs
    /// saw: interfaces with their counters and rates over the window, what the programs
    /// counted in it (traffic of every namespace, drops by reason, TCP), sockets, probes.
    Snapshot {
        /// How long to sample, like 3s; the kernel counts cover this window.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        duration: Duration,
        /// Configuration file (TOML), as for serve.
        #[arg(long, env = "NETMON_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON ({"snapshot": ..., "rates": ...}) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Sample for a short window, then report the diagnosis; exits 1 when a finding is
    /// critical.
    Diagnose {
        /// How long to sample, like 5s.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        window: Duration,
        /// Configuration file with thresholds and expected ports.
        #[arg(long, env = "NETMON_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file and explain the settings it gives.
    CheckConfig { file: PathBuf },
    /// A live view of a running agent in the terminal: interfaces with their rates and
    /// trends, the selected one's history, top processes, drops, connections, findings.
    /// Keys: q quit, s sort, / filter, Esc clear the filter, up/down select.
    Top {
        /// The agent's address.
        #[arg(long, env = "NETMON_URL", default_value = "http://127.0.0.1:9469")]
        url: String,
        /// User for basic auth.
        #[arg(long)]
        user: Option<String>,
        /// File holding the basic auth password (else NETMON_PASSWORD).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// PEM file of the certificate authority that signed the agent's certificate.
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// Accept any certificate the agent presents.
        #[arg(long)]
        insecure: bool,
        /// Time between updates, like 1s.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        interval: Duration,
    },
}

fn main() -> ExitCode {
    memory::use_one_arena();
    let cli = Cli::parse();
    // RUST_LOG as `level` or `target=level,...` (no span or field filters, which would bring
    // a regular-expression engine into the binary); `info` when unset, empty or unreadable.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("netmon: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            listen,
            config,
            poll_interval,
            web_config,
            user,
        } => {
            let user = user.as_deref().map(RunAs::lookup).transpose()?;
            let source = ConfigSource {
                path: config,
                overrides: Overrides {
                    listen,
                    poll_interval,
                    web_config,
                },
            };
            // The runtime's threads serve HTTP: they start without any capability, as the
            // chosen user. Two are plenty for answers rendered once per poll, and a host's
            // CPU count does not multiply the threads' stacks and heap arenas.
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .on_thread_start(move || privileges::settle_thread(user, &[]))
                .build()
                .context("starting the runtime")?
                .block_on(serve::run(source, user))?;
        }
        Command::Snapshot {
            duration,
            config,
            json,
        } => print_snapshot(duration, config, json)?,
        Command::Diagnose {
            window,
            config,
            json,
        } => return print_diagnosis(window, config, json),
        Command::CheckConfig { file } => {
            let config = Config::from_file(&file)?;
            println!("{}: valid\n{}", file.display(), config.explain());
        }
        Command::Top {
            url,
            user,
            password_file,
            ca_cert,
            insecure,
            interval,
        } => {
            let password = match password_file {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading the password file {}", path.display()))?
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                ),
                None => std::env::var("NETMON_PASSWORD").ok(),
            };
            netmon::top::run(
                netmon::top::Target {
                    url,
                    user,
                    password,
                    ca_cert,
                    insecure,
                },
                interval,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `netmon snapshot`: samples for `duration` and prints what was seen.
fn print_snapshot(duration: Duration, config: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let (_, mut poller) = sampling_poller(config)?;
    // The programs count from the first poll on: the second one's counts are the
    // window's, and the two give the interfaces' rates.
    let first = poller.poll();
    std::thread::sleep(duration);
    let snapshot = poller.poll();
    let rates = netmon::rates::summarize(&first, &snapshot);
    if json {
        let both = serde_json::json!({ "snapshot": snapshot, "rates": rates });
        println!("{}", serde_json::to_string_pretty(&both)?);
    } else {
        print!("{}", report::render(&snapshot, rates.as_ref()));
    }
    Ok(())
}

/// `netmon diagnose`: samples for `window` and reports the diagnosis; exits 1 when a finding
/// is critical.
fn print_diagnosis(
    window: Duration,
    config: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (config, mut poller) = sampling_poller(config)?;
    let mut history = History::new(config.poll.history_length.max(64));
    let mut recent = RecentDrops::new(config.samples.keep);
    let mut poll = || {
        let mut snapshot = poller.poll();
        recent.add(std::mem::take(&mut snapshot.drop_samples));
        history.push(Arc::new(snapshot));
    };
    let begin = Instant::now();
    let step = (window / 5).max(Duration::from_millis(200));
    poll();
    while begin.elapsed() < window {
        std::thread::sleep(step.min(window.saturating_sub(begin.elapsed())));
        poll();
    }
    // Every snapshot taken belongs to the window.
    let diagnosis = diagnose(&history, &recent, begin.elapsed() + step, &config);
    if json {
        println!("{}", serde_json::to_string_pretty(&diagnosis)?);
    } else {
        print!("{}", report::render_diagnosis(&diagnosis));
    }
    Ok(if diagnosis.status == Some(Severity::Critical) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The configuration from `path` (or the defaults), and a poller with its programs attached:
/// what the commands that sample a window (`snapshot`, `diagnose`) start with.
fn sampling_poller(path: Option<PathBuf>) -> anyhow::Result<(Config, Poller)> {
    let config = ConfigSource {
        path,
        overrides: Overrides::default(),
    }
    .load()?;
    let poller = Poller::new(&config.probes, config.host_settings());
    Ok((config, poller))
}
