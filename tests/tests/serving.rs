//! Serving: exposition formats checked by real parsers, the OpenAPI document against real
//! responses, TLS, mTLS, basic auth, bad requests, concurrency and shutdown.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::Command,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use netmon_tests::{Agent, ConfigFile, Metrics, Pki, Response, http_get, require_root};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _},
};

#[test]
fn metrics_pass_promtool_and_openmetrics_parses() {
    require_root();
    let agent = Agent::start(&[]);
    // Some traffic so that every family has samples.
    for _ in 0..3 {
        agent.try_get("/healthz").unwrap();
    }
    let text = agent.fresh_metrics();
    assert!(!text.samples.is_empty());
    let body = agent.get("/metrics");
    assert_eq!(body.headers["content-type"], "text/plain; version=0.0.4");
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(body.body.as_bytes());
    assert!(
        promtool.status.success() && promtool.stdout.is_empty() && promtool.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );

    let om = agent
        .connect()
        .map(|mut s| {
            netmon_tests::request(
                &mut s,
                agent.addr,
                "/metrics",
                &[(
                    "Accept",
                    "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                )],
            )
            .unwrap()
        })
        .unwrap();
    assert_eq!(
        om.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.body.ends_with("# EOF\n"));
    // The reference parser of the Prometheus Python client is strict about OpenMetrics
    // (Debian's package, for Debian's Python).
    let parsed = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
             families = list(text_string_to_metric_families(sys.stdin.read()))\n\
             print(len(families))",
        ])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(om.body.as_bytes());
    assert!(
        parsed.status.success(),
        "OpenMetrics parser: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let families: usize = String::from_utf8_lossy(&parsed.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(families > 20, "{families} families");
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

/// Errors of `instance` against `schema`, whose local `$ref`s point into the document's
/// components.
fn schema_errors(
    document: &serde_json::Value,
    schema: &serde_json::Value,
    instance: &serde_json::Value,
) -> Vec<String> {
    let mut wrapper = serde_json::json!({ "components": document["components"].clone() });
    for (key, value) in schema.as_object().unwrap() {
        wrapper[key] = value.clone();
    }
    let validator = jsonschema::validator_for(&wrapper).unwrap();
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

fn validate(
    document: &serde_json::Value,
    schema: &serde_json::Value,
    instance: &serde_json::Value,
) {
    let errors = schema_errors(document, schema, instance);
    assert!(errors.is_empty(), "{errors:?} in {instance}");
}

#[test]
fn every_endpoint_matches_the_openapi_document() {
    require_root();
    let agent = Agent::start(&[]);
    let document: serde_json::Value =
        serde_json::from_str(&agent.get("/api/v1/openapi.json").body).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    // Two snapshots for the summary.
    agent.fresh_metrics();
    agent.fresh_metrics();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 10);
    // The check can fail: a wrong shape is caught.
    let list = serde_json::json!({"$ref": "#/components/schemas/InterfaceList"});
    assert!(
        !schema_errors(
            &document,
            &list,
            &serde_json::json!({"items": [{"name": 5}]})
        )
        .is_empty()
    );
    // One list shape: an answer that lists anything lists it as `items`, and nothing else
    // in it is a list or a map of names to values; only the answers that describe one thing
    // (the agent, its diagnosis, the summary, the host's pressure, an interface) have lists
    // among their fields.
    let single_things = [
        "/api/v1/status",
        "/api/v1/diagnosis",
        "/api/v1/summary",
        "/api/v1/pressure",
        "/api/v1/interfaces/{name}",
    ];
    let schemas = &document["components"]["schemas"];
    let resolve = |schema: &serde_json::Value| -> serde_json::Value {
        match schema["$ref"].as_str() {
            Some(reference) => schemas[reference.rsplit('/').next().unwrap()].clone(),
            None => schema.clone(),
        }
    };
    for (path, item) in paths
        .iter()
        .filter(|(path, _)| !single_things.contains(&path.as_str()))
    {
        let schema =
            resolve(&item["get"]["responses"]["200"]["content"]["application/json"]["schema"]);
        let Some(properties) = schema["properties"].as_object() else {
            continue;
        };
        for (name, property) in properties {
            let property = resolve(property);
            let listing =
                property["type"] == "array" || property.get("additionalProperties").is_some();
            assert!(
                !listing || name == "items",
                "{path}: the list {name:?} is not called items"
            );
        }
    }
    for (path, item) in paths {
        let responses = &item["get"]["responses"];
        let real = path.replace("{name}", "lo");
        let response = agent.get(&real);
        assert_eq!(response.status, 200, "{real}: {}", response.body);
        assert_eq!(
            response.headers["content-type"], "application/json",
            "{real}"
        );
        let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        validate(
            &document,
            &responses["200"]["content"]["application/json"]["schema"],
            &body,
        );
        if let Some(not_found) = responses.get("404") {
            // The interface is in the path, or else in the query.
            let missing = if path.contains("{name}") {
                path.replace("{name}", "no-such-interface")
            } else {
                format!("{path}?interface=no-such-interface")
            };
            let response = agent.get(&missing);
            assert_eq!(response.status, 404);
            let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
            validate(
                &document,
                &not_found["content"]["application/json"]["schema"],
                &body,
            );
        }
    }
}

#[test]
fn bad_requests_get_json_errors() {
    require_root();
    let agent = Agent::start(&[]);
    let unknown = agent.get("/no/such/path");
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("\"error\""));

    let mut stream = agent.connect().unwrap();
    stream
        .write_all(
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    assert!(raw.contains("\"error\""), "{raw}");

    let mut stream = agent.connect().unwrap();
    let huge = "x".repeat(200 * 1024);
    let _ = stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n").as_bytes());
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    assert!(
        raw.starts_with("HTTP/1.1 431") || raw.starts_with("HTTP/1.1 413"),
        "{raw}"
    );

    let landing = agent.get("/");
    assert_eq!(landing.status, 200);
    assert!(landing.headers["content-type"].starts_with("text/html"));
    assert!(landing.headers["content-security-policy"].contains("script-src 'self'"));
    for link in ["/metrics", "/api/v1/openapi.json"] {
        assert!(landing.body.contains(&format!("href=\"{link}\"")));
    }
    for (path, status) in [
        ("/api/v1/history?interface=lo", 200),
        ("/api/v1/history?window=5", 400),
        ("/assets/page.js", 200),
        ("/assets/nothing.js", 404),
    ] {
        assert_eq!(agent.get(path).status, status, "{path}");
    }
}

#[test]
fn a_hundred_concurrent_scrapes_are_all_answered_in_full() {
    require_root();
    let agent = Arc::new(Agent::start(&[]));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let agent = agent.clone();
            thread::spawn(move || agent.try_get("/metrics"))
        })
        .collect();
    for handle in handles {
        let response = handle.join().unwrap().expect("answered");
        assert_eq!(response.status, 200);
        let length: usize = response.headers["content-length"].parse().unwrap();
        assert_eq!(response.body.len(), length);
        let metrics = Metrics::parse(&response.body);
        assert!(
            metrics
                .value("netmon_snapshot_timestamp_seconds", &[])
                .is_some()
        );
    }
}

