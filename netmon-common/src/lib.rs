//! Types shared by the kernel programs and the agent: map keys, map values, sizes and indices.
//! Every type is `#[repr(C)]` with explicit padding so that both sides agree byte for byte.
#![no_std]

/// Capacity of the per-interface traffic map. One entry per (namespace, interface).
pub const MAX_INTERFACES: u32 = 8192;
/// Capacity of the drop map. One entry per (namespace, interface, reason, protocol).
pub const MAX_DROP_KEYS: u32 = 16384;
/// Capacity of the map that remembers when a TCP socket started its handshake.
pub const MAX_HANDSHAKES: u32 = 65536;

/// Number of TCP states the kernel knows (`TCP_ESTABLISHED` = 1 .. `TCP_NEW_SYN_RECV` = 12),
/// rounded up to a power of two so that a state fits in four bits.
pub const TCP_STATE_SLOTS: u32 = 16;
/// Address families counted separately by the TCP state hook.
pub const FAMILY_SLOTS: u32 = 2;
/// Slot of an IPv4 socket in the transition table.
pub const FAMILY_SLOT_INET: u32 = 0;
/// Slot of an IPv6 socket in the transition table.
pub const FAMILY_SLOT_INET6: u32 = 1;
/// Entries of the TCP transition table: family x old state x new state.
pub const TCP_TRANSITION_SLOTS: u32 = FAMILY_SLOTS * TCP_STATE_SLOTS * TCP_STATE_SLOTS;

/// Index into the transition table.
#[inline(always)]
pub const fn tcp_transition_index(family_slot: u32, old: u32, new: u32) -> u32 {
    (family_slot * TCP_STATE_SLOTS + (old & 0xf)) * TCP_STATE_SLOTS + (new & 0xf)
}

/// Handshake histogram buckets: bucket `i` holds durations in `[2^i, 2^(i+1))` microseconds,
/// the last bucket everything longer.
pub const HANDSHAKE_BUCKETS: u32 = 32;
/// Active opens (`SYN_SENT` to `ESTABLISHED`) use the first half of the histogram array.
pub const HANDSHAKE_ACTIVE: u32 = 0;
/// Passive opens (`SYN_RECV` to `ESTABLISHED`) use the second half.
pub const HANDSHAKE_PASSIVE: u32 = 1;
/// Slots per handshake kind: the buckets, then the sum of durations in nanoseconds.
pub const HANDSHAKE_SLOTS_PER_KIND: u32 = HANDSHAKE_BUCKETS + 1;
/// Entries of the handshake histogram array.
pub const HANDSHAKE_SLOTS: u32 = 2 * HANDSHAKE_SLOTS_PER_KIND;

/// Indices of the `EVENTS` per-CPU array: single counters of the TCP hooks and of the programs'
/// own failures.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    TcpRetransmit = 0,
    TcpResetSent = 1,
    TcpResetReceived = 2,
    /// An interface entry could not be stored: the traffic map is full.
    TrafficMapFull = 3,
    /// A drop entry could not be stored: the drop map is full.
    DropMapFull = 4,
    /// A handshake start could not be remembered: the handshake map is full.
    HandshakeMapFull = 5,
    /// A kernel read failed (a pointer the program followed was not readable).
    ReadFailed = 6,
}

/// Entries of the `EVENTS` array.
pub const EVENT_SLOTS: u32 = 7;

/// Key of the per-interface traffic map and part of the drop key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceKey {
    /// Inode number of the interface's network namespace, as `/proc/<pid>/ns/net` shows it.
    pub netns: u32,
    /// Interface index inside that namespace; 0 when the packet had no device.
    pub ifindex: u32,
}

/// Value of the per-interface traffic map (one per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceTraffic {
    pub rx_packets: u64,
    /// Bytes as `skb->len` at `netif_receive_skb`: the link-layer header is already pulled.
    pub rx_bytes: u64,
    pub tx_packets: u64,
    /// Bytes as `skb->len` at `net_dev_xmit`: link-layer header included.
    pub tx_bytes: u64,
    /// Transmits the driver did not accept (`net_dev_xmit` with a non-zero return code).
    pub tx_failed: u64,
}

