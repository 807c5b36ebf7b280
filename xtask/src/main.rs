//! Developer tasks: `cargo xtask setup | build | run | test`.
use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

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

/// Debian packages the build and the tests use.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
/// iproute2 and iptables make the tests' namespaces and drops; prometheus brings promtool and
/// the server the monitoring tests run; QEMU and busybox run the second-kernel test; Debian's
/// Python with the Prometheus client is the strict OpenMetrics parser (Debian's packages, not
/// pip: Debian 12's system Python refuses pip installs).
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "iptables",
    "prometheus",
    "qemu-system-x86",
    "busybox-static",
    "python3",
    "python3-prometheus-client",
];
/// Debian's own kernel, booted under QEMU by the second-kernel test.
const VM_KERNEL_PACKAGE: &str = "linux-image-amd64";
/// What the benchmarks compare with: bpftrace, node_exporter, iperf3.
const BENCH_PACKAGES: &[&str] = &["bpftrace", "prometheus-node-exporter", "iperf3"];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

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
        Task::Setup => setup(),
        Task::Build => {
            setup()?;
            build_release()
        }
        Task::Run { args } => {
            setup()?;
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
            setup()?;
            test()
        }
        Task::Bench { before } => {
            setup()?;
            install_debs(BENCH_PACKAGES)?;
            let before = before.map(|rev| build_revision(&rev)).transpose()?;
            bench(before.as_deref())
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs a command in the workspace, failing with its name when it fails.
fn cmd(program: &str, args: &[&str]) -> anyhow::Result<()> {
    cmd_in(&workspace_root(), program, args)
}

fn cmd_in(dir: &Path, program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PATH", path_with_llvm())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .env("PATH", path_with_llvm())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// bpf-linker must find Debian's LLVM 22 before any other.
fn path_with_llvm() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    if path.split(':').any(|p| p == LLVM_BIN) {
        path
    } else {
        format!("{LLVM_BIN}:{path}")
    }
}

fn setup() -> anyhow::Result<()> {
    let begin = Instant::now();
    let mut did = Vec::new();

    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .context("rustup is needed (with a nightly toolchain) to build the kernel programs")?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        cmd(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        )
        .context("installing rust-src for nightly")?;
        did.push("rust-src");
    }

    let packages: Vec<&str> = BUILD_PACKAGES
        .iter()
        .chain(TEST_PACKAGES)
        .copied()
        .collect();
    if install_debs(&packages)? {
        did.push("Debian packages");
    }

    if fetch_vm_kernel()? {
        did.push("the test VM's kernel");
    }

    if output("cargo", &["fuzz", "--version"]).is_none() {
        cmd("cargo", &["install", "cargo-fuzz", "--locked"]).context("installing cargo-fuzz")?;
        did.push("cargo-fuzz");
    }

    let linker = output("bpf-linker", &["--version"]).unwrap_or_default();
    if !linker.contains(BPF_LINKER_VERSION) {
        cmd(
            "cargo",
            &[
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--no-default-features",
                "--features",
                "llvm-22",
            ],
        )
        .context("building bpf-linker against LLVM 22 (needs llvm-22-dev)")?;
        did.push("bpf-linker");
    }

    if did.is_empty() {
        eprintln!(
            "xtask: setup: everything present ({:.1}s)",
            begin.elapsed().as_secs_f64()
        );
    } else {
        eprintln!(
            "xtask: setup: installed {} ({:.0}s)",
            did.join(", "),
            begin.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Installs the Debian packages that are missing; returns whether it installed any.
fn install_debs(packages: &[&str]) -> anyhow::Result<bool> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !deb_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: run as root, or `sudo apt-get install -y {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    cmd("apt-get", &["update", "-qq"]).context("apt-get update")?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    cmd("apt-get", &args).context("installing Debian packages")?;
    Ok(true)
}

/// Downloads and unpacks Debian's kernel package into `target/vm/` unless a kernel is there.
fn fetch_vm_kernel() -> anyhow::Result<bool> {
    let dir = workspace_root().join("target/vm");
    let present = std::fs::read_dir(dir.join("boot")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
    });
    if present {
        return Ok(false);
    }
    std::fs::create_dir_all(&dir).context("creating target/vm")?;
    // linux-image-amd64 is a metapackage: download the image it depends on.
    let mut depends = output("apt-cache", &["depends", VM_KERNEL_PACKAGE]).unwrap_or_default();
    if !depends.contains("Depends: linux-image-") {
        cmd("apt-get", &["update", "-qq"]).context("apt-get update")?;
        depends = output("apt-cache", &["depends", VM_KERNEL_PACKAGE]).unwrap_or_default();
    }
    let image = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .context("apt-cache does not know linux-image-amd64 (run apt-get update)")?;
    let status = Command::new("apt-get")
        .args(["download", "-q", &image])
        .current_dir(&dir)
        .status()
        .context("apt-get download")?;
    if !status.success() {
        bail!("downloading {image} failed");
    }
    let deb = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("the downloaded kernel package is missing")?;
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&dir)
        .status()
        .context("dpkg-deb")?;
    if !status.success() {
        bail!("unpacking {} failed", deb.display());
    }
    std::fs::remove_file(&deb).ok();
    Ok(true)
}

/// Builds the agent of git revision `rev` in a worktree under `target/`; returns its binary.
fn build_revision(rev: &str) -> anyhow::Result<PathBuf> {
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

fn bench(before: Option<&Path>) -> anyhow::Result<()> {
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

fn deb_installed(package: &str) -> bool {
    output("dpkg-query", &["-W", "-f=${Status}", package])
        .is_some_and(|status| status.contains("install ok installed"))
}

fn build_release() -> anyhow::Result<()> {
    cmd("cargo", &["build", "--release", "--package", "netmon"])
}

fn test() -> anyhow::Result<()> {
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
    // The kernel crate only builds for the BPF target, with the nightly toolchain.
    cmd(
        "cargo",
        &[
            "+nightly",
            "clippy",
            "--package",
            "netmon-ebpf",
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
