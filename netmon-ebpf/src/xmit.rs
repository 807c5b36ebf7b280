//! `net:net_dev_xmit`: packets and bytes handed to a device, and transmits it refused.
use aya_ebpf::{
    EbpfContext,
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use netmon_common::Event;

use crate::{
    kernel::{device_key, offsets, read, skb_interface, tp_fields},
    maps::{TRAFFIC, entry},
};

#[inline(always)]
fn count_xmit(skb: u64, rc: i32, dev: u64, len: u32) {
    let off = offsets();
    let key = match device_key(&off, dev) {
        Some(key) => key,
        None => skb_interface(&off, skb),
    };
    if let Some(traffic) = entry(&TRAFFIC, &key, Event::TrafficMapFull) {
        // SAFETY: this CPU's value, written only by programs running on this CPU.
        let traffic = unsafe { &mut *traffic };
        if rc == 0 {
            traffic.tx_packets += 1;
            traffic.tx_bytes += len as u64;
        } else {
            traffic.tx_failed += 1;
        }
    }
}

// TP_PROTO(struct sk_buff *skb, int rc, struct net_device *dev, unsigned int skb_len)
#[btf_tracepoint(function = "net_dev_xmit")]
pub fn nm_xmit_btf(ctx: BtfTracePointContext) -> i32 {
    count_xmit(ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg(3));
    0
}

#[raw_tracepoint(tracepoint = "net_dev_xmit")]
pub fn nm_xmit_raw(ctx: RawTracePointContext) -> i32 {
    count_xmit(ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg(3));
    0
}

#[tracepoint(category = "net", name = "net_dev_xmit")]
pub fn nm_xmit_tp(ctx: TracePointContext) -> u32 {
    let fields = tp_fields();
    let base = ctx.as_ptr() as u64;
    let skb: u64 = read(base, fields.xmit_skb).unwrap_or(0);
    let rc: i32 = read(base, fields.xmit_rc).unwrap_or(0);
    let len: u32 = read(base, fields.xmit_len).unwrap_or(0);
    let dev: u64 = read(skb, offsets().skb_dev).unwrap_or(0);
    count_xmit(skb, rc, dev, len);
    0
}
