//! Other kernels: Debian's own of three releases (Linux 5.10, 6.1 and 6.12) under QEMU with
//! software emulation run the same netmon binary, make traffic, drops and TCP connections,
//! and check the counts, once with the best attach methods and once with the kprobe
//! fallbacks of the state and drop hooks. `cargo xtask setup` fetches the kernel packages
//! into `target/vm/<suite>/`.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use netmon::model::probes::{AttachMethod, Hook};
use netmon_tests::{netmon_bin, probe_status, sh};

/// What the VM waits for before it gives up.
const TIMEOUT: Duration = Duration::from_secs(900);

/// The names of the hooks with a kprobe fallback: the second run forces it on all of them.
fn kprobe_hooks() -> impl Iterator<Item = &'static str> {
    Hook::ALL
        .into_iter()
        .filter(|hook| hook.offers(AttachMethod::Kprobe))
        .map(Hook::as_str)
}

#[test]
fn counts_exactly_on_debian_11_linux_5_10() {
    counts_exactly_on("bullseye", "5.10");
}

#[test]
fn counts_exactly_on_debian_12_linux_6_1() {
    counts_exactly_on("bookworm", "6.1");
}

#[test]
fn counts_exactly_on_debian_13_linux_6_12() {
    counts_exactly_on("trixie", "6.12");
}

/// One VM at a time: each takes a core, and the machine may have two.
static ONE_VM: Mutex<()> = Mutex::new(());

fn vm_dir(suite: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/vm")
        .join(suite)
}

/// The kernel image setup fetched for `suite`, if any.
fn kernel(suite: &str) -> Option<PathBuf> {
    std::fs::read_dir(vm_dir(suite).join("boot"))
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

/// The socket dump's modules and the dummy device's (a host that no neighbour answers for):
/// copied from the kernel package, uncompressed where it packs them with xz (trixie's), since
/// busybox `insmod` reads only plain `.ko` files.
const MODULES: [&str; 4] = ["inet_diag", "tcp_diag", "udp_diag", "dummy"];

fn copy_modules(suite: &str, root: &Path) {
    std::fs::create_dir_all(root.join("modules")).unwrap();
    for module in MODULES {
        let found = sh(
            "find",
            &[
                vm_dir(suite).to_str().unwrap(),
                "(",
                "-name",
                &format!("{module}.ko"),
                "-o",
                "-name",
                &format!("{module}.ko.xz"),
                ")",
            ],
        );
        let path = found
            .lines()
            .next()
            .unwrap_or_else(|| panic!("no {module} module in {}", vm_dir(suite).display()));
        let target = root.join("modules").join(format!("{module}.ko"));
        if path.ends_with(".xz") {
            let out = Command::new("xz")
                .args(["-dc", path])
                .output()
                .expect("xz (xz-utils) uncompresses the kernel's modules");
            assert!(out.status.success(), "xz -dc {path} failed");
            std::fs::write(&target, out.stdout).unwrap();
        } else {
            std::fs::copy(path, &target).unwrap();
        }
    }
}

const INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
# The socket dump needs the diag modules, the peer check a dummy device; a host loads them on
# demand, this VM has no modprobe.
for module in inet_diag tcp_diag udp_diag dummy; do insmod /modules/$module.ko; done
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

/// Makes the VM's initramfs for `suite` (busybox, the diag modules, netmon and the checker);
/// returns its path.
fn initramfs(suite: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("netmon-vm-{}-{suite}", std::process::id()));
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
    copy_modules(suite, &root);
    std::fs::write(root.join("init"), INIT).unwrap();
    sh("chmod", &["+x", root.join("init").to_str().unwrap()]);
    std::fs::write(
        root.join("kprobe.toml"),
        kprobe_hooks().fold(String::from("[probe_methods]\n"), |text, hook| {
            text + &format!("{hook} = \"kprobe\"\n")
        }),
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
    let _ = std::fs::remove_dir_all(&root);
    initrd
}

/// Boots `suite`'s kernel, whose release must begin with `version` (major.minor), runs both
/// checks there and asserts on what they printed.
fn counts_exactly_on(suite: &str, version: &str) {
    netmon_tests::require_root();
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let Some(kernel) = kernel(suite) else {
        panic!(
            "no kernel in {}: cargo xtask setup fetches Debian {suite}'s linux-image-amd64 there",
            vm_dir(suite).display()
        );
    };
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    assert!(
        qemu.is_ok_and(|o| o.status.success()),
        "qemu-system-x86_64 missing: cargo xtask setup installs qemu-system-x86"
    );
    let initrd = initramfs(suite);

    let begin = Instant::now();
    let mut child = Command::new("timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .args([
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
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // The console as it comes, to time the boot: until the init script's first line.
    let mut console = String::new();
    let mut booted = None;
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = Vec::new();
    while stdout.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
        let text = String::from_utf8_lossy(&line);
        if booted.is_none() && text.contains("VMCHECK kernel") {
            booted = Some(begin.elapsed());
        }
        console.push_str(&text);
        line.clear();
    }
    let status = child.wait().unwrap();
    let ran = begin.elapsed();
    let stderr = stderr.join().unwrap_or_default();
    let _ = std::fs::remove_file(&initrd);
    let lines: Vec<&str> = console.lines().filter(|l| l.contains("VMCHECK")).collect();
    eprintln!(
        "VM of Debian {suite} ({}): booted in {}, ran for {:.0} s ({status}):\n{}",
        kernel.display(),
        booted.map_or("(never)".into(), |b| format!("{:.0} s", b.as_secs_f64())),
        ran.as_secs_f64(),
        lines.join("\n")
    );
    let kernel_line = lines
        .iter()
        .find_map(|l| l.split_once("VMCHECK kernel "))
        .map(|(_, release)| release.trim())
        .unwrap_or_else(|| {
            panic!("the VM did not boot to the check; console:\n{console}\nstderr:\n{stderr}")
        });
    assert!(
        kernel_line.starts_with(&format!("{version}.")),
        "Debian {suite} booted Linux {kernel_line}, not {version}"
    );
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
    assert_eq!(statuses.len(), 2, "one status a run; console:\n{console}");
    for (run, status) in statuses.iter().enumerate() {
        let probes = status["probes"].as_array().cloned().unwrap_or_default();
        assert!(!probes.is_empty(), "no probes in run {run}: {status}");
        for probe in probes {
            assert!(
                !probe["method"].is_null(),
                "{} attached in run {run} on Linux {kernel_line}: {probe}",
                probe["probe"]
            );
        }
    }
    let method = |run: usize, probe: &str| probe_status(&statuses[run], probe)["method"].clone();
    assert_eq!(method(0, "net_dev_xmit"), "tp_btf", "{}", statuses[0]);
    for probe in kprobe_hooks() {
        assert_eq!(
            method(1, probe),
            "kprobe",
            "the kprobe fallback of {probe} attached on Linux {kernel_line}: {}",
            statuses[1]
        );
    }
    assert!(ran < TIMEOUT, "the VM ran out of its {TIMEOUT:?}");
}
