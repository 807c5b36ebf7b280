//! `net:netif_receive_skb`: packets and bytes a device received.
use aya_ebpf::{
    EbpfContext,
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use netmon_common::Event;

use crate::{
    kernel::{offsets, read, skb_interface, tp_fields},
    maps::{TRAFFIC, entry},
};

#[inline(always)]
fn count_receive(skb: u64) {
    let off = offsets();
    let len: u32 = read(skb, off.skb_len).unwrap_or(0);
    let key = skb_interface(&off, skb);
    if let Some(traffic) = entry(&TRAFFIC, &key, Event::TrafficMapFull) {
        // SAFETY: this CPU's value, written only by programs running on this CPU.
        let traffic = unsafe { &mut *traffic };
        traffic.rx_packets += 1;
        traffic.rx_bytes += len as u64;
    }
}

// TP_PROTO(struct sk_buff *skb)
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn nm_recv_btf(ctx: BtfTracePointContext) -> i32 {
    count_receive(ctx.arg(0));
    0
}

#[raw_tracepoint(tracepoint = "netif_receive_skb")]
pub fn nm_recv_raw(ctx: RawTracePointContext) -> i32 {
    count_receive(ctx.arg(0));
    0
}

#[tracepoint(category = "net", name = "netif_receive_skb")]
pub fn nm_recv_tp(ctx: TracePointContext) -> u32 {
    let skb: u64 = read(ctx.as_ptr() as u64, tp_fields().recv_skb).unwrap_or(0);
    count_receive(skb);
    0
}
