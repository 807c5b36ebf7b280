//! The test machine: root, commands run to completion, free ports, process memory and names
//! no other test run uses.
use std::{
    net::TcpListener,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

/// Fails the test unless it runs as root: these tests load kernel programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the integration tests load kernel programs and make namespaces: run them as root \
         (cargo xtask test)"
    );
}

/// Runs a command and returns its stdout, panicking with its stderr when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A memory figure of a process from `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`...), in MiB.
pub fn status_mib(pid: u32, field: &str) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// `<prefix>-<pid>-<n>`: a name for a namespace, cgroup or file that no other test of this run
/// (one counter) nor any other run (the process id) takes.
pub(crate) fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}
