//! monitoring/ against the real thing: promtool on the configuration and rules, the rules'
//! unit tests, and a real Prometheus scraping a running agent, answering every rule and
//! dashboard query with data.
use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Agent, Netns, Veth, free_port, http_get, require_root, sh};

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring())
        .output()
        .expect("promtool (Debian package prometheus; cargo xtask setup installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {}: {text}", args.join(" "));
    text
}

#[test]
fn configuration_and_rules_pass_promtool() {
    let text = promtool(&["check", "config", "prometheus.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
    promtool(&["check", "rules", "rules/recording.yml", "rules/alerts.yml"]);
    let text = promtool(&["test", "rules", "tests/alerts_test.yml"]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_alert_has_a_severity_an_annotation_and_both_test_cases() {
    let alerts = std::fs::read_to_string(monitoring().join("rules/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(monitoring().join("tests/alerts_test.yml")).unwrap();
    let names: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(names.len() >= 11, "{names:?}");
    for name in &names {
        let rule = alerts
            .split("- alert: ")
            .find(|r| r.starts_with(&format!("{name}\n")))
            .unwrap();
        assert!(rule.contains("severity:"), "{name} has no severity");
        assert!(
            rule.contains("Check next") || rule.contains("check next"),
            "{name}"
        );
        // A firing case (expected alerts) and a quiet one: promtool compares the full set of
        // alerts, so a firing case with other series present, or an empty list, is a quiet case.
        let cases: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|c| c.contains(&format!("alertname: {name}\n")))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_labels")),
            "{name} never fires in tests"
        );
    }
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus<'a> {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    ns: &'a Netns,
}

impl<'a> Prometheus<'a> {
    /// Starts Prometheus on the loopback of `ns` with the shipped rule files, scraping
    /// `target` every second.
    fn start(ns: &'a Netns, target: SocketAddr) -> Self {
        let rules = monitoring().join("rules").canonicalize().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}/recording.yml\n  - {}/alerts.yml\n\
             scrape_configs:\n  - job_name: netmon\n    scrape_interval: 1s\n    scrape_timeout: 1s\n\
             \x20   static_configs:\n      - targets: [\"{target}\"]\n",
            rules.display(),
            rules.display()
        );
        Self::start_with(ns, &config)
    }

    /// Starts Prometheus on the loopback of `ns` with `config`.
    fn start_with(ns: &'a Netns, config: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("netmon-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "prometheus"])
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus)");
        let prometheus = Self {
            child,
            addr,
            dir,
            ns,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !prometheus.get("/-/ready").is_ok_and(|r| r.status == 200) {
            assert!(Instant::now() < deadline, "prometheus not ready in 30 s");
            thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    fn get(&self, path: &str) -> std::io::Result<netmon_tests::Response> {
        let (addr, path) = (self.addr, path.to_string());
        self.ns.run(move || http_get(addr, &path, &[]))
    }

    fn api(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).unwrap();
        serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", response.body))
    }

    /// Runs an instant query; returns its result vector, panicking on a query error.
    fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let answer = self.api(&format!("/api/v1/query?query={}", encode(expr)));
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A dashboard of `monitoring/grafana/`, checked for its schema version and its variables.
fn dashboard(file: &str, variables: &[&str]) -> serde_json::Value {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring().join("grafana").join(file)).unwrap(),
    )
    .unwrap();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 39);
    let names: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, variables, "{file}");
    dashboard
}

/// Expressions of a rules file, with their names.
fn rule_exprs(file: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(monitoring().join("rules").join(file)).unwrap();
    let value: serde_json::Value = serde_yaml_to_json(&text);
    value["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| {
            let name = r["record"]
                .as_str()
                .or(r["alert"].as_str())
                .unwrap()
                .to_string();
            (name, r["expr"].as_str().unwrap().to_string())
        })
        .collect()
}

