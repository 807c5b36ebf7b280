//! Namespace teardown: `__put_net`, which the kernel calls once, when the last reference to a
//! network namespace goes. The namespace's inode goes to the agent, which forgets its counts
//! then, and not before: a namespace that no process or mount holds may still live (a socket
//! keeps it), and keeps counting. fentry where the kernel has BTF, a kprobe otherwise.
use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use netmon_common::events::Event;

use crate::{
    events::count_event,
    kernel::{Btf, Memory, Probe, constant, offsets_known},
    maps::GONE_NAMESPACES,
};

#[inline(always)]
fn namespace_gone<M: Memory>(net: u64) {
    if !offsets_known() {
        return;
    }
    let Some(inode) = M::read::<u32>(net, constant!(OFFSETS.net_inum)) else {
        return;
    };
    if GONE_NAMESPACES.output::<u32>(&inode, 0).is_err() {
        count_event(Event::NamespaceNoticeLost);
    }
}

// void __put_net(struct net *net)
#[fentry(function = "__put_net")]
pub fn nm_netns_fentry(ctx: FEntryContext) -> i32 {
    namespace_gone::<Btf>(ctx.arg(0));
    0
}

#[kprobe]
pub fn nm_netns_kprobe(ctx: ProbeContext) -> u32 {
    namespace_gone::<Probe>(ctx.arg(0).unwrap_or(0));
    0
}
