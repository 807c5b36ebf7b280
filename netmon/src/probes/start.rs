//! Starting the probes: learning what this kernel offers, loading the object with it,
//! attaching each hook by the method chosen for it, and the optional features (iterators,
//! watches, the drop sampler), each of which may fail on its own.
use std::collections::BTreeMap;

use aya::{Ebpf, EbpfLoader};
use netmon_common::{
    CPU_REGION_MAPS,
    drops::DROP_REASON_UNKNOWN,
    kernel_layout::{KernelOffsets, NormalFreeReasons},
    traffic,
};

use crate::{
    model::probes::{Hook, ProbeStatus, ProgramVariant},
    probes::{
        DropReasonNames, ProbeSettings, Probes,
        btf::Btf,
        layout::{drop_kprobe_target, kernel_offsets, tracepoint_fields},
        methods::HookKernel,
        namespaces::NamespaceWatch,
        samples::DropSampler,
        slots, socket_files,
        tables::{TableSizes, TableTags, map_bytes},
        tcp_sockets, thread_watch,
        variant::{self, KernelFeatures},
    },
};

/// What the kernel's BTF tells, learned before the object loads.
struct Learned {
    reasons: DropReasonNames,
    /// Struct offsets, or why they are unknown.
    offsets: Result<KernelOffsets, String>,
    features: KernelFeatures,
    /// Hooks whose tracepoint this kernel has, when its BTF tells.
    tracepoints: Option<Vec<Hook>>,
}

/// Each parse of the kernel's BTF holds tens of MiB while it lives: this one gives its
/// answers and goes before aya parses its own.
fn learn() -> Learned {
    let btf = Btf::from_sys_fs();
    // Hooks whose tracepoint this kernel has: their fexit fallback is for kernels without it.
    let tracepoints = btf.as_ref().ok().map(|btf| {
        let hooks = Hook::ALL.into_iter();
        hooks
            .filter(|hook| btf.has_tracepoint(hook.as_str()))
            .collect()
    });
    let offsets = btf.as_ref().map_err(|e| format!("{e:#}")).and_then(|btf| {
        kernel_offsets(btf).map_err(|e| format!("kernel struct layout from BTF: {e:#}"))
    });
    Learned {
        reasons: btf
            .as_ref()
            .map(DropReasonNames::from_btf)
            .unwrap_or_default(),
        offsets,
        features: KernelFeatures::from_btf(btf.as_ref().ok()),
        tracepoints,
    }
}

/// The optional features, each loaded or with the reason it is not.
struct Extras {
    socket_iterator: Result<tcp_sockets::Tally, String>,
    file_iterator: Result<(), String>,
    namespace_watch: Result<NamespaceWatch, String>,
    thread_watch: Result<(), String>,
}

impl Probes {
    /// Loads the embedded object and attaches every hook, each on its own. Never fails: what
    /// did not work is in [`Probes::status`].
    pub fn start(settings: &ProbeSettings) -> Self {
        let learned = learn();
        let variant = learned.features.variant(settings.variant);
        // Read up front, as the object takes them at load.
        let (mut fields, tracepoint_errors) = tracepoint_fields();
        fields.drop_reason_argument = u32::from(learned.features.drop_reasons);
        let drop_target = drop_kprobe_target();
        let sizes = TableSizes::new(settings);
        // The loader parses the kernel's BTF for itself and is gone once it returns, before
        // the attach below parses it again: one parse lives at a time.
        let loaded = slots::possible_cpus().and_then(|cpus| {
            let mut loader = EbpfLoader::new();
            let object_offsets = learned.offsets.clone().unwrap_or_default();
            let drop_args = drop_target.map(|(_, args)| args).unwrap_or_default();
            let normal = normal_free_reasons(&learned.reasons);
            let masks = sizes.masks();
            loader
                .override_global("OFFSETS", &object_offsets, true)
                .override_global("TP_FIELDS", &fields, true)
                .override_global("DROP_PROBE_ARGS", &drop_args, true)
                .override_global("NORMAL_FREE", &normal, true)
                .override_global("SLOT_MASKS", &masks, true)
                .map_max_entries(traffic::TAGS, sizes.of(&traffic::TABLE))
                .map_max_entries(traffic::COUNTS, sizes.of(&traffic::TABLE))
                .map_max_entries(traffic::CLAIMS, sizes.of(&traffic::TABLE));
            for (name, per_cpu) in CPU_REGION_MAPS {
                loader.map_max_entries(name, per_cpu * cpus);
            }
            let ebpf = loader.load(variant::object(variant))?;
            let tags = TableTags::map(&ebpf, sizes, cpus)?;
            Ok((ebpf, tags))
        });
        let (mut ebpf, tags) = match loaded {
            Ok(loaded) => loaded,
            Err(err) => return Self::unloaded(&format!("{err:#}"), learned.reasons, variant),
        };
        let aya_btf = aya::Btf::from_sys_fs().ok();
        let kernel = HookKernel {
            btf: aya_btf.as_ref(),
            tracepoints: learned.tracepoints.as_deref(),
            tracepoint_errors: &tracepoint_errors,
            offsets: learned.offsets.as_ref().map(|_| ()).map_err(String::as_str),
            drop_function: drop_target.map(|(name, _)| name),
        };
        let status = attach_hooks(&mut ebpf, &kernel, settings, &learned.features, variant);
        // Measured before the iterators, the sampler and the namespace watch take their maps
        // out of the object.
        let map_bytes = map_bytes(&ebpf);
        let extras = extras(&mut ebpf, &learned.offsets, aya_btf.as_ref(), variant);
        let sampler = DropSampler::take(&mut ebpf).map_err(|e| format!("{e:#}"));
        if let Err(error) = &sampler {
            tracing::warn!("drops are counted but not sampled: {error}");
        }
        Self {
            map_bytes,
            ebpf: Some((ebpf, tags)),
            status,
            reasons: learned.reasons,
            load_error: None,
            socket_iterator: extras.socket_iterator,
            file_iterator: extras.file_iterator,
            sampler,
            namespace_watch: extras.namespace_watch,
            thread_watch: extras.thread_watch,
            variant,
        }
    }

