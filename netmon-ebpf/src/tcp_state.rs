//! `sock:inet_sock_set_state` (TCP only): transitions per family, and handshake durations of
//! active (`SYN_SENT` -> `ESTABLISHED`) and passive (`SYN_RECV` -> `ESTABLISHED`) opens.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_ktime_get_ns, generated::bpf_get_socket_cookie},
    macros::{btf_tracepoint, kprobe, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use netmon_common::{
    Event, HANDSHAKE_ACTIVE, HANDSHAKE_BUCKETS, HANDSHAKE_PASSIVE, HandshakeKey, SLOT_PROBES,
    TransitionKey, slot_hash,
};

use crate::{
    kernel::{Btf, Memory, Probe, constant, socket_netns, tp_field},
    maps::{HANDSHAKE_START, count_event, handshake_starts_mask, handshakes, transitions},
    slots::claim,
};

const IPPROTO_TCP: u16 = 6;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const TCP_ESTABLISHED: u32 = 1;
const TCP_SYN_SENT: u32 = 2;
const TCP_SYN_RECV: u32 = 3;
/// A handshake start older than this is from a socket whose close was never seen (the SYN
/// retries of a connect give up after about 127 s): its slot may be taken over.
const STALE_NS: u64 = 300_000_000_000;

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

#[inline(always)]
fn record_handshake(netns: u32, open: u32, started: u64) {
    let elapsed_ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(started);
    let bucket = (log2(elapsed_ns / 1000) as usize).min(HANDSHAKE_BUCKETS - 1);
    let key = HandshakeKey { netns, open };
    if let Some(histogram) = handshakes().counts(key.slot_id(), 0) {
        if let Some(count) = histogram.buckets.get_mut(bucket) {
            *count += 1;
        }
        histogram.sum_ns += elapsed_ns;
    }
}

/// Remembers when `socket`'s handshake started, in a free (or stale) slot near its hash.
#[inline(always)]
fn remember_start(socket: u64, now: u64) {
    let start = slot_hash(socket, 0);
    let mask = handshake_starts_mask();
    for i in 0..SLOT_PROBES {
        let Some(tag) = HANDSHAKE_START.get_ptr_mut(start.wrapping_add(i) & mask) else {
            continue;
        };
        // SAFETY: map values; the id changes only by compare-and-swap.
        let (id, started) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*tag).id),
                core::ptr::read_volatile(&raw const (*tag).extra),
            )
        };
        let takeable = id == 0 || (id != socket && now.saturating_sub(started) > STALE_NS);
        if id == socket || (takeable && claim(tag, id, socket)) {
            // SAFETY: the slot is this socket's.
            unsafe { core::ptr::write_volatile(&raw mut (*tag).extra, now) };
            return;
        }
    }
    count_event(Event::HandshakeMapFull);
}

/// Frees `socket`'s slot, if it has one, and returns when its handshake started.
#[inline(always)]
fn take_start(socket: u64) -> Option<u64> {
    let start = slot_hash(socket, 0);
    let mask = handshake_starts_mask();
    for i in 0..SLOT_PROBES {
        let Some(tag) = HANDSHAKE_START.get_ptr_mut(start.wrapping_add(i) & mask) else {
            continue;
        };
        // SAFETY: map values; the start is copied before the slot is freed.
        let (id, started) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*tag).id),
                core::ptr::read_volatile(&raw const (*tag).extra),
            )
        };
        if id == socket && claim(tag, socket, 0) {
            return Some(started);
        }
    }
    None
}

/// `socket()` identifies the socket; it is asked for only by transitions into and out of a
/// handshake.
#[inline(always)]
fn track_handshake(netns: u32, socket: impl Fn() -> u64, old: u32, new: u32) {
    match new {
        TCP_SYN_SENT | TCP_SYN_RECV => remember_start(socket(), unsafe { bpf_ktime_get_ns() }),
        TCP_ESTABLISHED if old == TCP_SYN_SENT || old == TCP_SYN_RECV => {
            if let Some(started) = take_start(socket()) {
                let open = if old == TCP_SYN_SENT {
                    HANDSHAKE_ACTIVE
                } else {
                    HANDSHAKE_PASSIVE
                };
                record_handshake(netns, open, started);
            }
        }
        // Any other way out of a handshake (closed, reset, closed before it completed).
        _ if old == TCP_SYN_SENT || old == TCP_SYN_RECV => {
            let _ = take_start(socket());
        }
        _ => {}
    }
}

/// Counts one transition of a TCP socket in namespace `netns`; `socket()` identifies the
/// socket for as long as it lives.
#[inline(always)]
fn count_transition(netns: u32, socket: impl Fn() -> u64, family: u16, old: u32, new: u32) {
    if family != AF_INET && family != AF_INET6 {
        return;
    }
    let key = TransitionKey {
        netns,
        family: family as u8,
        old_state: old as u8,
        new_state: new as u8,
        _pad: 0,
    };
    if let Some(count) = transitions().counts(key.slot_id(), 0) {
        *count += 1;
    }
    track_handshake(netns, socket, old, new);
}

/// Entry shared by the BTF-typed and raw tracepoints, which see the `struct sock *`;
/// `socket()` is what identifies it in the handshake table.
#[inline(always)]
fn on_set_state<M: Memory>(sk: u64, socket: impl Fn() -> u64, old: u32, new: u32) {
    if constant!(OFFSETS.sk_protocol_readable) != 0 {
        match M::read::<u16>(sk, constant!(OFFSETS.sk_protocol)) {
            Some(IPPROTO_TCP) => {}
            _ => return,
        }
    }
    let family: u16 = M::read(sk, constant!(OFFSETS.sk_family)).unwrap_or(0);
    let netns = socket_netns::<M>(sk).unwrap_or(0);
    count_transition(netns, socket, family, old, new);
}

// TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn nm_state_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    // A typed pointer cannot be hashed; the socket's cookie, unique for its life, can.
    // SAFETY: `sk` is the tracepoint's socket.
    let cookie = || unsafe { bpf_get_socket_cookie(sk as *mut _) };
    on_set_state::<Btf>(sk, cookie, ctx.arg(1), ctx.arg(2));
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
    let netns = socket_netns::<Probe>(sk).unwrap_or(0);
    count_transition(netns, || sk, family, old as u32, new as u32);
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
    let netns = socket_netns::<Probe>(sk).unwrap_or(0);
    count_transition(netns, || sk, family, old as u32, new as u32);
    0
}
