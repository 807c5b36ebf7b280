//! The README's commands, run as written where they can run here: its first command, `cargo
//! xtask run` (the agent with embedded defaults), in a namespace of the test's own, and every
//! `curl` line of the README against that agent. (The command line, `snapshot`, `diagnose`,
//! `check-config`, `top`, `setpriv` and the Debian package's commands are run by the tests of
//! those parts.)
use std::{
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Netns, http_get, require_root};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

/// The lines of the README's code blocks that start with `prefix`.
fn commands(readme: &str, prefix: &str) -> Vec<String> {
    let mut inside = false;
    let mut found = Vec::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            inside = !inside;
        } else if inside && line.starts_with(prefix) {
            found.push(line.to_string());
        }
    }
    found
}

#[test]
fn the_readme_runs_the_agent_and_its_curl_lines_as_written() {
    require_root();
    let readme = readme();
    let run = commands(&readme, "cargo xtask run");
    assert_eq!(run.len(), 1, "{run:?}");
    let curls = commands(&readme, "curl ");
    assert!(curls.len() >= 4, "{curls:?}");

    let ns = Netns::new("readme");
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    // As a person types it, comment and all, from the repository's root; in a group of its
    // own, so that the interrupt reaches cargo and the agent as Ctrl-C would.
    let mut agent = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sh", "-c", &run[0]])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Set-up checks and a release build that is usually there already.
    let deadline = Instant::now() + Duration::from_secs(900);
    let addr = "127.0.0.1:9469".parse().unwrap();
    while !ns
        .run(move || http_get(addr, "/healthz", &[]))
        .is_ok_and(|r| r.status == 200)
    {
        if let Some(status) = agent.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut err).unwrap();
            panic!("{} exited with {status}: {err}", run[0]);
        }
        assert!(Instant::now() < deadline, "no agent after 900 s");
        thread::sleep(Duration::from_millis(500));
    }

    for curl in &curls {
        let out = ns.exec(&["sh", "-c", curl]);
        let body: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{curl}: {e}: {out}"));
        assert!(body["error"].is_null(), "{curl}: {body}");
        assert!(body["items"].is_array(), "{curl}: {body}");
    }

    // Ctrl-C: the agent stops, and so does cargo.
    // SAFETY: a signal to the process group the test made.
    assert_eq!(unsafe { libc::kill(-(agent.id() as i32), libc::SIGINT) }, 0);
    let status = agent.wait().unwrap();
    assert!(
        status.success() || status.code() == Some(130) || status.code().is_none(),
        "{status}"
    );
}
