//! `sock:sock_send_length`: data a process sent through a socket (see `socket_io`).
use aya_ebpf::{
    macros::{btf_tracepoint, fexit},
    programs::{BtfTracePointContext, FExitContext},
};
use netmon_common::processes::IO_TX;

use crate::{
    kernel::{Btf, Memory, constant},
    socket_io::count_socket_io,
};

// TP_PROTO(struct sock *sk, int ret, int flags), since Linux 6.3.
#[btf_tracepoint(function = "sock_send_length")]
pub fn nm_send_btf(ctx: BtfTracePointContext) -> i32 {
    count_socket_io(ctx.arg(0), ctx.arg(1), ctx.arg(2), IO_TX);
    0
}

/// Fallback on kernels without the tracepoint: the return of
/// `inet_sendmsg(struct socket *sock, struct msghdr *msg, size_t size)`, which every send on
/// an IPv4 socket goes through (`sock_sendmsg`, which calls it, is inlined into the system
/// calls there).
#[fexit(function = "inet_sendmsg")]
pub fn nm_send_fexit(ctx: FExitContext) -> i32 {
    on_sendmsg(&ctx);
    0
}

/// The same for IPv6 sockets: `inet6_sendmsg`.
#[fexit(function = "inet6_sendmsg")]
pub fn nm_send_fexit6(ctx: FExitContext) -> i32 {
    on_sendmsg(&ctx);
    0
}

#[inline(always)]
fn on_sendmsg(ctx: &FExitContext) {
    let sk: u64 = Btf::read(ctx.arg(0), constant!(OFFSETS.socket_sk)).unwrap_or(0);
    count_socket_io(sk, ctx.arg(3), 0, IO_TX);
}
