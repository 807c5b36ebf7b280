//! The peer part of the TCP state hook (`tcp_state.rs`): each open's result and time as the
//! socket leaves `SYN_SENT` or `SYN_RECV`, and each connection's totals as it closes, by
//! namespace, role and remote endpoint; and of the socket iterator (`sockets.rs`): the
//! connections not yet closed.
use core::intrinsics::{AtomicOrdering::SeqCst, atomic_xadd};

use aya_ebpf::bindings::BPF_NOEXIST;
use netmon_common::{
    events::map_full,
    peers::{
        self, OpenConnections, PeerCounts, PeerKey, PeerResult, ROLE_CLIENT, ROLE_SERVER,
        RetriedSyn, WalkMemo, peer_bucket,
    },
};

use crate::{
    events::count,
    kernel::{AF_INET, Btf, Memory, Namespace, constant, offsets_known, socket_namespace},
    maps::{PEER_WALK_MEMO, PEERS, RETRIED_SYNS, peer_slots},
};

pub const TCP_ESTABLISHED: u32 = 1;
pub const TCP_SYN_SENT: u32 = 2;
pub const TCP_SYN_RECV: u32 = 3;
pub const TCP_CLOSE: u32 = 7;
const TCP_TIME_WAIT: u32 = 6;
const TCP_LISTEN: u32 = 10;
/// A connection request (`struct request_sock`), which the socket iterator also walks.
const TCP_NEW_SYN_RECV: u32 = 12;
/// The error of a map insert that found the map full.
const E2BIG: i32 = 7;

/// One state change of a TCP socket: `sk`, and `tcp()` the same socket as a `struct tcp_sock`
/// (BTF-typed loads reach its TCP fields only through that type).
pub struct Change<F> {
    pub sk: u64,
    pub tcp: F,
    pub netns: Namespace,
    pub family: u16,
    pub old: u32,
    pub new: u32,
}

/// Counts what this change tells of the socket's peer: an open ending (its result and, if it
/// succeeded, its time), a connection closing (its totals).
#[inline(always)]
pub fn count_peer<M: Memory, F: Fn() -> u64>(change: &Change<F>) {
    // The classic tracepoint also runs without BTF; the socket's fields need its offsets.
    if !offsets_known() {
        return;
    }
    let (old, new) = (change.old, change.new);
    let opening = old == TCP_SYN_SENT || old == TCP_SYN_RECV;
    match new {
        TCP_ESTABLISHED if opening => {}
        TCP_CLOSE if old != TCP_LISTEN && old != TCP_CLOSE => {}
        _ => return,
    }
    let Some(counts) = peer_counts(&peer_key::<M, F>(change)) else {
        return;
    };
    if opening {
        count_open::<M, F>(change, counts);
    }
    if new == TCP_CLOSE {
        count_close::<M>((change.tcp)(), counts);
    }
}

/// Counts an open's result and, where it succeeded, its time.
#[inline(always)]
fn count_open<M: Memory, F: Fn() -> u64>(change: &Change<F>, counts: *mut PeerCounts) {
    let result = if change.new == TCP_ESTABLISHED {
        PeerResult::Ok
    } else {
        PeerResult::of_error(M::read(change.sk, constant!(OFFSETS.sk_err)).unwrap_or(0))
    };
    // A connect's retried SYN is forgotten as the open ends, whatever its result.
    let since_first_syn = if change.old == TCP_SYN_SENT {
        forget_retried_syn::<M, F>(change)
    } else {
        None
    };
    // SAFETY: a map value shared by all CPUs, only ever added to.
    let counts = unsafe { &mut *counts };
    if let Some(count) = counts.results.get_mut(result as usize) {
        add(count, 1);
    }
    if result != PeerResult::Ok {
        return;
    }
    // The time since the first SYN where it was retried; else the kernel's round-trip sample
    // of the SYN (client) or SYN-ACK (server): the first sample is the smoothed round trip.
    let elapsed_us = since_first_syn.unwrap_or_else(|| srtt_us::<M>((change.tcp)()));
    observe(
        &mut counts.connect_time,
        &mut counts.connect_time_sum_ns,
        elapsed_us,
    );
}

