//! CPUs whose receive backlog overflows (`softnet_stat` dropped: packets lost before any
//! protocol saw them) or whose receive processing runs out of budget (time_squeeze), naming
//! each CPU, with the drops the kernel gave the reason `CPU_BACKLOG`.
use super::{Finding, evidence, graded, reason_drops};
use crate::{
    config::Thresholds,
    model::{Snapshot, pressure::SoftnetCpu},
};

pub(super) fn softnet(
    findings: &mut Vec<Finding>,
    thresholds: &Thresholds,
    (oldest, newest): (&Snapshot, &Snapshot),
    window_seconds: f64,
) {
    for cpu in &newest.pressure.softnet {
        let before = oldest.pressure.softnet.iter().find(|c| c.cpu == cpu.cpu);
        let moved = |count: fn(&SoftnetCpu) -> u64| {
            count(cpu).saturating_sub(before.map_or(count(cpu), count))
        };
        let dropped = moved(|c| c.dropped);
        let squeezed = moved(|c| c.times_squeezed);
        let drops = thresholds.softnet_drops.max(1) as f64;
        let squeezes = thresholds.softnet_squeezes.max(1) as f64;
        let severity = graded(dropped as f64, drops, 100.0 * drops).max(graded(
            squeezed as f64,
            squeezes,
            f64::INFINITY,
        ));
        let Some(severity) = severity else {
            continue;
        };
        let number = cpu.cpu;
        let backlog = reason_drops((oldest, newest), "CPU_BACKLOG", None, None);
        findings.push(Finding {
            id: "cpu_backlog",
            severity,
            subject: format!("cpu {number}"),
            summary: format!(
                "cpu {number}: {dropped} packets dropped at its full backlog and {squeezed} \
                 times out of budget in {window_seconds:.0} s"
            ),
            window_seconds,
            evidence: vec![
                evidence("dropped", dropped as f64, "packets"),
                evidence("times_squeezed", squeezed as f64, "times"),
                evidence("CPU_BACKLOG", backlog as f64, "packets"),
            ],
            next_steps: vec![
                "One CPU takes more packets than it can process: spread them (RSS, RPS, IRQ \
                 affinity), or raise net.core.netdev_max_backlog (drops) and \
                 net.core.netdev_budget (squeezes)."
                    .to_string(),
            ],
        });
    }
}
