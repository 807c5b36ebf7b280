//! Families about the agent itself: probes, build, collectors, reloads, findings.
use prometheus::proto::{MetricFamily, MetricType};

use crate::{export::metrics::Family, model::Snapshot, state::AgentStatus};

pub(super) fn families(snapshot: &Snapshot, agent: &AgentStatus, out: &mut Vec<MetricFamily>) {
    let mut push = |family: Family| out.push(family.0);

    // The agent itself.
    let mut attached = Family::new(
        "netmon_probe_attached",
        "1 when the probe is attached, with the method it got; 0 with method \"none\" when no \
         method worked (with what the kernel lacks in \"needs\", where that is known), or \
         \"off\" when the configuration turned it off.",
        MetricType::GAUGE,
    );
    for status in &snapshot.probes {
        let mut labels = vec![
            ("probe", status.probe.as_str()),
            ("method", status.method_name()),
        ];
        if let Some(needs) = &status.needs {
            labels.push(("needs", needs.as_str()));
        }
        attached.sample(&labels, f64::from(u8::from(status.method.is_some())));
    }
    push(attached);

    let mut build = Family::new(
        "netmon_build_info",
        "The agent's version; the value is always 1.",
        MetricType::GAUGE,
    );
    build.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    push(build);

    let mut duration = Family::new(
        "netmon_collector_duration_seconds",
        "Time each collector took in the newest poll.",
        MetricType::GAUGE,
    );
    let mut success = Family::new(
        "netmon_collector_success",
        "1 when the collector succeeded in the newest poll.",
        MetricType::GAUGE,
    );
    for run in &snapshot.collectors {
        duration.sample(&[("collector", run.collector)], run.duration_seconds);
        success.sample(
            &[("collector", run.collector)],
            f64::from(u8::from(run.success)),
        );
    }
    push(duration);
    push(success);

    let mut poll = Family::new(
        "netmon_poll_duration_seconds",
        "Time the newest poll took.",
        MetricType::GAUGE,
    );
    poll.sample(&[], snapshot.poll_duration_seconds);
    push(poll);

    let mut timestamp = Family::new(
        "netmon_snapshot_timestamp_seconds",
        "When the newest snapshot was taken, in seconds since the Unix epoch.",
        MetricType::GAUGE,
    );
    timestamp.sample(&[], snapshot.timestamp_ms as f64 / 1000.0);
    push(timestamp);

    let mut reload_ok = Family::new(
        "netmon_config_last_reload_successful",
        "1 when the last configuration (re)load succeeded; 0 while a broken file is ignored.",
        MetricType::GAUGE,
    );
    reload_ok.sample(
        &[],
        f64::from(u8::from(agent.reload.last_reload_successful)),
    );
    push(reload_ok);
    let mut reload_time = Family::new(
        "netmon_config_last_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully, in seconds since the Unix epoch.",
        MetricType::GAUGE,
    );
    reload_time.sample(&[], agent.reload.last_success_timestamp_seconds);
    push(reload_time);

    let mut findings = Family::new(
        "netmon_diagnosis_finding",
        "Active findings of the diagnosis (/api/v1/diagnosis); the value is always 1.",
        MetricType::GAUGE,
    );
    for finding in &agent.diagnosis.findings {
        findings.sample(
            &[
                ("id", finding.id),
                ("severity", finding.severity.as_str()),
                ("subject", &finding.subject),
            ],
            1.0,
        );
    }
    push(findings);
}
