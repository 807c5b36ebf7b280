//! netmon's kernel programs: loading the object with what it must know of this kernel
//! (`layout`), attaching each hook by the best method the kernel offers (`attach`), reading
//! their tables (`read`, over `tables` and `slots`) and their drop samples (`samples`).
mod attach;
pub mod btf;
mod iterators;
mod layout;
mod methods;
mod namespaces;
mod process_io;
mod processes;
mod read;
mod reasons;
mod samples;
mod slots;
mod socket_files;
mod start;
mod tables;
mod tcp_sockets;
mod thread_watch;
pub mod tracefs;
mod variant;

use std::collections::{BTreeMap, BTreeSet};

use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
};
use netmon_common::{samples::DropSample, traffic::MAX_INTERFACES};

use crate::model::probes::{AttachMethod, Hook, ProbeStatus, ProgramVariant};
use namespaces::NamespaceWatch;
pub use reasons::DropReasonNames;
use samples::DropSampler;
pub use samples::SampleBudget;
use tables::TableTags;

/// What the operator can choose about the probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Pins a hook to one attach method instead of the best available.
    pub forced: BTreeMap<Hook, AttachMethod>,
    /// Hooks left unattached.
    pub disabled: BTreeSet<Hook>,
    /// Capacity of the per-interface traffic map (interfaces over all namespaces).
    pub max_tracked_interfaces: u32,
    /// The build of the programs to load instead of the fastest the kernel takes.
    pub variant: Option<ProgramVariant>,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            forced: BTreeMap::new(),
            disabled: BTreeSet::new(),
            max_tracked_interfaces: MAX_INTERFACES,
            variant: None,
        }
    }
}

/// Loaded programs and their maps. Dropping it detaches and unloads everything.
pub struct Probes {
    ebpf: Option<(Ebpf, TableTags)>,
    /// Kernel memory of each table, measured once the maps exist.
    map_bytes: Vec<(&'static str, u64)>,
    status: Vec<ProbeStatus>,
    reasons: DropReasonNames,
    /// Why the object could not be loaded at all, if it could not.
    load_error: Option<String>,
    /// Whether the TCP socket iterator is loaded, or why not.
    socket_iterator: Result<tcp_sockets::Tally, String>,
    /// Whether the socket file iterator is loaded, or why not.
    file_iterator: Result<(), String>,
    /// The ring of drop samples and its budget, or why there is none.
    sampler: Result<DropSampler, String>,
    /// The watch on namespace teardown, or why there is none.
    namespace_watch: Result<NamespaceWatch, String>,
    /// Whether thread exits and cgroup moves are watched (the socket memos are on), or why
    /// not.
    thread_watch: Result<(), String>,
    /// The build of the programs loaded.
    variant: ProgramVariant,
}

impl Probes {
    /// The build of the kernel programs loaded.
    pub fn program_variant(&self) -> ProgramVariant {
        self.variant
    }

    /// The namespaces torn down since the last call; `None` when teardown is not watched.
    pub fn torn_down_namespaces(&mut self) -> Option<BTreeSet<u32>> {
        self.namespace_watch
            .as_mut()
            .ok()
            .map(NamespaceWatch::drain)
    }

    /// How namespace teardown is watched (`fentry` or `kprobe`), or why it is not.
    pub fn namespace_watch(&self) -> Result<&'static str, &str> {
        match &self.namespace_watch {
            Ok(watch) => Ok(watch.method()),
            Err(error) => Err(error),
        }
    }

    /// The drops sampled since the last call, oldest first, and the real drops not sampled
    /// since the start; each CPU's budget is then refilled for the time since.
    pub fn drop_samples(&mut self, budget: SampleBudget) -> anyhow::Result<(Vec<DropSample>, u64)> {
        let Ok(sampler) = &mut self.sampler else {
            return Ok((Vec::new(), 0));
        };
        let samples = sampler.drain();
        let suppressed = sampler.refill(budget)?;
        Ok((samples, suppressed))
    }

    /// Why drops are not sampled, if they are not.
    pub fn drop_sampling_error(&self) -> Option<&str> {
        self.sampler.as_ref().err().map(String::as_str)
    }

    /// Why the socket hooks count each call in its slot, without a memo, when they do: the
    /// thread watch is not attached.
    pub fn socket_memo_error(&self) -> Option<&str> {
        self.thread_watch.as_ref().err().map(String::as_str)
    }

    pub fn status(&self) -> &[ProbeStatus] {
        &self.status
    }

    pub fn load_error(&self) -> Option<&str> {
        self.load_error.as_deref()
    }

    pub fn drop_reasons(&self) -> &DropReasonNames {
        &self.reasons
    }
}

/// The records sent through `ring` since the last call, oldest first. The programs write
/// whole `T`s; an item too short for one is passed over.
fn drain_ring<T: aya::Pod>(ring: &mut RingBuf<MapData>) -> Vec<T> {
    let mut records = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<T>() {
            // SAFETY: the item holds a whole `T` written by a program, a plain record; the
            // ring's items are only 8-byte aligned, hence the unaligned read.
            records.push(unsafe { item.as_ptr().cast::<T>().read_unaligned() });
        }
    }
    records
}