/// Remembers when a connect's first SYN left, as the SYN is sent again: the kernel keeps
/// that time (`retrans_stamp`) only until the handshake completes. `sk` is the retransmitting
/// socket, `tcp` the same as a `struct tcp_sock`.
#[inline(always)]
pub fn note_syn_retry<M: Memory>(sk: u64, tcp: u64) {
    if !offsets_known() {
        return;
    }
    let state: u8 = M::read(sk, constant!(OFFSETS.sk_state)).unwrap_or(0);
    if u32::from(state) != TCP_SYN_SENT {
        return;
    }
    let Some(first_us) = first_syn_us::<M>(tcp) else {
        return;
    };
    let family: u16 = M::read(sk, constant!(OFFSETS.sk_family)).unwrap_or(0);
    let key = retried_syn::<M>(sk, tcp, socket_namespace::<M>(sk), family);
    // Only the first retry stores: the later ones find their connect there.
    if let Err(err) = RETRIED_SYNS.insert(key, first_us, BPF_NOEXIST as u64)
        && err == -E2BIG
    {
        count(map_full(peers::TABLE.number));
    }
}

/// When the first SYN of a connect in `SYN_SENT` left, in its clock (`tcp_mstamp`, in
/// microseconds): `retrans_stamp` holds the low 32 bits of that clock in milliseconds, or in
/// microseconds on a connection with `tcp_usec_ts`.
#[inline(always)]
fn first_syn_us<M: Memory>(tcp: u64) -> Option<u64> {
    let now_us: u64 = M::read(tcp, constant!(OFFSETS.tcp_mstamp))?;
    let stamp: u32 = M::read(tcp, constant!(OFFSETS.tcp_retrans_stamp))?;
    let mask = constant!(OFFSETS.tcp_usec_ts_mask) as u8;
    let usec =
        mask != 0 && M::read::<u8>(tcp, constant!(OFFSETS.tcp_usec_ts)).unwrap_or(0) & mask != 0;
    let elapsed_us = if usec {
        u64::from((now_us as u32).wrapping_sub(stamp))
    } else {
        u64::from(((now_us / 1000) as u32).wrapping_sub(stamp)) * 1000
    };
    now_us.checked_sub(elapsed_us)
}

/// The time since the first SYN of a connect leaving `SYN_SENT`, if its SYN was retried, and
/// forgets it.
#[inline(always)]
fn forget_retried_syn<M: Memory, F: Fn() -> u64>(change: &Change<F>) -> Option<u64> {
    let tcp = (change.tcp)();
    let retransmits: u32 = M::read(tcp, constant!(OFFSETS.tcp_total_retrans))?;
    if retransmits == 0 {
        return None;
    }
    let key = retried_syn::<M>(change.sk, tcp, change.netns, change.family);
    // SAFETY: the value is copied out before the entry is removed.
    let first_us = unsafe { RETRIED_SYNS.get(key) }.copied()?;
    let _ = RETRIED_SYNS.remove(key);
    let now_us: u64 = M::read(tcp, constant!(OFFSETS.tcp_mstamp))?;
    Some(now_us.saturating_sub(first_us))
}

/// The identity of a connecting socket: its namespace and both ends. The local port is
/// `inet_sport`, which stays as the socket closes.
#[inline(always)]
fn retried_syn<M: Memory>(sk: u64, tcp: u64, netns: Namespace, family: u16) -> RetriedSyn {
    let local_port: u16 = M::read(tcp, constant!(OFFSETS.inet_sport)).unwrap_or(0);
    RetriedSyn {
        address: remote_address::<M>(sk, family).unwrap_or([0; 2]),
        netns: netns.inode,
        local_port: u16::from_be(local_port),
        remote_port: remote_port::<M>(sk),
    }
}

