//! The agent's side of drop sampling: it keeps each CPU's budget (a token bucket refilled
//! at every poll, see `netmon-common`) and drains the ring of samples.
use std::time::Instant;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, PerCpuValues, RingBuf},
};
use netmon_common::samples::{self, DropSample, SAMPLE_ALLOWED, SAMPLE_USED, SampleTally};

use crate::probes::{
    drain_ring,
    slots::{possible_cpus, take_map},
};

/// How many samples each CPU may send: `rate` a second on average, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleBudget {
    pub rate: f64,
    pub burst: u64,
}

/// The ring of samples and the per-CPU budget, taken out of the loaded object.
pub(super) struct DropSampler {
    ring: RingBuf<MapData>,
    budget: PerCpuArray<MapData, SampleTally>,
    /// Per CPU: samples allowed so far, with the fraction the next refill adds to.
    allowed: Vec<f64>,
    refilled: Option<Instant>,
}

impl DropSampler {
    pub(super) fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let cpus = possible_cpus()? as usize;
        Ok(Self {
            ring: RingBuf::try_from(take_map(ebpf, samples::RING)?)?,
            budget: PerCpuArray::try_from(take_map(ebpf, samples::BUDGET)?)?,
            allowed: vec![0.0; cpus],
            refilled: None,
        })
    }

    /// Gives each CPU what its bucket gained since the last call (a full burst the first
    /// time), never more than `burst` beyond what it has sent; returns the real drops not
    /// sampled so far, over all CPUs.
    pub(super) fn refill(&mut self, budget: SampleBudget) -> anyhow::Result<u64> {
        let now = Instant::now();
        let gained = match self.refilled {
            Some(last) => budget.rate * now.duration_since(last).as_secs_f64(),
            None => f64::INFINITY,
        };
        self.refilled = Some(now);
        let used = self
            .budget
            .get(&SAMPLE_USED, 0)
            .context("reading DROP_SAMPLE_BUDGET")?;
        let mut allowed = Vec::with_capacity(self.allowed.len());
        for (allowance, used) in self.allowed.iter_mut().zip(used.iter()) {
            *allowance = (*allowance + gained).min((used.samples + budget.burst) as f64);
            allowed.push(SampleTally {
                samples: *allowance as u64,
                suppressed: 0,
            });
        }
        self.budget
            .set(SAMPLE_ALLOWED, PerCpuValues::try_from(allowed)?, 0)
            .context("writing DROP_SAMPLE_BUDGET")?;
        Ok(used.iter().map(|tally| tally.suppressed).sum())
    }

    /// The samples sent since the last call, oldest first.
    pub(super) fn drain(&mut self) -> Vec<DropSample> {
        drain_ring(&mut self.ring)
    }
}
