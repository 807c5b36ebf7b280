//! `cargo xtask bench`: the benchmark suite, written to BENCHMARKS.md.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::process::{cmd, cmd_in, is_root, workspace_root};

/// What the benchmarks compare with and measure by: bpftrace, node_exporter, iperf3, bpftool.
pub const BENCH_PACKAGES: &[&str] = &["bpftrace", "prometheus-node-exporter", "iperf3", "bpftool"];

/// Builds the agent of git revision `rev` in a worktree under `target/`; returns its binary.
pub fn build_revision(rev: &str) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let tree = root.join("target/bench-before");
    if tree.exists() {
        cmd_in(&tree, "git", &["checkout", "--quiet", "--detach", rev])?;
    } else {
        cmd(
            "git",
            &[
                "-C",
                root.to_str().context("workspace path")?,
                "worktree",
                "add",
                "--detach",
                tree.to_str().context("worktree path")?,
                rev,
            ],
        )?;
    }
    cmd_in(
        &tree,
        "cargo",
        &["build", "--release", "--package", "netmon"],
    )?;
    Ok(tree.join("target/release/netmon"))
}

pub fn bench(before: Option<&Path>) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmarks load kernel programs and make namespaces: run as root");
    }
    cmd("cargo", &["build", "--release", "--package", "netmon"])?;
    cmd(
        "cargo",
        &[
            "build",
            "--release",
            "--package",
            "netmon-tests",
            "--bin",
            "netmon-bench",
        ],
    )?;
    let root = workspace_root();
    let mut command = Command::new(root.join("target/release/netmon-bench"));
    if let Some(before) = before {
        command.env("NETMON_BEFORE_BIN", before);
    }
    let output = command
        .env("NETMON_BIN", root.join("target/release/netmon"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the benchmarks")?;
    if !output.status.success() {
        bail!("the benchmarks failed ({})", output.status);
    }
    let tables = String::from_utf8_lossy(&output.stdout);
    let text = format!(
        "# Benchmarks\n\nProduced by `cargo xtask bench` (root; traffic only between namespaces \
         the suite makes; every loop bounded). Each section is one run on the machine below; \
         rerun the command to refresh this file.\n\n{tables}"
    );
    std::fs::write(root.join("BENCHMARKS.md"), text).context("writing BENCHMARKS.md")?;
    print!("{tables}");
    Ok(())
}
