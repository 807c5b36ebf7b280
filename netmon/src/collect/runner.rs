//! Runs one collector of the poll, recording how it went.
use std::time::Instant;

use crate::model::CollectorRun;

/// Runs one collector, recording how it went. A collector that fails or panics is reported
/// and the poll goes on with the others.
pub fn run<T>(
    runs: &mut Vec<CollectorRun>,
    collector: &'static str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> Option<T> {
    let begin = Instant::now();
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(anyhow::anyhow!("panicked: {message}"))
        });
    let duration_seconds = begin.elapsed().as_secs_f64();
    match result {
        Ok(value) => {
            runs.push(CollectorRun {
                collector,
                success: true,
                duration_seconds,
                error: None,
            });
            Some(value)
        }
        Err(err) => {
            tracing::warn!(collector, "collector failed: {err:#}");
            runs.push(CollectorRun {
                collector,
                success: false,
                duration_seconds,
                error: Some(format!("{err:#}")),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_or_panicking_collector_is_reported_and_the_rest_go_on() {
        let mut runs = Vec::new();
        assert_eq!(run(&mut runs, "good", || Ok(1)), Some(1));
        assert_eq!(
            run::<u8>(&mut runs, "bad", || anyhow::bail!("no such file")),
            None
        );
        assert_eq!(
            run::<u8>(&mut runs, "broken", || panic!("index out of range")),
            None
        );
        assert_eq!(run(&mut runs, "after", || Ok(2)), Some(2));
        let outcome: Vec<(&str, bool)> = runs.iter().map(|r| (r.collector, r.success)).collect();
        assert_eq!(
            outcome,
            [
                ("good", true),
                ("bad", false),
                ("broken", false),
                ("after", true)
            ]
        );
        assert_eq!(runs[1].error.as_deref(), Some("no such file"));
        assert_eq!(
            runs[2].error.as_deref(),
            Some("panicked: index out of range")
        );
    }
}