    /// Probes that serve host statistics only: the object could not be loaded.
    fn unloaded(err: &str, reasons: DropReasonNames, variant: ProgramVariant) -> Self {
        let error =
            format!("loading eBPF object: {err} (netmon needs root, or CAP_BPF and CAP_PERFMON)");
        tracing::error!("{error}; serving host statistics only");
        let status = Hook::ALL
            .into_iter()
            .map(|probe| ProbeStatus::new(probe, None, vec![]))
            .collect();
        Self {
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
        }
    }
}

/// The values of `enum skb_drop_reason` that mean "not a drop". Older kernels lack one or
/// both names; a value no reason takes then matches nothing.
fn normal_free_reasons(reasons: &DropReasonNames) -> NormalFreeReasons {
    let no_such_reason = DROP_REASON_UNKNOWN - 1;
    NormalFreeReasons {
        not_dropped_yet: reasons
            .value("SKB_NOT_DROPPED_YET")
            .unwrap_or(no_such_reason),
        consumed: reasons.value("SKB_CONSUMED").unwrap_or(no_such_reason),
    }
}

/// Attaches every hook the configuration has not turned off, each by the method chosen.
fn attach_hooks(
    ebpf: &mut Ebpf,
    kernel: &HookKernel,
    settings: &ProbeSettings,
    features: &KernelFeatures,
    variant: ProgramVariant,
) -> Vec<ProbeStatus> {
    let forced: &BTreeMap<Hook, _> = &settings.forced;
    let mut status = Vec::new();
    for hook in Hook::ALL {
        if settings.disabled.contains(&hook) {
            let probe = hook.as_str();
            tracing::info!(probe, "not attached: turned off by the configuration");
            status.push(ProbeStatus::off(hook));
            continue;
        }
        let mut hook_status = kernel.attach(ebpf, hook, forced.get(&hook).copied());
        features.add_limits(variant, &mut hook_status);
        status.push(hook_status);
    }
    status
}

/// Loads a feature that, like the struct-reading hooks, reads kernel structures at offsets
/// from BTF.
fn with_offsets<T>(
    offsets: &Result<KernelOffsets, String>,
    load: impl FnOnce() -> anyhow::Result<T>,
) -> Result<T, String> {
    let offsets = offsets.as_ref().map_err(Clone::clone);
    offsets.and_then(|_| load().map_err(|e| format!("{e:#}")))
}

/// Loads the iterators and attaches the watches, each on its own, and says how each went.
fn extras(
    ebpf: &mut Ebpf,
    offsets: &Result<KernelOffsets, String>,
    btf: Option<&aya::Btf>,
    variant: ProgramVariant,
) -> Extras {
    let socket_iterator = with_offsets(offsets, || tcp_sockets::load(ebpf, btf));
    match &socket_iterator {
        Ok(_) => tracing::info!("TCP sockets are counted by a socket iterator"),
        Err(error) => tracing::info!("TCP sockets are counted from the socket dump: {error}"),
    }
    let file_iterator = with_offsets(offsets, || socket_files::load(ebpf, btf));
    match &file_iterator {
        Ok(()) => tracing::info!("the holders of sockets are found by a file iterator"),
        Err(error) => tracing::info!("the holders of sockets are found in /proc: {error}"),
    }
    let namespace_watch = with_offsets(offsets, || NamespaceWatch::attach(ebpf, btf));
    match &namespace_watch {
        Ok(watch) => tracing::info!(method = watch.method(), "namespace teardown is watched"),
        Err(error) => tracing::warn!(
            "namespace teardown is not watched: counts of a namespace that no process or \
             mount holds are forgotten at once: {error}"
        ),
    }
    // The socket hooks count exactly without it, each call in its slot.
    let thread_watch = match variant {
        ProgramVariant::BpfLoop => with_offsets(offsets, || thread_watch::attach(ebpf, btf)),
        ProgramVariant::BoundedWalk => Err(variant::NO_SOCKET_MEMO.to_string()),
    };
    match &thread_watch {
        Ok(()) => tracing::info!("thread exits and cgroup moves are watched: socket memos on"),
        Err(error) => tracing::warn!(
            "thread exits and cgroup moves are not watched: each socket call counts in its \
             slot, without a memo: {error}"
        ),
    }
    Extras {
        socket_iterator,
        file_iterator,
        namespace_watch,
        thread_watch,
    }
}
