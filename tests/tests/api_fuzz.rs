//! Hostile requests generated from the OpenAPI document: mangled path parameters, query
//! strings, methods and headers, and malformed HTTP. No 5xx, no crash.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use netmon_tests::{Agent, require_root};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const PARAMS: &[&str] = &[
    "lo",
    "",
    "%00",
    "%ff%fe",
    "..%2f..%2fetc%2fpasswd",
    "%E2%82%AC",
    "a%20b",
    "%",
    "%zz",
    "\u{1F600}",
    "eth0;rm",
    "x?y=z",
    "%2F",
    "-1",
    "99999999999999999999",
];
const QUERIES: &[&str] = &["", "?", "?a=b", "?a", "?%zz=1", "?x=1&x=2&&&", "?=="];
const METHODS: &[&str] = &[
    "GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO",
];
const ACCEPTS: &[&str] = &[
    "*/*",
    "application/json",
    "application/openmetrics-text",
    "application/openmetrics-text;q=abc",
    "text/plain;version=9",
    ",,,;;;",
    "\u{7f}",
];

/// Sends raw bytes and returns the status code of the answer, if one came.
fn raw(agent: &Agent, bytes: &[u8]) -> Option<u16> {
    let mut stream: TcpStream = agent.connect().ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

#[test]
fn generated_hostile_requests_never_get_a_server_error() {
    require_root();
    let agent = Agent::start(&[]);
    // Two snapshots, so that the summary has a window (before that it answers 503, as its
    // document says).
    agent.fresh_metrics();
    agent.fresh_metrics();
    let document: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/openapi.json").body).unwrap();
    let mut paths: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    paths.extend([
        "/metrics".to_string(),
        "/healthz".to_string(),
        "/".to_string(),
    ]);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut answered = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..1500 {
        let template = &paths[i % paths.len()];
        let path = template.replace("{name}", rng.pick(PARAMS)) + rng.pick(QUERIES);
        let method = rng.pick(METHODS);
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAccept: {}\r\nConnection: close\r\n",
            rng.pick(ACCEPTS)
        );
        match rng.next() % 6 {
            0 => request.push_str("Content-Length: 5\r\n\r\nhello"),
            1 => request.push_str("Content-Length: -1\r\n\r\n"),
            2 => request.push_str("Transfer-Encoding: chunked\r\n\r\nzz\r\ngarbage\r\n"),
            3 => request.push_str(&format!("X-Long: {}\r\n\r\n", "y".repeat(8000))),
            _ => request.push_str("\r\n"),
        }
        if let Some(status) = raw(&agent, request.as_bytes()) {
            answered += 1;
            *statuses.entry(status).or_insert(0) += 1;
            let shown: String = request.chars().take(300).collect();
            assert!(status < 500, "{status} for {shown:?}");
        }
    }
    // Malformed HTTP.
    let mut garbage = Vec::new();
    for _ in 0..200 {
        garbage.clear();
        for _ in 0..(rng.next() % 300) {
            garbage.push(rng.next() as u8);
        }
        if let Some(status) = raw(&agent, &garbage) {
            assert!(status < 500, "{status} for garbage");
        }
    }
    for bad in [
        &b"GET\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n\r\n\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
    ] {
        if let Some(status) = raw(&agent, bad) {
            assert!(status < 500, "{status} for {bad:?}");
        }
    }
    eprintln!("api fuzz: {answered} answered of 1500, statuses {statuses:?}");
    assert!(answered > 1000);
    assert_eq!(agent.get("/healthz").status, 200, "still serving");
    assert_eq!(agent.get("/api/v1/interfaces/lo").status, 200);
}
