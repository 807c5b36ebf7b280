//! `net:net_dev_xmit`: packets and bytes handed to a device, and transmits it refused.
use aya_ebpf::{
    EbpfContext,
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use netmon_common::Event;

use crate::{
    kernel::{device_key, offsets, read, tp_fields},
    maps::{TRAFFIC, entry},
};

/// Counts one transmit on `dev`. The skb is not looked at: after a virtual device's transmit
/// it may already belong to another device, or be freed.
#[inline(always)]
fn count_xmit(dev: u64, rc: i32, len: u32) {
    let Some(key) = device_key(&offsets(), dev) else {
        return;
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
    count_xmit(ctx.arg(2), ctx.arg(1), ctx.arg(3));
    0
}

#[raw_tracepoint(tracepoint = "net_dev_xmit")]
pub fn nm_xmit_raw(ctx: RawTracePointContext) -> i32 {
    count_xmit(ctx.arg(2), ctx.arg(1), ctx.arg(3));
    0
}

/// The classic `net_dev_xmit` record has the device's name but no pointer to it, so the classic
/// method counts at `net:net_dev_start_xmit`, just before the driver gets the packet, where
/// `skb->dev` is still the transmitting device. It cannot see the driver's answer: failed
/// transmits are not counted by this method.
#[tracepoint(category = "net", name = "net_dev_start_xmit")]
pub fn nm_xmit_tp(ctx: TracePointContext) -> u32 {
    let fields = tp_fields();
    let base = ctx.as_ptr() as u64;
    let skb: u64 = read(base, fields.xmit_skb).unwrap_or(0);
    let len: u32 = read(base, fields.xmit_len).unwrap_or(0);
    let dev: u64 = read(skb, offsets().skb_dev).unwrap_or(0);
    count_xmit(dev, 0, len);
    0
}