/// YAML to JSON through Python's yaml module (PyYAML ships with Debian's Python and pip's).
fn serde_yaml_to_json(text: &str) -> serde_json::Value {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Metric names (`netmon_...`, `netmon:...`) in an expression or file.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = expr[i..].starts_with("netmon_") || expr[i..].starts_with("netmon:");
        if starts && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')) {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(expr.len(), |e| i + e);
            names.insert(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// A test host: the agent's namespace `x` with a veth (a link with a speed) to `y`.
fn host(tag: &str) -> (Netns, Netns, Veth) {
    let x = Netns::new(&format!("{tag}-x"));
    let y = Netns::new(&format!("{tag}-y"));
    let veth = Veth::connect(&x, &y, 230);
    // A queueing discipline that counts (a veth's own, noqueue, is left out of the metrics).
    x.exec(&["tc", "qdisc", "add", "dev", &veth.a_dev, "root", "pfifo"]);
    (x, y, veth)
}

/// Traffic, drops and connections on the namespace's loopback, so that every family has fresh
/// samples.
fn make_activity(ns: &Netns) {
    ns.run(make_activity_here);
}

fn make_activity_here() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = closed.local_addr().unwrap();
    drop(closed);
    for _ in 0..50 {
        // Nobody listens: each datagram is a NO_SOCKET drop.
        let _ = socket.send_to(b"x", target);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        for _ in 0..20 {
            let (mut s, _) = listener.accept().unwrap();
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
        }
    });
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"x").unwrap();
    }
    server.join().unwrap();
    // The listener is gone: a refused connect for the failing peers.
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn a_real_prometheus_answers_every_rule_and_panel_with_data() {
    require_root();
    let (x, _y, _veth) = host("prom");
    let agent = Agent::builder().inside(&x).start();
    let prometheus = Prometheus::start(&x, agent.addr);
    make_activity(&x);
    // A few scrapes before and after the activity, so that rates have two points.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let scraped = prometheus.query("count_over_time(up{job=\"netmon\"}[1m])");
        if scraped
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|n| n >= 6.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape the agent"
        );
        thread::sleep(Duration::from_millis(500));
        make_activity(&x);
    }
    let up = prometheus.query("up{job=\"netmon\"}");
    assert_eq!(up[0]["value"][1], "1", "{up:?}");

    let rules = prometheus.api("/api/v1/rules");
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{rules}");
    for group in groups {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{rule}");
        }
    }

    let mut failures = Vec::new();
    for (name, expr) in rule_exprs("recording.yml") {
        if prometheus.query(&expr).is_empty() {
            failures.push(format!("recording rule {name} returned no data"));
        }
    }
    // Alert expressions run without error; each selector in them has data (an alert firing
    // here would mean an unhealthy test host; its logic is proven by tests/alerts_test.yml).
    for (name, expr) in rule_exprs("alerts.yml") {
        prometheus.query(&expr);
        for metric in metric_names(&expr) {
            if prometheus
                .query(&format!("count({{__name__=\"{metric}\"}})"))
                .is_empty()
                && prometheus.query(&format!("count({metric})")).is_empty()
            {
                failures.push(format!("alert {name}: {metric} has no data"));
            }
        }
    }

    let dashboard = dashboard("netmon.json", &["datasource", "instance", "interface"]);
    let panels = dashboard["panels"].as_array().unwrap();
    let mut queries = 0;
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                !expr.contains("[5m]") && !expr.contains("[1m]"),
                "use $__rate_interval: {expr}"
            );
            let concrete = expr
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
                .replace("$interface", ".*");
            queries += 1;
            if prometheus.query(&concrete).is_empty() {
                failures.push(format!(
                    "panel {:?}: {expr} returned no data",
                    panel["title"]
                ));
            }
        }
    }
    assert!(queries >= 15);
    for title in [
        "Network Traffic",
        "Errors & Drops",
        "Connections by State",
        "Drops by Reason",
        "TCP Transitions",
        "Retransmits & Resets",
        "Handshake Latency",
        "Interfaces",
        "Listening Sockets",
        "Top Talkers",
        "Failing Peers",
        "Connects by Peer",
        "Listen Overflows",
        "Accept Queue Use",
        "Connection Tracking Use",
        "Queueing Discipline Drops",
        "CPU Backlog Drops and Squeezes",
    ] {
        assert!(
            panels.iter().any(|p| p["title"] == title),
            "no panel {title}"
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_metric_name_in_monitoring_exists_in_the_agent_output() {
    require_root();
    let (x, _y, _veth) = host("names");
    let agent = Agent::builder().inside(&x).start();
    make_activity(&x);
    let text = agent.fresh_metrics();
    let exposed: BTreeSet<&str> = text.samples.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut used = BTreeSet::new();
    for file in sh("find", &[monitoring().to_str().unwrap(), "-type", "f"]).lines() {
        let content = std::fs::read_to_string(file).unwrap();
        used.extend(metric_names(&content));
    }
    // Recording rules (netmon:...) are Prometheus' names, not the agent's.
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !n.contains(':') && !exposed.contains(n.as_str()))
        .collect();
    assert!(used.len() > 15, "{used:?}");
    assert!(
        missing.is_empty(),
        "used in monitoring/ but not exposed: {missing:?}"
    );
}

/// The Kubernetes scrape configuration with its discovery replaced by what the endpoints role
/// would find: the two agents as the Service's `metrics` endpoints on nodes `node-a` and
/// `node-b`, and an endpoint of another port that the relabelling must drop. (Debian's
/// Prometheus is built without Kubernetes discovery; everything else is the shipped file.)
fn kubernetes_config(agents: [SocketAddr; 2], other: SocketAddr) -> String {
    let text = std::fs::read_to_string(monitoring().join("prometheus-kubernetes.yml")).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    let rules = monitoring().canonicalize().unwrap();
    for rule in config["rule_files"].as_sequence_mut().unwrap() {
        *rule = format!("{}/{}", rules.display(), rule.as_str().unwrap()).into();
    }
    let job = &mut config["scrape_configs"][0];
    job["scrape_interval"] = "1s".into();
    job["scrape_timeout"] = "1s".into();
    let discovered = |target: SocketAddr, node: &str, port: &str| {
        serde_yaml::from_str::<serde_yaml::Value>(&format!(
            "targets: [\"{target}\"]\nlabels:\n  __meta_kubernetes_service_name: netmon\n  \
             __meta_kubernetes_endpoint_port_name: {port}\n  \
             __meta_kubernetes_endpoint_node_name: {node}\n"
        ))
        .unwrap()
    };
    let job = job.as_mapping_mut().unwrap();
    assert!(job.remove("kubernetes_sd_configs").is_some());
    job.insert(
        "static_configs".into(),
        serde_yaml::Value::Sequence(vec![
            discovered(agents[0], "node-a", "metrics"),
            discovered(agents[1], "node-b", "metrics"),
            discovered(other, "node-c", "other"),
        ]),
    );
    serde_yaml::to_string(&config).unwrap()
}

#[test]
fn the_fleet_dashboard_answers_for_two_agents() {
    require_root();
    // Prometheus in p; an agent in each of a and b, reached across a veth.
    let p = Netns::new("fleet-p");
    let (a, b) = (Netns::new("fleet-a"), Netns::new("fleet-b"));
    let (to_a, to_b) = (Veth::connect(&p, &a, 232), Veth::connect(&p, &b, 233));
    let agent_a = Agent::builder()
        .inside(&a)
        .reached_from(&to_a.b_ip, &p)
        .start();
    let agent_b = Agent::builder()
        .inside(&b)
        .reached_from(&to_b.b_ip, &p)
        .start();
    let other: SocketAddr = format!("{}:9", to_a.b_ip).parse().unwrap();
    let config = kubernetes_config([agent_a.addr, agent_b.addr], other);
    let prometheus = Prometheus::start_with(&p, &config);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        make_activity(&a);
        make_activity(&b);
        let scraped = prometheus.query("count_over_time(up{job=\"netmon\"}[1m]) >= 6");
        if scraped.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape both agents"
        );
        thread::sleep(Duration::from_millis(500));
    }
    // The relabelling keeps the Service's metrics endpoints, named by their node.
    let up = prometheus.query("up{job=\"netmon\"}");
    let mut instances: Vec<String> = up
        .iter()
        .map(|s| {
            assert_eq!(s["value"][1], "1", "{s}");
            assert_eq!(s["metric"]["instance"], s["metric"]["node"]);
            s["metric"]["instance"].as_str().unwrap().to_string()
        })
        .collect();
    instances.sort();
    assert_eq!(instances, ["node-a", "node-b"]);

    let dashboard = dashboard("netmon-fleet.json", &["datasource", "instance"]);
    let mut failures = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains("$instance"), "{expr}");
            let concrete = expr
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            let result = prometheus.query(&concrete);
            let hosts: BTreeSet<&str> = result
                .iter()
                .filter_map(|s| s["metric"]["instance"].as_str())
                .collect();
            // Every panel shows both hosts (the drop reasons and talkers of each host too).
            if hosts.len() != 2 {
                failures.push(format!("{:?}: {expr} showed {hosts:?}", panel["title"]));
            }
        }
    }
    for title in [
        "Agents",
        "Probe Methods",
        "Top Hosts by Traffic",
        "Errors & Drops by Host",
        "Connections by Host",
        "Hosts with Findings",
    ] {
        assert!(
            dashboard["panels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["title"] == title),
            "no panel {title}"
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // An agent that stops is shown down.
    drop(agent_b);
    let deadline = Instant::now() + Duration::from_secs(20);
    while prometheus
        .query("up{job=\"netmon\", instance=\"node-b\"} == 0")
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the stopped agent is not shown down"
        );
        thread::sleep(Duration::from_millis(500));
    }
}