/// GET over TLS, trusting `ca`, presenting `client` (`<name>.crt` and `<name>.key`) if given.
fn tls_get(
    addr: SocketAddr,
    pki: &Pki,
    client: Option<&str>,
    auth: Option<&str>,
) -> std::io::Result<Response> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.path("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match client {
        Some(name) => {
            let certs = CertificateDer::pem_file_iter(pki.path(&format!("{name}.crt")))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(pki.path(&format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let server_name = ServerName::IpAddress(addr.ip().into());
    let connection =
        ClientConnection::new(Arc::new(config), server_name).map_err(std::io::Error::other)?;
    let socket = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = StreamOwned::new(connection, socket);
    let mut request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(auth) = auth {
        request.push_str(&format!("Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A peer that closes without close_notify: keep what arrived.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    netmon_tests::parse_response(&raw)
}

fn web_config(text: &str) -> ConfigFile {
    ConfigFile::with_extension(text, "yml")
}

#[test]
fn tls_refuses_plaintext_and_serves_over_tls() {
    require_root();
    let pki = Pki::new();
    let web = web_config(&format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  min_version: TLS12\n",
        pki.path("server.crt"),
        pki.path("server.key")
    ));
    let agent = Agent::builder()
        .args(&["--web-config", web.path_str()])
        .ready_when_listening()
        .start();
    let response = tls_get(agent.addr, &pki, None, None).unwrap();
    assert_eq!(response.status, 200);
    assert!(response.body.contains("netmon_build_info"));
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = http_get(agent.addr, "/metrics", &[]);
    assert!(
        plain.as_ref().map_or(true, |r| r.status != 200),
        "{plain:?}"
    );
}

#[test]
fn mtls_requires_a_client_certificate_from_the_trusted_ca() {
    require_root();
    let pki = Pki::new();
    let web = web_config(&format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
        pki.path("server.crt"),
        pki.path("server.key"),
        pki.path("ca.crt")
    ));
    let agent = Agent::builder()
        .args(&["--web-config", web.path_str()])
        .ready_when_listening()
        .start();
    let with = tls_get(agent.addr, &pki, Some("client"), None).unwrap();
    assert_eq!(with.status, 200);
    let without = tls_get(agent.addr, &pki, None, None);
    assert!(without.is_err(), "without a certificate: {without:?}");
    let stranger = tls_get(agent.addr, &pki, Some("stranger"), None);
    assert!(
        stranger.is_err(),
        "with an untrusted certificate: {stranger:?}"
    );
}

#[test]
fn basic_auth_right_wrong_and_missing() {
    require_root();
    let hash = bcrypt::hash("s3cret", 6).unwrap();
    let web = web_config(&format!("basic_auth_users:\n  prometheus: '{hash}'\n"));
    let agent = Agent::builder()
        .args(&["--web-config", web.path_str()])
        .ready_when_listening()
        .start();
    let basic = |user: &str, password: &str| {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    };
    let right = http_get(
        agent.addr,
        "/metrics",
        &[("Authorization", &basic("prometheus", "s3cret"))],
    )
    .unwrap();
    assert_eq!(right.status, 200);
    let wrong = http_get(
        agent.addr,
        "/metrics",
        &[("Authorization", &basic("prometheus", "guess"))],
    )
    .unwrap();
    assert_eq!(wrong.status, 401);
    assert!(wrong.headers["www-authenticate"].starts_with("Basic"));
    let missing = http_get(agent.addr, "/metrics", &[]).unwrap();
    assert_eq!(missing.status, 401);
    assert!(missing.headers.contains_key("www-authenticate"));
    assert!(missing.body.contains("\"error\""));
}

#[test]
fn sigterm_with_an_idle_connection_open_exits_cleanly_within_two_seconds() {
    require_root();
    let mut agent = Agent::start(&[]);
    // A kept-alive connection, idle when the signal comes.
    assert_eq!(agent.get("/healthz").status, 200);
    let begin = Instant::now();
    let status = agent.stop(Duration::from_secs(5));
    let took = begin.elapsed();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        netmon_tests::wait_for_unload(Duration::from_secs(5)).is_empty(),
        "programs left loaded"
    );
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("a gzip stream");
    text
}

/// The exposition's snapshot time, which tells two responses of one snapshot apart from two.
fn snapshot_time(exposition: &str) -> Option<&str> {
    exposition
        .lines()
        .find(|l| l.starts_with("netmon_snapshot_timestamp_seconds"))
}

/// A scraper that takes gzip (Prometheus always does) gets the exposition compressed, in both
/// formats, and it decodes to exactly what a scraper that does not gets; the JSON API too.
#[test]
fn gzip_is_served_and_decodes_to_the_same_exposition() {
    require_root();
    let agent = Agent::start(&[]);
    let gzip = [("Accept-Encoding", "gzip")];
    let openmetrics = ("Accept", "application/openmetrics-text; version=1.0.0");
    for format in [None, Some(openmetrics)] {
        let (mut plain_headers, mut gzip_headers) = (vec![], gzip.to_vec());
        if let Some(accept) = format {
            plain_headers.push(accept);
            gzip_headers.push(accept);
        }
        // Two responses of one snapshot (a poll may fall between the two requests).
        let (plain, packed, unpacked) = (0..10)
            .map(|_| {
                let plain = http_get(agent.addr, "/metrics", &plain_headers).unwrap();
                let packed = http_get(agent.addr, "/metrics", &gzip_headers).unwrap();
                let unpacked = gunzip(&packed.bytes);
                (plain, packed, unpacked)
            })
            .find(|(plain, _, unpacked)| snapshot_time(unpacked) == snapshot_time(&plain.body))
            .expect("two responses of one snapshot");
        assert_eq!(plain.headers.get("content-encoding"), None);
        assert_eq!(
            packed.headers.get("content-encoding").map(String::as_str),
            Some("gzip")
        );
        assert_eq!(
            packed.headers.get("content-type"),
            plain.headers.get("content-type")
        );
        assert!(snapshot_time(&unpacked).is_some());
        assert_eq!(unpacked, plain.body, "one snapshot, one exposition");
        // A small exposition (the test's host) compresses less than a busy host's (15x).
        assert!(
            packed.bytes.len() * 3 < plain.bytes.len(),
            "compressed {} of {} bytes",
            packed.bytes.len(),
            plain.bytes.len()
        );
    }
    // A coding refused with q=0 is not used.
    let refused = http_get(agent.addr, "/metrics", &[("Accept-Encoding", "gzip;q=0")]).unwrap();
    assert_eq!(refused.headers.get("content-encoding"), None);

    // The JSON API: the OpenAPI document does not change between two requests.
    let plain = http_get(agent.addr, "/api/v1/openapi.json", &[]).unwrap();
    let packed = http_get(agent.addr, "/api/v1/openapi.json", &gzip).unwrap();
    assert_eq!(
        packed.headers.get("content-encoding").map(String::as_str),
        Some("gzip")
    );
    assert_eq!(gunzip(&packed.bytes), plain.body);
    let listening = http_get(agent.addr, "/api/v1/listening", &gzip).unwrap();
    let listening: serde_json::Value = serde_json::from_str(&gunzip(&listening.bytes)).unwrap();
    assert!(listening["items"].is_array(), "{listening}");
}
