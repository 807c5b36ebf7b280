//! A second kernel: Debian's own (6.1, with kprobes) under QEMU with software emulation runs
//! the same netmon binary, makes traffic, drops and TCP connections, and checks the counts,
//! once with the best attach methods and once with the kprobe fallbacks of the state and drop
//! hooks. `cargo xtask setup` fetches the kernel package into `target/vm/`.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netmon_tests::{netmon_bin, probe_status, sh};

fn vm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm")
}

/// The kernel image fetched by setup, if any.
fn kernel() -> Option<PathBuf> {
    std::fs::read_dir(vm_dir().join("boot"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
}

fn copy_with_libraries(binary: &Path, root: &Path, name: &str) {
    std::fs::copy(binary, root.join(name)).unwrap();
    sh("strip", &[root.join(name).to_str().unwrap()]);
    for line in sh("ldd", &[binary.to_str().unwrap()]).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|p| p.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            let target = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(path, &target).unwrap();
        }
    }
}

const INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
# The socket dump needs the diag modules; a host loads them on demand, this VM has no modprobe.
for module in inet_diag tcp_diag udp_diag; do insmod /modules/$module.ko; done
ip link set lo up
echo "VMCHECK kernel $(uname -r)"
export RUST_LOG=warn
/netmon serve --listen 127.0.0.1:9469 --poll-interval 500ms 2>/tmp/best.log &
/netmon-vmcheck 127.0.0.1:9469
kill $!
wait
cat /tmp/best.log
/netmon serve --listen 127.0.0.1:9470 --poll-interval 500ms --config /kprobe.toml 2>/tmp/kprobe.log &
/netmon-vmcheck 127.0.0.1:9470 kprobe
kill $!
wait
cat /tmp/kprobe.log
poweroff -f
"#;

#[test]
fn the_same_binary_counts_on_debians_kernel_with_kprobe_fallbacks() {
    netmon_tests::require_root();
    let Some(kernel) = kernel() else {
        panic!(
            "no kernel in {}: cargo xtask setup fetches Debian's linux-image-amd64 there",
            vm_dir().display()
        );
    };
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 missing: cargo xtask setup installs qemu-system-x86"
    );
    let root = std::env::temp_dir().join(format!("netmon-vm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for dir in ["bin", "proc", "sys", "tmp", "dev", "run"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "mount", "ip", "kill", "cat", "uname", "poweroff", "sleep", "insmod",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::create_dir_all(root.join("modules")).unwrap();
    let modules = sh(
        "find",
        &[
            vm_dir().join("lib/modules").to_str().unwrap(),
            "-name",
            "*_diag.ko",
        ],
    );
    for module in modules.lines() {
        let name = Path::new(module).file_name().unwrap();
        std::fs::copy(module, root.join("modules").join(name)).unwrap();
    }
    std::fs::write(root.join("init"), INIT).unwrap();
    sh("chmod", &["+x", root.join("init").to_str().unwrap()]);
    std::fs::write(
        root.join("kprobe.toml"),
        "[probe_methods]\nkfree_skb = \"kprobe\"\ninet_sock_set_state = \"kprobe\"\n",
    )
    .unwrap();
    copy_with_libraries(&netmon_bin(), &root, "netmon");
    let vmcheck = netmon_bin().with_file_name("netmon-vmcheck");
    assert!(
        vmcheck.exists(),
        "{} missing: cargo build -p netmon-tests --bin netmon-vmcheck",
        vmcheck.display()
    );
    copy_with_libraries(&vmcheck, &root, "netmon-vmcheck");
    let initrd = root.with_extension("cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | busybox cpio -o -H newc > {} 2>/dev/null",
            root.display(),
            initrd.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());

    let begin = Instant::now();
    let child = Command::new("timeout")
        .args([
            "900",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-m",
            "1024",
            "-smp",
            "1",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyS0 quiet panic=-1",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_file(&initrd);
    let console = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = console.lines().filter(|l| l.contains("VMCHECK")).collect();
    eprintln!(
        "VM ran for {:.0} s:\n{}",
        begin.elapsed().as_secs_f64(),
        lines.join("\n")
    );
    let kernel_line = lines
        .iter()
        .find(|l| l.contains("VMCHECK kernel"))
        .unwrap_or_else(|| panic!("the VM did not boot to the check; console:\n{console}"));
    assert!(kernel_line.contains("6.1."), "{kernel_line}");
    let failures: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("VMCHECK FAIL"))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}\nconsole:\n{console}");
    let passes = lines
        .iter()
        .filter(|l| l.contains("VMCHECK ok all"))
        .count();
    assert_eq!(passes, 2, "both runs complete; console:\n{console}");
    // Each run's /api/v1/status, and the method each probe got there.
    let statuses: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| l.split_once("VMCHECK status "))
        .map(|(_, json)| serde_json::from_str(json).expect("a status document"))
        .collect();
    let method = |run: usize, probe: &str| probe_status(&statuses[run], probe)["method"].clone();
    assert_eq!(method(0, "net_dev_xmit"), "tp_btf", "{}", statuses[0]);
    // Without the socket tracepoints (Linux 6.3), socket I/O is counted by fexit programs.
    for probe in ["sock_send_length", "sock_recv_length"] {
        assert_eq!(
            method(0, probe),
            "fexit",
            "the fexit fallback of {probe} attached on this kernel: {}",
            statuses[0]
        );
    }
    for probe in ["kfree_skb", "inet_sock_set_state"] {
        assert_eq!(
            method(1, probe),
            "kprobe",
            "the kprobe fallback of {probe} attached on this kernel: {}",
            statuses[1]
        );
    }
    assert!(begin.elapsed() < Duration::from_secs(900));
}
