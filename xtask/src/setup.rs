//! `cargo xtask setup`: installs what the build and the tests need, skipping what is there.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::process::{cmd, is_root, output, workspace_root};

/// Debian packages the build and the tests use.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
/// iproute2 and iptables make the tests' namespaces and drops; prometheus brings promtool and
/// the server the monitoring tests run; QEMU and busybox run the VM test, Debian's archive
/// keys check its kernels and xz unpacks trixie's modules; Debian's Python with the
/// Prometheus client is the strict OpenMetrics parser (Debian's packages, not pip: Debian
/// 12's system Python refuses pip installs); bpftool reads the socket memos in the process
/// tests.
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "iptables",
    "prometheus",
    "qemu-system-x86",
    "busybox-static",
    "debian-archive-keyring",
    "xz-utils",
    "python3",
    "python3-prometheus-client",
    "python3-venv",
    "chromium",
    "tmux",
    "mmdebstrap",
    "systemd",
    "systemd-container",
    "bpftool",
];
/// Node.js and npm build the live page's charting library in (netmon's build script) and
/// drive Chromium in the page's test; installed from Debian where the machine has no npm.
const NODE_PACKAGES: &[&str] = &["nodejs", "npm"];
/// Debian's kernels, booted under QEMU by the VM test: each suite's newest
/// `linux-image-amd64` (Debian 11: Linux 5.10, 12: 6.1, 13: 6.12), from the suite and its
/// security archive (whose kernels are newer than the point release's).
const VM_KERNELS: &[&str] = &["bullseye", "bookworm", "trixie"];
const VM_KERNEL_PACKAGE: &str = "linux-image-amd64";
/// The keys the VM kernels' suites are signed with (debian-archive-keyring).
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// What to set up: what building and running the agent needs, or that and what the tests
/// and the benchmarks need.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Build,
    Everything,
}

/// The Kubernetes schemas' validator (PyPI), in a virtual environment of the project's own:
/// Debian's system Python takes no pip installs.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

