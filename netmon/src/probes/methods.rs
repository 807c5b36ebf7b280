//! Choosing each hook's attach method: the first of its methods this kernel can run (or the
//! one the configuration pins), and why each other failed.
use std::collections::BTreeMap;

use aya::Ebpf;

use crate::{
    model::probes::{AttachMethod, Hook, MethodFailure, ProbeStatus},
    probes::attach::attach,
};

/// What attaching a hook needs to know of the kernel, learned once for all hooks.
pub(super) struct HookKernel<'a> {
    pub(super) btf: Option<&'a aya::Btf>,
    /// The hooks whose tracepoint the kernel has, when its BTF tells.
    pub(super) tracepoints: Option<&'a [Hook]>,
    /// Why a hook's classic tracepoint cannot be used, where it cannot.
    pub(super) tracepoint_errors: &'a BTreeMap<Hook, String>,
    /// Whether the struct offsets from BTF are known, or why not.
    pub(super) offsets: Result<(), &'a str>,
    /// The kernel function the drop hook's kprobe probes on this kernel.
    pub(super) drop_function: Option<&'static str>,
}

impl HookKernel<'_> {
    /// Attaches `hook` by the first of its methods (or the `forced` one) that works, and says
    /// what became of it.
    pub(super) fn attach(
        &self,
        ebpf: &mut Ebpf,
        hook: Hook,
        forced: Option<AttachMethod>,
    ) -> ProbeStatus {
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
