//! `sock:sock_recv_length`: data a process received through a socket (see `socket_io`).
use aya_ebpf::{
    macros::{btf_tracepoint, fexit},
    programs::{BtfTracePointContext, FExitContext},
};
use netmon_common::processes::IO_RX;

use crate::{
    kernel::{Btf, Memory, constant},
    socket_io::count_socket_io,
};

// TP_PROTO(struct sock *sk, int ret, int flags), since Linux 6.3.
#[btf_tracepoint(function = "sock_recv_length")]
pub fn nm_sockrecv_btf(ctx: BtfTracePointContext) -> i32 {
    count_socket_io(ctx.arg(0), ctx.arg(1), ctx.arg(2), IO_RX);
    0
}

/// Fallback on kernels without the tracepoint: the return of
/// `inet_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)`, which
/// every receive on an IPv4 socket goes through.
#[fexit(function = "inet_recvmsg")]
pub fn nm_sockrecv_fexit(ctx: FExitContext) -> i32 {
    on_recvmsg(&ctx);
    0
}

/// The same for IPv6 sockets: `inet6_recvmsg`.
#[fexit(function = "inet6_recvmsg")]
pub fn nm_sockrecv_fexit6(ctx: FExitContext) -> i32 {
    on_recvmsg(&ctx);
    0
}

#[inline(always)]
fn on_recvmsg(ctx: &FExitContext) {
    let sk: u64 = Btf::read(ctx.arg(0), constant!(OFFSETS.socket_sk)).unwrap_or(0);
    count_socket_io(sk, ctx.arg(4), ctx.arg(3), IO_RX);
}
