//! Which build of the kernel programs the running kernel takes, told from what its BTF says
//! it offers (not from its version), and what the kernel withholds from the hooks.
use crate::model::probes::{Hook, ProbeStatus, ProgramVariant};

use super::btf::Btf;

/// The programs for kernels with `bpf_loop`, embedded at build time.
static BPF_LOOP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netmon"));
/// The same programs for older kernels (built with `bounded-walk`).
static BOUNDED_WALK_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netmon-bounded-walk"));

/// What the programs use that a kernel may lack, as its BTF tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct KernelFeatures {
    /// The `bpf_loop` helper (Linux 5.17; with it, callbacks from 5.13, compare-and-swap from
    /// 5.12 and `bpf_get_current_task_btf` from 5.11).
    pub(super) bpf_loop: bool,
    /// Drop reasons: `enum skb_drop_reason`, which came with the reason argument of the
    /// `kfree_skb` tracepoint (Linux 5.17).
    pub(super) drop_reasons: bool,
    /// BTF itself, which gives the offsets of the kernel's structures.
    pub(super) btf: bool,
}

impl KernelFeatures {
    /// Read from the kernel's BTF; without BTF, nothing is assumed.
    pub(super) fn from_btf(btf: Option<&Btf>) -> Self {
        let helpers = btf.and_then(|btf| btf.enum_values("bpf_func_id"));
        Self {
            bpf_loop: helpers.is_some_and(|h| h.iter().any(|(name, _)| name == "BPF_FUNC_loop")),
            drop_reasons: btf.is_some_and(|btf| btf.enum_values("skb_drop_reason").is_some()),
            btf: btf.is_some(),
        }
    }

    /// The build of the programs to load: the configuration's where it names one, else the
    /// fastest this kernel takes.
    pub(super) fn variant(self, forced: Option<ProgramVariant>) -> ProgramVariant {
        forced.unwrap_or(if self.bpf_loop {
            ProgramVariant::BpfLoop
        } else {
            ProgramVariant::BoundedWalk
        })
    }

    /// Adds to an attached hook's limits what this kernel and `variant` withhold from it.
    pub(super) fn add_limits(self, variant: ProgramVariant, status: &mut ProbeStatus) {
        if status.method.is_none() {
            return;
        }
        if status.probe == Hook::KfreeSkb && !self.drop_reasons {
            status.limit(NO_DROP_REASON);
        }
        if status.probe == Hook::InetSockSetState && !self.btf {
            status.limit(NO_OFFSETS);
        }
        let socket_hook = matches!(status.probe, Hook::SockSendLength | Hook::SockRecvLength);
        if socket_hook && variant == ProgramVariant::BoundedWalk {
            status.limit(NO_SOCKET_MEMO);
        }
    }
}

/// The object of `variant`'s programs.
pub(super) fn object(variant: ProgramVariant) -> &'static [u8] {
    match variant {
        ProgramVariant::BpfLoop => BPF_LOOP_OBJECT,
        ProgramVariant::BoundedWalk => BOUNDED_WALK_OBJECT,
    }
}

/// The drop hook's limit on kernels before 5.17.
const NO_DROP_REASON: &str = "no drop reason (needs Linux >= 5.17): drops are counted under \
     reason \"unknown\" by device and protocol, and their samples name the kernel function \
     that freed the packet";

/// What the state hook's classic tracepoint cannot do without BTF.
const NO_OFFSETS: &str = "no BTF, so no structure offsets (needs a kernel built with \
     CONFIG_DEBUG_INFO_BTF): transitions count under namespace 0, and connections are not \
     counted by peer";

/// Why the socket memos are off in the programs for kernels without `bpf_loop`.
pub(super) const NO_SOCKET_MEMO: &str = "no per-CPU memo of the calling thread (needs Linux >= \
     5.17, the programs with bpf_loop): each call counts in its process's slot, exactly and \
     at a higher cost";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::probes::AttachMethod;

    #[test]
    fn the_variant_follows_bpf_loop_unless_the_configuration_names_one() {
        let old = KernelFeatures {
            bpf_loop: false,
            drop_reasons: false,
            btf: true,
        };
        let new = KernelFeatures {
            bpf_loop: true,
            drop_reasons: true,
            btf: true,
        };
        assert_eq!(old.variant(None), ProgramVariant::BoundedWalk);
        assert_eq!(new.variant(None), ProgramVariant::BpfLoop);
        assert_eq!(
            new.variant(Some(ProgramVariant::BoundedWalk)),
            ProgramVariant::BoundedWalk
        );
    }

    #[test]
    fn an_old_kernel_names_what_its_hooks_lack() {
        let old = KernelFeatures {
            bpf_loop: false,
            drop_reasons: false,
            btf: true,
        };
        let variant = old.variant(None);
        let mut drop = ProbeStatus::new(Hook::KfreeSkb, Some(AttachMethod::TpBtf), vec![]);
        old.add_limits(variant, &mut drop);
        assert!(drop.limits.unwrap().contains("needs Linux >= 5.17"));
        let mut send = ProbeStatus::new(Hook::SockSendLength, Some(AttachMethod::Fexit), vec![]);
        old.add_limits(variant, &mut send);
        assert!(send.limits.unwrap().contains("no per-CPU memo"));
        let mut xmit = ProbeStatus::new(Hook::NetDevXmit, Some(AttachMethod::TpBtf), vec![]);
        old.add_limits(variant, &mut xmit);
        assert_eq!(xmit.limits, None);
        let mut state = ProbeStatus::new(Hook::InetSockSetState, Some(AttachMethod::TpBtf), vec![]);
        old.add_limits(variant, &mut state);
        assert_eq!(state.limits, None);
        let no_btf = KernelFeatures { btf: false, ..old };
        no_btf.add_limits(variant, &mut state);
        assert!(state.limits.unwrap().contains("not counted by peer"));
    }
}