/// Adds a closing connection's totals, read from its `struct tcp_sock` `tcp`.
#[inline(always)]
fn count_close<M: Memory>(tcp: u64, counts: *mut PeerCounts) {
    let acked: u64 = M::read(tcp, constant!(OFFSETS.tcp_bytes_acked)).unwrap_or(0);
    let received: u64 = M::read(tcp, constant!(OFFSETS.tcp_bytes_received)).unwrap_or(0);
    let retransmits: u32 = M::read(tcp, constant!(OFFSETS.tcp_total_retrans)).unwrap_or(0);
    let rtt_us = srtt_us::<M>(tcp);
    // SAFETY: a map value shared by all CPUs, only ever added to.
    let counts = unsafe { &mut *counts };
    add(&mut counts.bytes_sent, acked);
    add(&mut counts.bytes_received, received);
    add(&mut counts.retransmits, u64::from(retransmits));
    // A connection that never measured a round trip (a failed open) has none to show.
    if rtt_us != 0 {
        observe(&mut counts.rtt, &mut counts.rtt_sum_ns, rtt_us);
    }
}

/// The smoothed round-trip time in microseconds (`srtt_us` holds it times 8).
#[inline(always)]
fn srtt_us<M: Memory>(tcp: u64) -> u64 {
    let srtt: u32 = M::read(tcp, constant!(OFFSETS.tcp_srtt_us)).unwrap_or(0);
    u64::from(srtt >> 3)
}

/// Adds one observation of `us` microseconds to a histogram and its sum.
#[inline(always)]
fn observe(buckets: &mut [u64], sum_ns: &mut u64, us: u64) {
    if let Some(count) = buckets.get_mut(peer_bucket(us)) {
        add(count, 1);
    }
    add(sum_ns, us * 1000);
}

#[inline(always)]
fn add(count: &mut u64, value: u64) {
    // SAFETY: a counter in a map value shared by all CPUs, changed only atomically.
    unsafe { atomic_xadd::<u64, u64, { SeqCst }>(count, value) };
}

/// The peer of a changing socket: a client's remote port, a server's local one. The role
/// comes from the state an open leaves, or, as a connection closes, from the listen backlog,
/// which an accepted connection copied from its listener.
#[inline(always)]
fn peer_key<M: Memory, F: Fn() -> u64>(change: &Change<F>) -> PeerKey {
    let sk = change.sk;
    let server = match change.old {
        TCP_SYN_SENT => false,
        TCP_SYN_RECV => true,
        _ => M::read::<u32>(sk, constant!(OFFSETS.sk_max_ack_backlog)).unwrap_or(0) != 0,
    };
    let (role, port) = if server {
        // `inet_sport` is a member of `struct inet_sock`, which a `struct tcp_sock` begins with;
        // `skc_num` is 0 already as the socket closes.
        let port: u16 = M::read((change.tcp)(), constant!(OFFSETS.inet_sport)).unwrap_or(0);
        (ROLE_SERVER, u16::from_be(port))
    } else {
        (ROLE_CLIENT, remote_port::<M>(sk))
    };
    endpoint::<M>(sk, change.netns, change.family, role, port)
}

/// The remote port of a socket, in host order.
#[inline(always)]
fn remote_port<M: Memory>(sk: u64) -> u16 {
    u16::from_be(M::read(sk, constant!(OFFSETS.sk_dport)).unwrap_or(0))
}

/// The peer key of socket `sk` with its role and port.
#[inline(always)]
fn endpoint<M: Memory>(sk: u64, netns: Namespace, family: u16, role: u8, port: u16) -> PeerKey {
    let key = PeerKey {
        netns: netns.inode,
        role,
        port,
        address: [0; 2],
    };
    // An address that cannot be read, or whose low half is 0, counts under the overflow.
    match remote_address::<M>(sk, family) {
        Some(address) if address[1] != 0 => PeerKey { address, ..key },
        _ => key.overflow(),
    }
}

