//! `sock:inet_sock_set_state` (TCP only): transitions per family, the handshake times of
//! active (`SYN_SENT` -> `ESTABLISHED`) and passive (`SYN_RECV` -> `ESTABLISHED`) opens, as the
//! kernel measured them, and by peer (`tcp_peers.rs`) each open's result and time and each
//! connection's totals as it closes. Nothing is remembered between two transitions but the
//! start of a connect whose SYN was retried, which the retransmit hook notes.
use core::intrinsics::{AtomicOrdering::SeqCst, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    helpers::generated::bpf_skc_to_tcp_sock,
    macros::{btf_tracepoint, kprobe, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use netmon_common::{
    handshakes::{HANDSHAKE_ACTIVE, HANDSHAKE_BUCKETS, HANDSHAKE_PASSIVE, HandshakeKey},
    slots::NAMESPACE_SLOT_EXTRA2,
    transitions::TransitionKey,
};

use crate::{
    kernel::{
        AF_INET, AF_INET6, Btf, IPPROTO_TCP, Memory, Namespace, Probe, constant, socket_namespace,
        tp_field,
    },
    maps::{HANDSHAKES, handshake_slots, transitions},
    tcp_peers::{Change, TCP_ESTABLISHED, TCP_SYN_RECV, TCP_SYN_SENT, count_peer},
};

/// floor(log2(v)) for v > 0, 0 for 0; BPF has no count-leading-zeros instruction.
#[inline(always)]
fn log2(mut v: u64) -> u32 {
    let mut r = 0;
    if v >= 1 << 32 {
        v >>= 32;
        r += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        r += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        r += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        r += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        r += 2;
    }
    if v >= 1 << 1 {
        r += 1;
    }
    r
}

/// Counts a completed handshake, if this transition completes one. Its duration is the
/// kernel's own round-trip sample of the handshake, which `srtt_us` holds (times 8) at this
/// moment: SYN to SYN-ACK for an active open, SYN-ACK to ACK for a passive one.
#[inline(always)]
fn count_handshake(netns: Namespace, srtt_us: impl Fn() -> u32, old: u32, new: u32) {
    if new != TCP_ESTABLISHED || (old != TCP_SYN_SENT && old != TCP_SYN_RECV) {
        return;
    }
    let open = if old == TCP_SYN_SENT {
        HANDSHAKE_ACTIVE
    } else {
        HANDSHAKE_PASSIVE
    };
    let elapsed_us = (srtt_us() >> 3) as u64;
    let bucket = (log2(elapsed_us) as usize).min(HANDSHAKE_BUCKETS - 1);
    let key = HandshakeKey {
        netns: netns.inode,
        open,
    };
    let slot = handshake_slots().find(key.slot_id(), netns.cookie, NAMESPACE_SLOT_EXTRA2, |_| 0);
    let Some(index) = slot else {
        return;
    };
    if let Some(histogram) = HANDSHAKES.get_ptr_mut(index) {
        // SAFETY: a map value shared by all CPUs, only ever added to atomically.
        unsafe {
            if let Some(count) = (*histogram).buckets.get_mut(bucket) {
                atomic_xadd::<u64, u64, { SeqCst }>(count, 1);
            }
            atomic_xadd::<u64, u64, { SeqCst }>(&raw mut (*histogram).sum_ns, elapsed_us * 1000);
        }
    }
}

/// Counts one transition of a TCP socket in namespace `netns`; `srtt_us()` reads the socket's
/// smoothed round-trip time, asked for only when a handshake completes.
#[inline(always)]
fn count_transition(netns: Namespace, srtt_us: impl Fn() -> u32, family: u16, old: u32, new: u32) {
    if family != AF_INET && family != AF_INET6 {
        return;
    }
    let key = TransitionKey {
        netns: netns.inode,
        family: family as u8,
        old_state: old as u8,
        new_state: new as u8,
        _pad: 0,
    };
    let table = transitions();
    if let Some(count) = table.counts(key.slot_id(), netns.cookie, NAMESPACE_SLOT_EXTRA2, |_| 0) {
        *count += 1;
    }
    count_handshake(netns, srtt_us, old, new);
}

/// Entry shared by the BTF-typed and raw tracepoints, which see the `struct sock *`; `tcp()`
/// gives the same socket as a `struct tcp_sock *`.
#[inline(always)]
fn on_set_state<M: Memory>(sk: u64, tcp: impl Fn() -> u64, old: u32, new: u32) {
    if constant!(OFFSETS.sk_protocol_readable) != 0 {
        match M::read::<u16>(sk, constant!(OFFSETS.sk_protocol)) {
            Some(IPPROTO_TCP) => {}
            _ => return,
        }
    }
    let family: u16 = M::read(sk, constant!(OFFSETS.sk_family)).unwrap_or(0);
    count_state_change::<M>(sk, tcp, family, old, new);
}

/// Counts one state change of the TCP socket `sk`, which every entry of the hook sees: the
/// transition, the handshake it completes, and what it tells of the socket's peer.
#[inline(always)]
fn count_state_change<M: Memory>(sk: u64, tcp: impl Fn() -> u64, family: u16, old: u32, new: u32) {
    let netns = socket_namespace::<M>(sk);
    let srtt_us = || M::read::<u32>(tcp(), constant!(OFFSETS.tcp_srtt_us)).unwrap_or(0);
    count_transition(netns, srtt_us, family, old, new);
    let change = Change {
        sk,
        tcp,
        netns,
        family,
        old,
        new,
    };
    count_peer::<M, _>(&change);
}

// TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn nm_state_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    // The argument is typed `struct sock *`: the kernel gives it as a `struct tcp_sock *`.
    // SAFETY: `sk` is the tracepoint's socket; the helper checks that it is TCP.
    let tcp = || unsafe { bpf_skc_to_tcp_sock(sk as *mut _) } as u64;
    on_set_state::<Btf>(sk, tcp, ctx.arg(1), ctx.arg(2));
    0
}

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn nm_state_raw(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    on_set_state::<Probe>(sk, || sk, ctx.arg(1), ctx.arg(2));
    0
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn nm_state_tp(ctx: TracePointContext) -> u32 {
    let base = ctx.as_ptr() as u64;
    if Probe::read::<u16>(base, tp_field!(state_protocol)) != Some(IPPROTO_TCP) {
        return 0;
    }
    let sk: u64 = Probe::read(base, tp_field!(state_sk)).unwrap_or(0);
    let old: i32 = Probe::read(base, tp_field!(state_old)).unwrap_or(0);
    let new: i32 = Probe::read(base, tp_field!(state_new)).unwrap_or(0);
    let family: u16 = Probe::read(base, tp_field!(state_family)).unwrap_or(0);
    count_state_change::<Probe>(sk, || sk, family, old as u32, new as u32);
    0
}

/// Fallback where the tracepoint is missing: `tcp_set_state(struct sock *sk, int state)`, with
/// the old state read from the socket before it changes.
#[kprobe]
pub fn nm_state_kprobe(ctx: ProbeContext) -> u32 {
    let sk: u64 = ctx.arg(0).unwrap_or(0);
    let new: i32 = ctx.arg(1).unwrap_or(0);
    let old: u8 = Probe::read(sk, constant!(OFFSETS.sk_state)).unwrap_or(0);
    let family: u16 = Probe::read(sk, constant!(OFFSETS.sk_family)).unwrap_or(0);
    count_state_change::<Probe>(sk, || sk, family, old as u32, new as u32);
    0
}
