//! netmon's kernel programs: loading the object with what it must know of this kernel
//! (`layout`), attaching each hook by the best method the kernel offers (`attach`), reading
//! their tables (`read`, over `tables` and `slots`) and their drop samples (`samples`).
mod attach;
pub mod btf;
mod iterators;
mod layout;
mod namespaces;
mod process_io;
mod read;
mod reasons;
mod samples;
mod slots;
mod socket_files;
mod tables;
mod tcp_sockets;
mod thread_watch;
pub mod tracefs;
mod variant;

use std::collections::{BTreeMap, BTreeSet};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, RingBuf},
};
use netmon_common::{CPU_REGION_MAPS, DROP_REASON_UNKNOWN, NormalFreeReasons};

use crate::model::probes::{AttachMethod, Hook, MethodFailure, ProbeStatus, ProgramVariant};
use attach::attach;
use btf::Btf;
use layout::{drop_kprobe_target, kernel_offsets, tracepoint_fields};
use namespaces::NamespaceWatch;
use netmon_common::DropSample;
pub use reasons::DropReasonNames;
use samples::DropSampler;
pub use samples::SampleBudget;
use tables::{TableSizes, TableTags, map_bytes};
use variant::KernelFeatures;

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
            max_tracked_interfaces: netmon_common::MAX_INTERFACES,
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
    /// Loads the embedded object and attaches every hook, each on its own. Never fails: what
    /// did not work is in [`Probes::status`].
    pub fn start(settings: &ProbeSettings) -> Self {
        let forced = &settings.forced;
        // Each parse of the kernel's BTF holds tens of MiB while it lives: this one gives its
        // answers and goes before aya parses its own.
        let (reasons, offsets, features, tracepoints) = {
            let btf = Btf::from_sys_fs();
            // Hooks whose tracepoint this kernel has: their fexit fallback is for kernels
            // without it.
            let tracepoints: Vec<Hook> = Hook::ALL
                .into_iter()
                .filter(|hook| {
                    btf.as_ref()
                        .is_ok_and(|btf| btf.has_tracepoint(hook.as_str()))
                })
                .collect();
            let reasons = btf
                .as_ref()
                .map(DropReasonNames::from_btf)
                .unwrap_or_default();
            let offsets = btf.as_ref().map_err(|e| format!("{e:#}")).and_then(|btf| {
                kernel_offsets(btf).map_err(|e| format!("kernel struct layout from BTF: {e:#}"))
            });
            let features = KernelFeatures::from_btf(btf.as_ref().ok());
            let tracepoints = btf.is_ok().then_some(tracepoints);
            (reasons, offsets, features, tracepoints)
        };
        let variant = features.variant(settings.variant);
        // Read up front, as the object takes them at load.
        let (mut fields, tracepoint_errors) = tracepoint_fields();
        fields.drop_reason_argument = u32::from(features.drop_reasons);
        // Older kernels lack one or both names; a value no reason takes then matches nothing.
        let no_such_reason = DROP_REASON_UNKNOWN - 1;
        let normal = NormalFreeReasons {
            not_dropped_yet: reasons
                .value("SKB_NOT_DROPPED_YET")
                .unwrap_or(no_such_reason),
            consumed: reasons.value("SKB_CONSUMED").unwrap_or(no_such_reason),
        };
        let drop_target = drop_kprobe_target();

        let object_offsets = offsets.clone().unwrap_or_default();
        let drop_args = drop_target.map(|(_, args)| args).unwrap_or_default();
        let sizes = TableSizes::new(settings);
        // The loader parses the kernel's BTF for itself and is gone at the end of the
        // statement, before the attach below parses it again: one parse lives at a time.
        let loaded = slots::possible_cpus().and_then(|cpus| {
            let masks = sizes.masks();
            let mut loader = EbpfLoader::new();
            loader
                .override_global("OFFSETS", &object_offsets, true)
                .override_global("TP_FIELDS", &fields, true)
                .override_global("DROP_PROBE_ARGS", &drop_args, true)
                .override_global("NORMAL_FREE", &normal, true)
                .override_global("SLOT_MASKS", &masks, true)
                .map_max_entries("TRAFFIC_TAGS", sizes.traffic)
                .map_max_entries("TRAFFIC", sizes.traffic)
                .map_max_entries("TRAFFIC_CLAIMS", sizes.traffic);
            for (name, per_cpu) in CPU_REGION_MAPS {
                loader.map_max_entries(name, per_cpu * cpus);
            }
            let ebpf = loader.load(variant::object(variant))?;
            let tags = TableTags::map(&ebpf, sizes, cpus)?;
            Ok((ebpf, tags))
        });
        let (mut ebpf, tags) = match loaded {
            Ok(loaded) => loaded,
            Err(err) => {
                let error = format!(
                    "loading eBPF object: {err:#} (netmon needs root, or CAP_BPF and CAP_PERFMON)"
                );
                tracing::error!("{error}; serving host statistics only");
                let status = Hook::ALL
                    .into_iter()
                    .map(|probe| ProbeStatus::new(probe, None, vec![]))
                    .collect();
                return Self {
                    ebpf: None,
                    map_bytes: Vec::new(),
                    status,
                    reasons,
                    load_error: Some(error.clone()),
                    socket_iterator: Err(error.clone()),
                    file_iterator: Err(error.clone()),
                    sampler: Err(error.clone()),
                    namespace_watch: Err(error.clone()),
                    thread_watch: Err(error),
                    variant,
                };
            }
        };

        let aya_btf = aya::Btf::from_sys_fs().ok();
        let kernel = HookKernel {
            btf: aya_btf.as_ref(),
            tracepoints: tracepoints.as_deref(),
            tracepoint_errors: &tracepoint_errors,
            offsets: offsets.as_ref().map(|_| ()).map_err(String::as_str),
            drop_function: drop_target.map(|(name, _)| name),
        };
        let mut status = Vec::new();
        for hook in Hook::ALL {
            if settings.disabled.contains(&hook) {
                tracing::info!(
                    probe = hook.as_str(),
                    "not attached: turned off by the configuration"
                );
                status.push(ProbeStatus::off(hook));
                continue;
            }
            let mut hook_status = kernel.attach(&mut ebpf, hook, forced.get(&hook).copied());
            features.add_limits(variant, &mut hook_status);
            status.push(hook_status);
        }
        // Measured before the socket iterator, the sampler and the namespace watch take their
        // maps out of the object.
        let map_bytes = map_bytes(&ebpf);
        // The iterator reads socket fields at offsets from BTF, like the struct-reading hooks.
        let socket_iterator = offsets.as_ref().map_err(Clone::clone).and_then(|_| {
            tcp_sockets::load(&mut ebpf, aya_btf.as_ref()).map_err(|e| format!("{e:#}"))
        });
        match &socket_iterator {
            Ok(_) => tracing::info!("TCP sockets are counted by a socket iterator"),
            Err(error) => tracing::info!("TCP sockets are counted from the socket dump: {error}"),
        }
        let file_iterator = offsets.as_ref().map_err(Clone::clone).and_then(|_| {
            socket_files::load(&mut ebpf, aya_btf.as_ref()).map_err(|e| format!("{e:#}"))
        });
        match &file_iterator {
            Ok(()) => tracing::info!("the holders of sockets are found by a file iterator"),
            Err(error) => tracing::info!("the holders of sockets are found in /proc: {error}"),
        }
        // It reads the namespace's inode at an offset from BTF.
        let namespace_watch = offsets.as_ref().map_err(Clone::clone).and_then(|_| {
            NamespaceWatch::attach(&mut ebpf, aya_btf.as_ref()).map_err(|e| format!("{e:#}"))
        });
        match &namespace_watch {
            Ok(watch) => tracing::info!(method = watch.method(), "namespace teardown is watched"),
            Err(error) => tracing::warn!(
                "namespace teardown is not watched: counts of a namespace that no process or \
                 mount holds are forgotten at once: {error}"
            ),
        }
        // The socket hooks count exactly without it, each call in its slot.
        let thread_watch = match variant {
            ProgramVariant::BpfLoop => offsets.as_ref().map_err(Clone::clone).and_then(|_| {
                thread_watch::attach(&mut ebpf, aya_btf.as_ref()).map_err(|e| format!("{e:#}"))
            }),
            ProgramVariant::BoundedWalk => Err(variant::NO_SOCKET_MEMO.to_string()),
        };
        match &thread_watch {
            Ok(()) => tracing::info!("thread exits and cgroup moves are watched: socket memos on"),
            Err(error) => tracing::warn!(
                "thread exits and cgroup moves are not watched: each socket call counts in its \
                 slot, without a memo: {error}"
            ),
        }
        let sampler = DropSampler::take(&mut ebpf).map_err(|e| format!("{e:#}"));
        if let Err(error) = &sampler {
            tracing::warn!("drops are counted but not sampled: {error}");
        }
        Self {
            map_bytes,
            ebpf: Some((ebpf, tags)),
            status,
            reasons,
            load_error: None,
            socket_iterator,
            file_iterator,
            sampler,
            namespace_watch,
            thread_watch,
            variant,
        }
    }

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

