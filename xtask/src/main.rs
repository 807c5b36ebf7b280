//! Developer tasks: `cargo xtask setup | build | run | test | bench`, a file each.
mod bench;
mod process;
mod setup;
mod test;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use bench::{BENCH_PACKAGES, bench, build_revision};
use process::{cmd, is_root, workspace_root};
use setup::{Scope, install_debs, setup};
use test::test;

#[derive(Parser)]
#[command(about = "netmon developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: rust-src for nightly, LLVM 22, bpf-linker, test packages.
    Setup,
    /// Set up, then build the agent (release) with its kernel programs embedded.
    Build,
    /// Set up, build, and run `netmon serve` as root with the embedded defaults.
    Run {
        /// Arguments passed to `netmon serve`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then formatting, clippy, unit tests and the privileged integration tests.
    Test,
    /// Set up, build release binaries, run the benchmark suite (root) and write BENCHMARKS.md.
    Bench {
        /// Also measure the kernel programs of this git revision (built in a worktree under
        /// `target/`), side by side in the same run: the "before" of a change.
        #[arg(long)]
        before: Option<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> anyhow::Result<()> {
    match task {
        Task::Setup => setup(Scope::Everything),
        Task::Build => {
            setup(Scope::Build)?;
            build_release()
        }
        Task::Run { args } => {
            setup(Scope::Build)?;
            build_release()?;
            let binary = workspace_root().join("target/release/netmon");
            let mut command = if is_root() {
                Command::new(&binary)
            } else {
                eprintln!("xtask: netmon needs root for its kernel programs; using sudo");
                let mut sudo = Command::new("sudo");
                sudo.arg("-E").arg(&binary);
                sudo
            };
            command.arg("serve").args(args);
            let status = command.status().context("starting netmon")?;
            if !status.success() {
                bail!("netmon exited with {status}");
            }
            Ok(())
        }
        Task::Test => {
            setup(Scope::Everything)?;
            test()
        }
        Task::Bench { before } => {
            setup(Scope::Everything)?;
            install_debs(BENCH_PACKAGES)?;
            let before = before.map(|rev| build_revision(&rev)).transpose()?;
            bench(before.as_deref())
        }
    }
}

fn build_release() -> anyhow::Result<()> {
    cmd("cargo", &["build", "--release", "--package", "netmon"])
}
