//! `cargo xtask test`: formatting, clippy, unit tests, fuzzing, then the privileged
//! end-to-end tests.
use anyhow::{Context as _, bail};

use crate::process::{cmd, cmd_in, is_root, workspace_root};

/// Seconds each fuzz target runs in the test suite.
const FUZZ_SECONDS: u32 = 30;

/// Runs each cargo-fuzz target for a bounded time, from the seeds in `fuzz/corpus/`; a crash
/// fails the suite (its input is kept in `fuzz/artifacts/`).
fn fuzz() -> anyhow::Result<()> {
    let dir = workspace_root().join("fuzz");
    for target in ["config", "web_config"] {
        // New inputs go to a scratch corpus; the committed seeds are only read.
        let scratch = std::env::temp_dir().join(format!("netmon-fuzz-{target}"));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        let seeds = format!("corpus/{target}");
        let limit = format!("-max_total_time={FUZZ_SECONDS}");
        cmd_in(
            &dir,
            "cargo",
            &[
                "+nightly",
                "fuzz",
                "run",
                target,
                scratch.to_str().unwrap_or_default(),
                &seeds,
                "--",
                &limit,
            ],
        )
        .with_context(|| format!("fuzzing {target}"))?;
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}

pub fn test() -> anyhow::Result<()> {
    cmd("cargo", &["fmt", "--all", "--check"]).context("formatting (run `cargo fmt --all`)")?;
    cmd(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--exclude",
            "netmon-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // The kernel crate only builds for the BPF target, with the nightly toolchain; both of its
    // builds (the programs for kernels with `bpf_loop`, and those for older ones).
    for features in ["", "bounded-walk"] {
        cmd(
            "cargo",
            &[
                "+nightly",
                "clippy",
                "--package",
                "netmon-ebpf",
                "--features",
                features,
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--release",
                "--",
                "-D",
                "warnings",
            ],
        )?;
    }
    cmd(
        "cargo",
        &[
            "test",
            "--workspace",
            "--exclude",
            "netmon-ebpf",
            "--exclude",
            "netmon-tests",
        ],
    )?;
    fuzz()?;
    if !is_root() {
        bail!("the integration tests load kernel programs and make namespaces: run as root");
    }
    // The binaries under test, built once; the tests share kernel state, so one at a time.
    cmd("cargo", &["build", "--package", "netmon"])?;
    cmd(
        "cargo",
        &[
            "build",
            "--package",
            "netmon-tests",
            "--bin",
            "netmon-vmcheck",
        ],
    )?;
    // The Debian package, installed under a real systemd by the package test.
    cmd("cargo", &["deb", "--package", "netmon"]).context("building the Debian package")?;
    cmd(
        "cargo",
        &[
            "test",
            "--package",
            "netmon-tests",
            "--",
            "--test-threads=1",
        ],
    )
}
