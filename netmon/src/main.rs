use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use netmon::{
    collect::Poller,
    config::{Config, parse_duration},
    serve,
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
    /// Run the agent until SIGINT or SIGTERM.
    Serve {
        /// Address to listen on (default 127.0.0.1:9469).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Configuration file (TOML).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Time between polls, like 500ms or 2s (default 2s).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        poll_interval: Option<Duration>,
        /// TLS and basic auth settings (exporter-toolkit web-config.yml format).
        #[arg(long, value_name = "FILE")]
        web_config: Option<PathBuf>,
    },
    /// Collect once and print.
    Snapshot {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file.
    CheckConfig { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("netmon: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            config,
            poll_interval,
            web_config,
        } => {
            let mut config = match config {
                Some(path) => Config::from_file(&path)?,
                None => Config::default(),
            };
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(interval) = poll_interval {
                config.poll_interval = interval;
            }
            if let Some(path) = web_config {
                config.web_config = Some(path);
            }
            tokio::runtime::Runtime::new()
                .context("starting the runtime")?
                .block_on(serve::run(config))
        }
        Command::Snapshot { json } => {
            let snapshot = Poller::new(&Default::default(), Default::default()).poll();
            if json {
                println!("{}", serde_json::to_string_pretty(&snapshot)?);
            } else {
                print!("{}", netmon::export::table::render(&snapshot));
            }
            Ok(())
        }
        Command::CheckConfig { file } => {
            let config = Config::from_file(&file)?;
            println!("{}: valid ({config:?})", file.display());
            Ok(())
        }
    }
}
