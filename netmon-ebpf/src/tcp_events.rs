//! `tcp:tcp_retransmit_skb`, `tcp:tcp_send_reset`, `tcp:tcp_receive_reset`: one counter each.
use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use netmon_common::Event;

use crate::events::count_event;

#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn nm_retrans_btf(_ctx: BtfTracePointContext) -> i32 {
    count_event(Event::TcpRetransmit);
    0
}

#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn nm_retrans_raw(_ctx: RawTracePointContext) -> i32 {
    count_event(Event::TcpRetransmit);
    0
}

#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn nm_retrans_tp(_ctx: TracePointContext) -> u32 {
    count_event(Event::TcpRetransmit);
    0
}

#[btf_tracepoint(function = "tcp_send_reset")]
pub fn nm_rst_tx_btf(_ctx: BtfTracePointContext) -> i32 {
    count_event(Event::TcpResetSent);
    0
}

#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub fn nm_rst_tx_raw(_ctx: RawTracePointContext) -> i32 {
    count_event(Event::TcpResetSent);
    0
}

#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn nm_rst_tx_tp(_ctx: TracePointContext) -> u32 {
    count_event(Event::TcpResetSent);
    0
}

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn nm_rst_rx_btf(_ctx: BtfTracePointContext) -> i32 {
    count_event(Event::TcpResetReceived);
    0
}

#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn nm_rst_rx_raw(_ctx: RawTracePointContext) -> i32 {
    count_event(Event::TcpResetReceived);
    0
}

#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn nm_rst_rx_tp(_ctx: TracePointContext) -> u32 {
    count_event(Event::TcpResetReceived);
    0
}
