//! `net:net_dev_xmit`: packets and bytes handed to a device, and transmits it refused.
use aya_ebpf::{
    EbpfContext,
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};

use crate::{
    kernel::{Btf, Memory, Probe, device, offset_skb_dev, tp_field},
    maps::traffic,
};

/// Counts one transmit on `dev`. The skb is not looked at: after a virtual device's transmit
/// it may already belong to another device, or be freed.
#[inline(always)]
fn count_xmit<M: Memory>(dev: u64, rc: i32, len: u32) {
    let Some(device) = device::<M>(dev) else {
        return;
    };
    let id = &device.identity;
    let claim = |_| device.meta::<M>();
    if let Some(traffic) = traffic().counts(id.device, id.cookie, id.traffic_extra2(), claim) {
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
    count_xmit::<Btf>(ctx.arg(2), ctx.arg(1), ctx.arg(3));
    0
}

#[raw_tracepoint(tracepoint = "net_dev_xmit")]
pub fn nm_xmit_raw(ctx: RawTracePointContext) -> i32 {
    count_xmit::<Probe>(ctx.arg(2), ctx.arg(1), ctx.arg(3));
    0
}

/// The classic `net_dev_xmit` record has the device's name but no pointer to it, so the classic
/// method counts at `net:net_dev_start_xmit`, just before the driver gets the packet, where
/// `skb->dev` is still the transmitting device. It cannot see the driver's answer: failed
/// transmits are not counted by this method.
#[tracepoint(category = "net", name = "net_dev_start_xmit")]
pub fn nm_xmit_tp(ctx: TracePointContext) -> u32 {
    let base = ctx.as_ptr() as u64;
    let skb: u64 = Probe::read(base, tp_field!(xmit_skb)).unwrap_or(0);
    let len: u32 = Probe::read(base, tp_field!(xmit_len)).unwrap_or(0);
    let dev: u64 = Probe::read(skb, offset_skb_dev()).unwrap_or(0);
    count_xmit::<Probe>(dev, 0, len);
    0
}
