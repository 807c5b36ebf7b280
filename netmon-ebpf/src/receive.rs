//! `net:netif_receive_skb`: packets and bytes a device received.
use aya_ebpf::{
    EbpfContext,
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};

use crate::{
    kernel::{Btf, Memory, Probe, offset_skb_len, skb_device, tp_field},
    maps::traffic,
};

#[inline(always)]
fn count_receive<M: Memory>(skb: u64) {
    let len: u32 = M::read(skb, offset_skb_len()).unwrap_or(0);
    let device = skb_device::<M>(skb);
    let id = &device.identity;
    let claim = |_| device.meta::<M>();
    if let Some(traffic) = traffic().counts(id.device, id.cookie, id.traffic_extra2(), claim) {
        traffic.rx_packets += 1;
        traffic.rx_bytes += len as u64;
    }
}

// TP_PROTO(struct sk_buff *skb)
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn nm_recv_btf(ctx: BtfTracePointContext) -> i32 {
    count_receive::<Btf>(ctx.arg(0));
    0
}

#[raw_tracepoint(tracepoint = "netif_receive_skb")]
pub fn nm_recv_raw(ctx: RawTracePointContext) -> i32 {
    count_receive::<Probe>(ctx.arg(0));
    0
}

#[tracepoint(category = "net", name = "netif_receive_skb")]
pub fn nm_recv_tp(ctx: TracePointContext) -> u32 {
    let skb: u64 = Probe::read(ctx.as_ptr() as u64, tp_field!(recv_skb)).unwrap_or(0);
    count_receive::<Probe>(skb);
    0
}
