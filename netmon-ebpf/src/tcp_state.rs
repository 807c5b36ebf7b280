//! `sock:inet_sock_set_state` (TCP only): transitions per family, and handshake durations of
//! active (`SYN_SENT` -> `ESTABLISHED`) and passive (`SYN_RECV` -> `ESTABLISHED`) opens.
use aya_ebpf::{
    EbpfContext,
    helpers::bpf_ktime_get_ns,
    macros::{btf_tracepoint, kprobe, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use netmon_common::{
    Event, HANDSHAKE_ACTIVE, HANDSHAKE_BUCKETS, HANDSHAKE_PASSIVE, HandshakeKey, TransitionKey,
};

use crate::{
    kernel::{offsets, read, socket_netns, tp_fields},
    maps::{HANDSHAKE_START, HANDSHAKES, TCP_TRANSITIONS, count_event, entry},
};

const IPPROTO_TCP: u16 = 6;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const TCP_ESTABLISHED: u32 = 1;
const TCP_SYN_SENT: u32 = 2;
const TCP_SYN_RECV: u32 = 3;
const TCP_CLOSE: u32 = 7;

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
    if let Some(histogram) = entry(&HANDSHAKES, &key, Event::HandshakeMapFull) {
        // SAFETY: this CPU's value, written only by programs running on this CPU.
        let histogram = unsafe { &mut *histogram };
        if let Some(count) = histogram.buckets.get_mut(bucket) {
            *count += 1;
        }
        histogram.sum_ns += elapsed_ns;
    }
}

#[inline(always)]
fn track_handshake(netns: u32, sk: u64, old: u32, new: u32) {
    match new {
        TCP_SYN_SENT | TCP_SYN_RECV => {
            let now = unsafe { bpf_ktime_get_ns() };
            if HANDSHAKE_START.insert(sk, now, 0).is_err() {
                count_event(Event::HandshakeMapFull);
            }
        }
        TCP_ESTABLISHED if old == TCP_SYN_SENT || old == TCP_SYN_RECV => {
            // SAFETY: the value is copied out before the entry is removed.
            if let Some(started) = unsafe { HANDSHAKE_START.get(sk) }.copied() {
                let open = if old == TCP_SYN_SENT {
                    HANDSHAKE_ACTIVE
                } else {
                    HANDSHAKE_PASSIVE
                };
                record_handshake(netns, open, started);
            }
            let _ = HANDSHAKE_START.remove(sk);
        }
        TCP_CLOSE => {
            let _ = HANDSHAKE_START.remove(sk);
        }
        _ => {}
    }
}

#[inline(always)]
fn count_transition(sk: u64, family: u16, old: u32, new: u32) {
    if family != AF_INET && family != AF_INET6 {
        return;
    }
    let netns = socket_netns(&offsets(), sk).unwrap_or(0);
    let key = TransitionKey {
        netns,
        family: family as u8,
        old_state: old as u8,
        new_state: new as u8,
        _pad: 0,
    };
    if let Some(count) = entry(&TCP_TRANSITIONS, &key, Event::TransitionMapFull) {
        // SAFETY: this CPU's value, written only by programs running on this CPU.
        unsafe { *count += 1 };
    }
    track_handshake(netns, sk, old, new);
}

/// Entry shared by the BTF-typed and raw tracepoints, which see the `struct sock *`.
#[inline(always)]
fn on_set_state(sk: u64, old: u32, new: u32) {
    let off = offsets();
    if off.sk_protocol_readable != 0 {
        match read::<u16>(sk, off.sk_protocol) {
            Some(IPPROTO_TCP) => {}
            _ => return,
        }
    }
    let family: u16 = read(sk, off.sk_family).unwrap_or(0);
    count_transition(sk, family, old, new);
}

// TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn nm_state_btf(ctx: BtfTracePointContext) -> i32 {
    on_set_state(ctx.arg(0), ctx.arg(1), ctx.arg(2));
    0
}

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn nm_state_raw(ctx: RawTracePointContext) -> i32 {
    on_set_state(ctx.arg(0), ctx.arg(1), ctx.arg(2));
    0
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn nm_state_tp(ctx: TracePointContext) -> u32 {
    let fields = tp_fields();
    let base = ctx.as_ptr() as u64;
    if read::<u16>(base, fields.state_protocol) != Some(IPPROTO_TCP) {
        return 0;
    }
    let sk: u64 = read(base, fields.state_sk).unwrap_or(0);
    let old: i32 = read(base, fields.state_old).unwrap_or(0);
    let new: i32 = read(base, fields.state_new).unwrap_or(0);
    let family: u16 = read(base, fields.state_family).unwrap_or(0);
    count_transition(sk, family, old as u32, new as u32);
    0
}

/// Fallback where the tracepoint is missing: `tcp_set_state(struct sock *sk, int state)`, with
/// the old state read from the socket before it changes.
#[kprobe]
pub fn nm_state_kprobe(ctx: ProbeContext) -> u32 {
    let sk: u64 = ctx.arg(0).unwrap_or(0);
    let new: i32 = ctx.arg(1).unwrap_or(0);
    let off = offsets();
    let old: u8 = read(sk, off.sk_state).unwrap_or(0);
    let family: u16 = read(sk, off.sk_family).unwrap_or(0);
    count_transition(sk, family, old as u32, new as u32);
    0
}
