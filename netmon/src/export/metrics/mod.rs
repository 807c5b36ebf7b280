//! Prometheus exposition of a Snapshot. Every family is named and described once, in the
//! file of the part of the Snapshot it comes from: `host`, `kernel`, `peers`, `processes`,
//! `agent`; `format` writes them out.
mod agent;
mod format;
mod host;
mod kernel;
mod peers;
mod pressure;
mod processes;

pub use format::{OPENMETRICS_FORMAT, render_openmetrics, render_text, wants_openmetrics};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::{model::Snapshot, state::AgentStatus};

/// A metric family under construction.
struct Family(MetricFamily);

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Self {
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        Self(family)
    }

    fn labelled(labels: &[(&str, &str)]) -> Metric {
        let mut metric = Metric::default();
        metric.set_label(
            labels
                .iter()
                .map(|(name, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name(name.to_string());
                    pair.set_value(value.to_string());
                    pair
                })
                .collect(),
        );
        metric
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let mut metric = Self::labelled(labels);
        match self.0.get_field_type() {
            MetricType::COUNTER => {
                let mut counter = Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            }
            _ => {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
        }
        self.0.mut_metric().push(metric);
    }

    /// A histogram of buckets of microseconds, shown with the upper bounds (in seconds) that
    /// `bound` gives: the counts up to any bound are exact, so a bucket without one (the
    /// last, or one left out for brevity) loses nothing but detail.
    fn histogram(
        &mut self,
        labels: &[(&str, &str)],
        buckets: &[u64],
        sum_ns: u64,
        bound: impl Fn(usize) -> Option<f64>,
    ) {
        let mut metric = Self::labelled(labels);
        let mut proto = Histogram::default();
        let mut cumulative = 0;
        let mut bounds = Vec::with_capacity(buckets.len());
        for (i, count) in buckets.iter().enumerate() {
            cumulative += count;
            let Some(upper) = bound(i) else {
                continue;
            };
            let mut bucket = Bucket::default();
            bucket.set_upper_bound(upper);
            bucket.set_cumulative_count(cumulative);
            bounds.push(bucket);
        }
        proto.set_bucket(bounds);
        proto.set_sample_count(cumulative);
        proto.set_sample_sum(sum_ns as f64 / 1e9);
        metric.set_histogram(proto);
        self.0.mut_metric().push(metric);
    }
}

/// Builds every metric family from the newest snapshot and the agent's state.
pub fn families(snapshot: &Snapshot, agent: &AgentStatus) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    host::families(snapshot, &mut out);
    kernel::families(snapshot, &mut out);
    peers::families(snapshot, &mut out);
    pressure::families(snapshot, &mut out);
    processes::families(snapshot, &mut out);
    agent::families(snapshot, agent, &mut out);
    // Families with no sample are left out: the text format has nothing to say for them.
    out.retain(|family| !family.get_metric().is_empty());
    out
}