/// What attaching a hook needs to know of the kernel, learned once for all hooks.
struct HookKernel<'a> {
    btf: Option<&'a aya::Btf>,
    /// The hooks whose tracepoint the kernel has, when its BTF tells.
    tracepoints: Option<&'a [Hook]>,
    /// Why a hook's classic tracepoint cannot be used, where it cannot.
    tracepoint_errors: &'a BTreeMap<Hook, String>,
    /// Whether the struct offsets from BTF are known, or why not.
    offsets: Result<(), &'a str>,
    /// The kernel function the drop hook's kprobe probes on this kernel.
    drop_function: Option<&'static str>,
}

impl HookKernel<'_> {
    /// Attaches `hook` by the first of its methods (or the `forced` one) that works, and says
    /// what became of it.
    fn attach(&self, ebpf: &mut Ebpf, hook: Hook, forced: Option<AttachMethod>) -> ProbeStatus {
        let methods: Vec<AttachMethod> = match forced {
            Some(method) => vec![method],
            None => AttachMethod::ALL
                .into_iter()
                .filter(|method| hook.offers(*method))
                .collect(),
        };
        let mut failures = Vec::new();
        let mut attached = None;
        for method in methods {
            let function = match hook {
                Hook::KfreeSkb => self.drop_function,
                _ => hook.function(),
            };
            let result = self.precondition(hook, method).and_then(|()| {
                attach(ebpf, hook, method, self.btf, function).map_err(|e| (format!("{e:#}"), None))
            });
            match result {
                Ok(()) => {
                    attached = Some(method);
                    break;
                }
                Err((error, needs)) => failures.push(MethodFailure::new(method, error, needs)),
            }
        }
        match attached {
            Some(method) => tracing::info!(probe = hook.as_str(), %method, "attached"),
            None => tracing::warn!(
                probe = hook.as_str(),
                failures = ?failures,
                "not attached; its counts are missing"
            ),
        }
        ProbeStatus::new(hook, attached, failures)
    }

    /// Whether `method` can work for `hook` on this kernel, or why not (and what the kernel
    /// lacks, where that is known).
    fn precondition(
        &self,
        hook: Hook,
        method: AttachMethod,
    ) -> Result<(), (String, Option<String>)> {
        let has_tracepoint = self.tracepoints.is_none_or(|hooks| hooks.contains(&hook));
        let missing_tracepoint = || {
            (
                format!("the kernel has no {} tracepoint", hook.as_str()),
                hook.tracepoint_since()
                    .map(|since| format!("Linux >= {since} for the {} tracepoint", hook.as_str())),
            )
        };
        match method {
            AttachMethod::TpBtf if self.btf.is_none() => Err((
                "the kernel has no BTF (/sys/kernel/btf/vmlinux)".to_string(),
                None,
            )),
            AttachMethod::TpBtf | AttachMethod::RawTp if !has_tracepoint => {
                Err(missing_tracepoint())
            }
            AttachMethod::Tracepoint => match self.tracepoint_errors.get(&hook) {
                Some(_) if !has_tracepoint => Err(missing_tracepoint()),
                Some(err) => Err((err.clone(), None)),
                None => Ok(()),
            },
            AttachMethod::Fexit if has_tracepoint && self.tracepoints.is_some() => Err((
                format!(
                    "the kernel has the {} tracepoint: fexit is the fallback of kernels \
                     without it",
                    hook.as_str()
                ),
                None,
            )),
            _ => Ok(()),
        }?;
        if hook.reads_structs(method) {
            self.offsets.map_err(|e| (e.to_string(), None))?;
        }
        Ok(())
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