/// Counts one socket of the socket iterator's walk numbered `walk` with its peer's open
/// connections: `sk` the walked socket, `tcp` the same as a `struct tcp_sock` (0 for a
/// connection request, which has none), `state` its state.
#[inline(always)]
pub fn count_open_connection(sk: u64, tcp: u64, state: u8, walk: u64) {
    let state = u32::from(state);
    // A listener, or a connection the kernel has closed (its time-wait socket is no full one).
    let request = state == TCP_NEW_SYN_RECV;
    if state == TCP_LISTEN || state == TCP_CLOSE || state == TCP_TIME_WAIT || (tcp == 0 && !request)
    {
        return;
    }
    let server = request
        || (state != TCP_SYN_SENT
            && Btf::read::<u32>(tcp, constant!(OFFSETS.sk_max_ack_backlog)).unwrap_or(0) != 0);
    let (role, port) = if server {
        (
            ROLE_SERVER,
            Btf::read(sk, constant!(OFFSETS.sk_num)).unwrap_or(0),
        )
    } else {
        (ROLE_CLIENT, remote_port::<Btf>(sk))
    };
    let family: u16 = Btf::read(sk, constant!(OFFSETS.sk_family)).unwrap_or(0);
    let netns = socket_namespace::<Btf>(sk);
    let key = endpoint::<Btf>(sk, netns, family, role, port);
    let Some(counts) = walked_slot(&key, walk).and_then(|slot| PEERS.get_ptr_mut(slot as u32))
    else {
        return;
    };
    // SAFETY: the walk is the only writer of `open`, on one CPU at a time.
    let open = unsafe { &mut (*counts).open };
    if open.walk != walk {
        *open = OpenConnections {
            walk,
            ..OpenConnections::default()
        };
    }
    open.established += u64::from(state == TCP_ESTABLISHED);
    let opening = state == TCP_SYN_SENT || state == TCP_SYN_RECV || request;
    open.opening += u64::from(opening);
    if tcp == 0 {
        return;
    }
    let acked: u64 = Btf::read(tcp, constant!(OFFSETS.tcp_bytes_acked)).unwrap_or(0);
    let received: u64 = Btf::read(tcp, constant!(OFFSETS.tcp_bytes_received)).unwrap_or(0);
    let retransmits: u32 = Btf::read(tcp, constant!(OFFSETS.tcp_total_retrans)).unwrap_or(0);
    open.bytes_sent += acked;
    open.bytes_received += received;
    open.retransmits += u64::from(retransmits);
    let rtt_us = srtt_us::<Btf>(tcp);
    if rtt_us != 0 {
        if let Some(count) = open.rtt.get_mut(peer_bucket(rtt_us)) {
            *count += 1;
        }
        open.rtt_sum_ns += rtt_us * 1000;
    }
}

/// The remote address of a TCP socket as IPv6 (IPv4 mapped into it), in two big-endian
/// halves.
#[inline(always)]
fn remote_address<M: Memory>(sk: u64, family: u16) -> Option<[u64; 2]> {
    if family == AF_INET {
        let address: u32 = M::read(sk, constant!(OFFSETS.sk_daddr))?;
        return Some([0, 0xffff_0000_0000 | u64::from(u32::from_be(address))]);
    }
    let offset = constant!(OFFSETS.sk_v6_daddr);
    let high: u64 = M::read(sk, offset)?;
    let low: u64 = M::read(sk, offset + 8)?;
    Some([u64::from_be(high), u64::from_be(low)])
}

/// The counts of the peer `key`, or of its overflow identity where the table has no slot for
/// the peer.
#[inline(always)]
fn peer_counts(key: &PeerKey) -> Option<*mut PeerCounts> {
    PEERS.get_ptr_mut(peer_slot(key)?)
}

/// The slot of the peer `key`, or of its overflow identity.
#[inline(always)]
fn peer_slot(key: &PeerKey) -> Option<u32> {
    let slots = peer_slots();
    let [high, low] = key.address;
    slots.find(key.slot_id(), high, low, |_| 0).or_else(|| {
        let overflow = key.overflow();
        let [high, low] = overflow.address;
        slots.find(overflow.slot_id(), high, low, |_| 0)
    })
}

/// The slot of the peer `key` in the walk numbered `walk`: many connections in a row share
/// their peer (a pool of clients to one service), and the walk remembers the last slot of
/// each role rather than look it up again.
#[inline(always)]
fn walked_slot(key: &PeerKey, walk: u64) -> Option<u64> {
    let memo = PEER_WALK_MEMO.get_ptr_mut(u32::from(key.role))?;
    // SAFETY: map memory that only the walk, on one CPU at a time, uses.
    let memo = unsafe { &mut *memo };
    let id = key.slot_id();
    let [high, low] = key.address;
    if memo.walk == walk && memo.id == id && memo.high == high && memo.low == low {
        return Some(memo.slot);
    }
    let slot = u64::from(peer_slot(key)?);
    *memo = WalkMemo {
        walk,
        id,
        high,
        low,
        slot,
    };
    Some(slot)
}