pub fn setup(scope: Scope) -> anyhow::Result<()> {
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

    let tests = if scope == Scope::Everything {
        TEST_PACKAGES
    } else {
        &[]
    };
    let packages: Vec<&str> = BUILD_PACKAGES.iter().chain(tests).copied().collect();
    if install_debs(&packages)? {
        did.push("Debian packages");
    }

    if output("npm", &["--version"]).is_none() {
        install_debs(NODE_PACKAGES)?;
        did.push("Node.js");
    }

    if scope == Scope::Everything {
        if browser_test_packages()? {
            did.push("the browser test's npm packages");
        }
        if python_environment()? {
            did.push("kubernetes-validate");
        }
        if fetch_vm_kernels()? {
            did.push("the test VMs' kernels");
        }
        for tool in ["cargo-deb", "cargo-fuzz"] {
            let subcommand = tool.trim_start_matches("cargo-");
            if output("cargo", &[subcommand, "--version"]).is_none() {
                cmd("cargo", &["install", tool, "--locked"])
                    .with_context(|| format!("installing {tool}"))?;
                did.push(tool);
            }
        }
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
pub fn install_debs(packages: &[&str]) -> anyhow::Result<bool> {
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

/// Makes `target/venv` with the Kubernetes schemas' validator unless it is there; returns
/// whether it made it.
fn python_environment() -> anyhow::Result<bool> {
    let venv = workspace_root().join("target/venv");
    let version = KUBERNETES_VALIDATE.split("==").nth(1).unwrap_or_default();
    let present = output(
        venv.join("bin/kubernetes-validate")
            .to_str()
            .unwrap_or_default(),
        &["--version"],
    )
    .is_some_and(|v| v.trim() == version);
    if present {
        return Ok(false);
    }
    let venv_path = venv.to_str().context("the workspace path is not UTF-8")?;
    cmd("/usr/bin/python3", &["-m", "venv", venv_path])
        .context("making a Python virtual environment (needs python3-venv)")?;
    cmd(
        venv.join("bin/pip").to_str().unwrap_or_default(),
        &["install", "--quiet", KUBERNETES_VALIDATE],
    )
    .context("installing kubernetes-validate into target/venv")?;
    Ok(true)
}

/// Installs the npm packages of the page's browser test (`tests/browser/package-lock.json`)
/// unless the locked version of each is there; returns whether it installed them.
fn browser_test_packages() -> anyhow::Result<bool> {
    let dir = workspace_root().join("tests/browser");
    let lock: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package-lock.json"))
            .context("reading tests/browser/package-lock.json")?,
    )
    .context("parsing tests/browser/package-lock.json")?;
    let packages = lock["packages"].as_object().cloned().unwrap_or_default();
    let installed = packages
        .iter()
        .filter(|(path, _)| !path.is_empty())
        .all(|(path, locked)| {
            std::fs::read_to_string(dir.join(path).join("package.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .is_some_and(|package| package["version"] == locked["version"])
        });
    if installed {
        return Ok(false);
    }
    crate::process::cmd_in(
        &dir,
        "npm",
        &["ci", "--no-audit", "--no-fund", "--ignore-scripts"],
    )
    .context("installing the browser test's npm packages")?;
    Ok(true)
}

/// Downloads and unpacks the kernel of each of [`VM_KERNELS`] into `target/vm/<suite>/` unless
/// one is there; returns whether it fetched any.
fn fetch_vm_kernels() -> anyhow::Result<bool> {
    let vm = workspace_root().join("target/vm");
    // The single kernel of earlier versions, unpacked into target/vm itself.
    if vm.join("boot").is_dir() {
        for old in ["boot", "lib", "usr", "etc"] {
            std::fs::remove_dir_all(vm.join(old)).ok();
        }
    }
    let mut fetched = false;
    for suite in VM_KERNELS {
        fetched |= fetch_vm_kernel(&vm, suite)
            .with_context(|| format!("fetching Debian {suite}'s kernel for the VM test"))?;
    }
    Ok(fetched)
}

/// Fetches `suite`'s newest `linux-image-amd64` with an apt configuration of its own under
/// `target/vm/apt/<suite>/` (sources, lists, caches, an empty dpkg status: nothing of the
/// machine's `/etc/apt` is read or written), and unpacks it into `target/vm/<suite>/`.
fn fetch_vm_kernel(vm: &Path, suite: &str) -> anyhow::Result<bool> {
    let dir = vm.join(suite);
    let present = std::fs::read_dir(dir.join("boot")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
    });
    if present {
        return Ok(false);
    }
    if !Path::new(DEBIAN_KEYRING).exists() {
        bail!("{DEBIAN_KEYRING} missing: apt-get install debian-archive-keyring");
    }
    eprintln!("xtask: setup: fetching Debian {suite}'s kernel");
    let apt = vm.join("apt").join(suite);
    let config = private_apt(&apt, suite)?;
    let run = |program: &str, args: &[&str], cwd: &Path| -> anyhow::Result<String> {
        let out = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env("APT_CONFIG", &config)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("starting {program}"))?;
        if !out.status.success() {
            bail!(
                "`APT_CONFIG={} {program} {}` failed ({})",
                config.display(),
                args.join(" "),
                out.status
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    run("apt-get", &["update", "-qq"], &apt).with_context(|| {
        format!(
            "updating {suite}'s package lists (signed by keys of {DEBIAN_KEYRING}: an \
             older debian-archive-keyring may lack {suite}'s)"
        )
    })?;
    // linux-image-amd64 is a metapackage: download the image it depends on.
    let depends = run("apt-cache", &["depends", VM_KERNEL_PACKAGE], &apt)?;
    let image = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-image-"))
        .with_context(|| format!("{VM_KERNEL_PACKAGE} of {suite} depends on no image"))?;
    let download = apt.join("download");
    std::fs::remove_dir_all(&download).ok();
    std::fs::create_dir_all(&download)?;
    run("apt-get", &["download", "-qq", image], &download)?;
    let deb = std::fs::read_dir(&download)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("the downloaded kernel package is missing")?;
    // Unpacked beside, then renamed: an interrupted unpack leaves no kernel that looks whole.
    let partial = vm.join(format!("{suite}.partial"));
    std::fs::remove_dir_all(&partial).ok();
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&partial)
        .status()
        .context("dpkg-deb")?;
    if !status.success() {
        bail!("unpacking {} failed", deb.display());
    }
    std::fs::remove_dir_all(&dir).ok();
    std::fs::rename(&partial, &dir)?;
    std::fs::remove_dir_all(&download).ok();
    Ok(true)
}

/// Writes the apt configuration, sources and empty state of one suite under `apt`; returns
/// the configuration file, for `APT_CONFIG`. Read before any other configuration, it points
/// `Dir::Etc` away from `/etc/apt`, so that no configuration, source, pin or key of the
/// machine's applies.
fn private_apt(apt: &Path, suite: &str) -> anyhow::Result<PathBuf> {
    let etc = apt.join("etc");
    for sub in [
        "etc/apt.conf.d",
        "etc/preferences.d",
        "etc/sources.list.d",
        "state/lists",
        "cache",
    ] {
        std::fs::create_dir_all(apt.join(sub))
            .with_context(|| format!("creating {}", apt.join(sub).display()))?;
    }
    let sources = format!(
        "deb [signed-by={DEBIAN_KEYRING}] http://deb.debian.org/debian {suite} main\n\
         deb [signed-by={DEBIAN_KEYRING}] http://deb.debian.org/debian-security \
         {suite}-security main\n"
    );
    std::fs::write(etc.join("sources.list"), sources)?;
    std::fs::write(apt.join("status"), "")?;
    let path = |sub: &str| apt.join(sub).display().to_string();
    let config = format!(
        "Dir::Etc \"{etc}\";\n\
         Dir::State \"{state}\";\n\
         Dir::State::status \"{status}\";\n\
         Dir::Cache \"{cache}\";\n\
         Dir::Cache::pkgcache \"\";\n\
         Dir::Cache::srcpkgcache \"\";\n\
         APT::Architecture \"amd64\";\n\
         APT::Architectures {{ \"amd64\"; }};\n\
         Acquire::Languages \"none\";\n\
         Acquire::GzipIndexes \"true\";\n\
         // The downloads land in the workspace, where apt's own user may not write.\n\
         APT::Sandbox::User \"root\";\n",
        etc = path("etc"),
        state = path("state"),
        status = path("status"),
        cache = path("cache"),
    );
    let file = apt.join("apt.conf");
    std::fs::write(&file, config)?;
    Ok(file)
}

fn deb_installed(package: &str) -> bool {
    output("dpkg-query", &["-W", "-f=${Status}", package])
        .is_some_and(|status| status.contains("install ok installed"))
}