/// Key of the drop map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    pub interface: InterfaceKey,
    /// `enum skb_drop_reason` value; [`DROP_REASON_UNKNOWN`] when the hook has no reason.
    pub reason: u32,
    /// `skb->protocol` in host byte order (an ethertype such as 0x0800).
    pub protocol: u16,
    pub _pad: u16,
}

/// Reason recorded by hooks that do not tell why a packet was dropped.
pub const DROP_REASON_UNKNOWN: u32 = u32::MAX;

/// Offsets into kernel structures, learned from the running kernel's BTF by the agent and
/// written into the programs' read-only data before they load. Nothing about struct layout is
/// compiled in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `struct sk_buff`: `dev`, `len`, `protocol`, `sk`.
    pub skb_dev: u32,
    pub skb_len: u32,
    pub skb_protocol: u32,
    pub skb_sk: u32,
    /// `struct net_device`: `ifindex`, `nd_net` (a `possible_net_t` whose first member is the
    /// `struct net *`).
    pub netdev_ifindex: u32,
    pub netdev_nd_net: u32,
    /// `struct net`: `ns.inum`.
    pub net_inum: u32,
    /// `struct sock_common`: `skc_family`, `skc_state`, `skc_net`; `struct sock`: `sk_protocol`.
    pub sk_family: u32,
    pub sk_state: u32,
    pub sk_net: u32,
    pub sk_protocol: u32,
    /// 1 when `sk_protocol` is a plain 16-bit field and can be read; 0 on kernels where it is a
    /// bit field (then the state hook trusts the tracepoint to be TCP-only).
    pub sk_protocol_readable: u32,
}

/// Offsets of the fields of classic (format-file) tracepoints, read from
/// `/sys/kernel/tracing/events/<category>/<name>/format` at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointFields {
    /// `net:net_dev_xmit`: `skbaddr`, `len`, `rc`.
    pub xmit_skb: u32,
    pub xmit_len: u32,
    pub xmit_rc: u32,
    /// `net:netif_receive_skb`: `skbaddr`, `len`.
    pub recv_skb: u32,
    pub recv_len: u32,
    /// `skb:kfree_skb`: `skbaddr`, `protocol`, `reason` (`reason_present` 0 when absent).
    pub drop_skb: u32,
    pub drop_protocol: u32,
    pub drop_reason: u32,
    pub drop_reason_present: u32,
    /// `sock:inet_sock_set_state`: `skaddr`, `oldstate`, `newstate`, `family`, `protocol`.
    pub state_sk: u32,
    pub state_old: u32,
    pub state_new: u32,
    pub state_family: u32,
    pub state_protocol: u32,
}

/// How the kprobe fallback of the drop hook finds its arguments: the kernel function it is
/// attached to differs between versions (`kfree_skb_reason(skb, reason)`,
/// `sk_skb_reason_drop(sk, skb, reason)`, or plain `kfree_skb(skb)` with no reason).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropProbeArgs {
    pub skb_arg: u32,
    pub reason_arg: u32,
    /// 0 when the function has no reason argument.
    pub reason_present: u32,
}

/// Values of `enum skb_drop_reason` that mean "not a drop" on the running kernel
/// (`SKB_NOT_DROPPED_YET`, `SKB_CONSUMED`); [`DROP_REASON_UNKNOWN`] where the name is absent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormalFreeReasons {
    pub not_dropped_yet: u32,
    pub consumed: u32,
}

#[cfg(feature = "user")]
mod user {
    use super::*;

    // SAFETY: all of these are `#[repr(C)]`, contain only integers, and have no implicit
    // padding.
    unsafe impl aya::Pod for InterfaceKey {}
    unsafe impl aya::Pod for InterfaceTraffic {}
    unsafe impl aya::Pod for DropKey {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for TracepointFields {}
    unsafe impl aya::Pod for DropProbeArgs {}
    unsafe impl aya::Pod for NormalFreeReasons {}
}
