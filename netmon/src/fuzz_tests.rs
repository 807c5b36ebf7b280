//! Hostile input for the parsers: many mutations of valid files, none may panic, and each
//! broken one must come back as an error with a message.
use std::path::Path;

use crate::{config::Config, export::web_config::WebConfig};

/// xorshift64*: a small deterministic generator, so that a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\"",
    "'",
    "\n",
    "#",
    "{",
    "}",
    ",",
    ".",
    "-",
    "0",
    "1e400",
    "-1",
    "\"\\u0000\"",
    "true",
    "poll_interval",
    "thresholds",
    "expected_ports",
    "probe_methods",
    "\"1ns\"",
    "\"999999999999h\"",
    "\u{fffd}",
    "  ",
    "\t",
    ":",
    "- ",
    "*",
    "&a",
    "!!binary",
    "tls_server_config",
    "basic_auth_users",
    "cert_file",
    "key_file",
    "client_auth_type",
    "min_version",
    "$2y$10$",
    "~",
    "null",
    "0x10",
    "nan",
];

/// One mutation of `seed`: replace, insert, delete or repeat a run, or splice in a token.
fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut bytes = seed.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
            1 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
            2 if at < bytes.len() => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            3 if at < bytes.len() => {
                let end = (at + 1 + rng.below(32)).min(bytes.len());
                let run = bytes[at..end].to_vec();
                for _ in 0..rng.below(50) {
                    bytes.splice(at..at, run.iter().copied());
                }
            }
            _ => bytes.truncate(at),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

const CONFIG_SEED: &str = r#"listen = "127.0.0.1:9469"
poll_interval = "2s"
history_length = 150
rate_window = "10s"
interface_include = ["eth*"]
interface_exclude = ["veth*"]
[link_capacity_mbps]
veth0 = 1000
[thresholds]
drop_rate_percent = 1.5
syn_sent = 100
[[expected_ports]]
port = 22
process = "sshd"
local_only = false
[probe_methods]
kfree_skb = "raw_tp"
"#;

const WEB_SEED: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
    min_version: TLS12\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n\
    basic_auth_users:\n  alice: $2y$10$abcdefghijklmnopqrstuu5hJ0x9Y0p6Q1x1R1yq7Ykf8bAqW7mSi\n";

#[test]
fn mutated_configuration_files_never_panic_and_errors_say_something() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut errors) = (0, 0);
    for _ in 0..30_000 {
        let input = mutate(&mut rng, CONFIG_SEED);
        match Config::from_toml(&input) {
            Ok(config) => {
                config.validate().expect("a parsed configuration is valid");
                ok += 1;
            }
            Err(err) => {
                assert!(
                    !format!("{err:#}").trim().is_empty(),
                    "empty error for {input:?}"
                );
                errors += 1;
            }
        }
    }
    // Both outcomes were exercised.
    assert!(ok > 100 && errors > 100, "{ok} parsed, {errors} refused");
}

#[test]
fn mutated_web_configs_never_panic_and_errors_say_something() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut errors = 0;
    for _ in 0..30_000 {
        let input = mutate(&mut rng, WEB_SEED);
        if let Err(err) = WebConfig::from_yaml(&input, Path::new("/nonexistent")) {
            assert!(
                !format!("{err:#}").trim().is_empty(),
                "empty error for {input:?}"
            );
            errors += 1;
        }
    }
    assert!(errors > 100);
}
