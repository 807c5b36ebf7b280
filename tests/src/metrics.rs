//! Prometheus text as the agent serves it, parsed for the tests to look samples up.
use std::collections::BTreeMap;

/// Parsed Prometheus text: one entry per sample.
#[derive(Debug, Default)]
pub struct Metrics {
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("sample value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples.push((name.to_string(), labels, value));
        }
        Self { samples }
    }

    /// Samples of `name` whose labels include every pair of `labels`.
    pub fn find(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, l, v)| (l, *v))
            .collect()
    }

    /// The single sample matching, if exactly one does.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels).as_slice() {
            [(_, value)] => Some(*value),
            [] => None,
            many => panic!(
                "{} samples of {name} match {labels:?}: {many:?}",
                many.len()
            ),
        }
    }

    /// Like [`Metrics::value`], 0 when absent (a counter not yet created).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.value(name, labels).unwrap_or(0.0) as u64
    }

    /// The traffic counter `name` (packets, bytes...) of interface `dev` of namespace `netns`
    /// in direction `dir` (`rx`, `tx`).
    pub fn traffic(&self, name: &str, netns: &str, dev: &str, dir: &str) -> u64 {
        self.counter(
            name,
            &[("netns", netns), ("interface", dev), ("direction", dir)],
        )
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(name.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let metrics =
            Metrics::parse("# HELP x y\n# TYPE x counter\nx{a=\"1\",b=\"q\\\"z\"} 5\ny 2.5\n");
        assert_eq!(metrics.value("x", &[("a", "1")]), Some(5.0));
        assert_eq!(metrics.find("x", &[])[0].0["b"], "q\"z");
        assert_eq!(metrics.value("y", &[]), Some(2.5));
        assert_eq!(metrics.counter("z", &[]), 0);
    }
}
