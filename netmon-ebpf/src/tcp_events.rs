//! `tcp:tcp_retransmit_skb`, `tcp:tcp_send_reset`, `tcp:tcp_receive_reset`: counted by the
//! socket's namespace in the TCP event table; a retransmitted SYN is also remembered for its
//! peer's connect time. A reset sent in answer to a packet for no socket
//! has no socket: it counts in the namespace of the packet's device.
use aya_ebpf::{
    EbpfContext,
    helpers::generated::bpf_skc_to_tcp_sock,
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use netmon_common::{
    slots::NAMESPACE_SLOT_EXTRA2,
    tcp_events::{TcpEvent, TcpEventKey},
};

use crate::{
    kernel::{Btf, Memory, Probe, skb_namespace, socket_namespace, tp_field},
    maps::tcp_events,
    tcp_peers::note_syn_retry,
};

#[inline(always)]
fn count_tcp_event<M: Memory>(sk: u64, skb: u64, event: TcpEvent) {
    let netns = if sk != 0 {
        socket_namespace::<M>(sk)
    } else {
        skb_namespace::<M>(skb)
    };
    let key = TcpEventKey {
        netns: netns.inode,
        event,
    };
    let table = tcp_events();
    if let Some(count) = table.counts(key.slot_id(), netns.cookie, NAMESPACE_SLOT_EXTRA2, |_| 0) {
        *count += 1;
    }
}

/// A pointer field of a classic tracepoint's record.
#[inline(always)]
fn record_pointer(ctx: &TracePointContext, offset: u32) -> u64 {
    Probe::read(ctx.as_ptr() as u64, offset).unwrap_or(0)
}

// TP_PROTO(const struct sock *sk, const struct sk_buff *skb)
// A retransmitted SYN also tells the peers when its connect began (`tcp_peers.rs`).
#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn nm_retrans_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    count_tcp_event::<Btf>(sk, 0, TcpEvent::Retransmit);
    // SAFETY: `sk` is the tracepoint's socket; the helper checks that it is TCP.
    let tcp = unsafe { bpf_skc_to_tcp_sock(sk as *mut _) } as u64;
    note_syn_retry::<Btf>(sk, tcp);
    0
}

#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn nm_retrans_raw(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    count_tcp_event::<Probe>(sk, 0, TcpEvent::Retransmit);
    note_syn_retry::<Probe>(sk, sk);
    0
}

#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn nm_retrans_tp(ctx: TracePointContext) -> u32 {
    let sk = record_pointer(&ctx, tp_field!(retransmit_sk));
    count_tcp_event::<Probe>(sk, 0, TcpEvent::Retransmit);
    note_syn_retry::<Probe>(sk, sk);
    0
}

// TP_PROTO(const struct sock *sk, const struct sk_buff *skb[, enum sk_rst_reason reason])
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn nm_rst_tx_btf(ctx: BtfTracePointContext) -> i32 {
    count_tcp_event::<Btf>(ctx.arg(0), ctx.arg(1), TcpEvent::ResetSent);
    0
}

#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub fn nm_rst_tx_raw(ctx: RawTracePointContext) -> i32 {
    count_tcp_event::<Probe>(ctx.arg(0), ctx.arg(1), TcpEvent::ResetSent);
    0
}

#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn nm_rst_tx_tp(ctx: TracePointContext) -> u32 {
    let sk = record_pointer(&ctx, tp_field!(reset_sent_sk));
    let skb = record_pointer(&ctx, tp_field!(reset_sent_skb));
    count_tcp_event::<Probe>(sk, skb, TcpEvent::ResetSent);
    0
}

// TP_PROTO(struct sock *sk)
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn nm_rst_rx_btf(ctx: BtfTracePointContext) -> i32 {
    count_tcp_event::<Btf>(ctx.arg(0), 0, TcpEvent::ResetReceived);
    0
}

#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn nm_rst_rx_raw(ctx: RawTracePointContext) -> i32 {
    count_tcp_event::<Probe>(ctx.arg(0), 0, TcpEvent::ResetReceived);
    0
}

#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn nm_rst_rx_tp(ctx: TracePointContext) -> u32 {
    let sk = record_pointer(&ctx, tp_field!(reset_received_sk));
    count_tcp_event::<Probe>(sk, 0, TcpEvent::ResetReceived);
    0
}
