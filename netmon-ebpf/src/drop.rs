//! `skb:kfree_skb`: packets the kernel dropped, by namespace, device, protocol and reason,
//! and samples of them with their flow and where they died (`samples`). Normal frees
//! (`SKB_NOT_DROPPED_YET`, `SKB_CONSUMED`) are not drops and are skipped.
use aya_ebpf::{
    EbpfContext,
    macros::{btf_tracepoint, kprobe, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use netmon_common::drops::DROP_REASON_UNKNOWN;

use crate::{
    kernel::{Btf, Memory, Probe, constant, offset_skb_protocol, skb_device, tp_field},
    maps::drops,
    samples::sample_drop,
};

#[inline(always)]
fn count_drop<M: Memory>(skb: u64, reason: u32, location: u64) {
    if reason == constant!(NORMAL_FREE.not_dropped_yet) || reason == constant!(NORMAL_FREE.consumed)
    {
        return;
    }
    let protocol: u16 = M::read(skb, offset_skb_protocol()).unwrap_or(0);
    let device = skb_device::<M>(skb);
    let id = &device.identity;
    let ethertype = u16::from_be(protocol);
    let extra2 = id.drop_extra2(reason, ethertype);
    let claim = |_| device.meta::<M>();
    if let Some(count) = drops().counts(id.device, id.cookie, extra2, claim) {
        *count += 1;
    }
    sample_drop::<M>(skb, ethertype, reason, location, || device.meta::<M>());
}

/// The drop's reason, the tracepoint's third argument where it has one: kernels before 5.17
/// have none, and there the verifier, which follows only the branch the constant takes, never
/// sees the read.
#[inline(always)]
fn tracepoint_reason(third: impl FnOnce() -> u32) -> u32 {
    if tp_field!(drop_reason_argument) != 0 {
        third()
    } else {
        DROP_REASON_UNKNOWN
    }
}

// TP_PROTO(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...); the reason
// since 5.17.
#[btf_tracepoint(function = "kfree_skb")]
pub fn nm_drop_btf(ctx: BtfTracePointContext) -> i32 {
    count_drop::<Btf>(ctx.arg(0), tracepoint_reason(|| ctx.arg(2)), ctx.arg(1));
    0
}

#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn nm_drop_raw(ctx: RawTracePointContext) -> i32 {
    count_drop::<Probe>(ctx.arg(0), tracepoint_reason(|| ctx.arg(2)), ctx.arg(1));
    0
}

#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn nm_drop_tp(ctx: TracePointContext) -> u32 {
    let base = ctx.as_ptr() as u64;
    let skb: u64 = Probe::read(base, tp_field!(drop_skb)).unwrap_or(0);
    let reason = if tp_field!(drop_reason_present) != 0 {
        Probe::read(base, tp_field!(drop_reason)).unwrap_or(DROP_REASON_UNKNOWN)
    } else {
        DROP_REASON_UNKNOWN
    };
    let location: u64 = Probe::read(base, tp_field!(drop_location)).unwrap_or(0);
    count_drop::<Probe>(skb, reason, location);
    0
}

/// Fallback where the tracepoint is missing: the kernel's drop function, whose arguments the
/// agent describes in `DROP_PROBE_ARGS`. Its samples have no location: the function is the
/// same for every drop, and its caller is not among its arguments.
#[kprobe]
pub fn nm_drop_kprobe(ctx: ProbeContext) -> u32 {
    // Registers are read at constant indices: the verifier refuses a context access at an
    // offset only known at run time.
    let registers: [u64; 3] = [
        ctx.arg(0).unwrap_or(0),
        ctx.arg(1).unwrap_or(0),
        ctx.arg(2).unwrap_or(0),
    ];
    let pick = |index: u32| match index {
        0 => registers[0],
        1 => registers[1],
        _ => registers[2],
    };
    let reason = if constant!(DROP_PROBE_ARGS.reason_present) != 0 {
        pick(constant!(DROP_PROBE_ARGS.reason_arg)) as u32
    } else {
        DROP_REASON_UNKNOWN
    };
    count_drop::<Probe>(pick(constant!(DROP_PROBE_ARGS.skb_arg)), reason, 0);
    0
}
