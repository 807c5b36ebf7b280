//! Reads from kernel structures at offsets the agent learned from the running kernel's BTF.
use aya_ebpf::helpers::bpf_probe_read_kernel;
use netmon_common::{
    DROP_REASON_UNKNOWN, DropProbeArgs, Event, InterfaceKey, KernelOffsets, NormalFreeReasons,
    TracepointFields,
};

use crate::maps::count_event;

#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    skb_dev: 0,
    skb_len: 0,
    skb_protocol: 0,
    skb_sk: 0,
    netdev_ifindex: 0,
    netdev_nd_net: 0,
    net_inum: 0,
    sk_family: 0,
    sk_state: 0,
    sk_net: 0,
    sk_protocol: 0,
    sk_protocol_readable: 0,
};

#[unsafe(no_mangle)]
static TP_FIELDS: TracepointFields = TracepointFields {
    xmit_skb: 0,
    xmit_len: 0,
    recv_skb: 0,
    recv_len: 0,
    drop_skb: 0,
    drop_protocol: 0,
    drop_reason: 0,
    drop_reason_present: 0,
    state_sk: 0,
    state_old: 0,
    state_new: 0,
    state_family: 0,
    state_protocol: 0,
};

#[unsafe(no_mangle)]
static DROP_PROBE_ARGS: DropProbeArgs = DropProbeArgs {
    skb_arg: 0,
    reason_arg: 1,
    reason_present: 0,
};

/// The loader rewrites these constants; volatile reads keep the compiler from folding the
/// zeros it sees at build time.
#[inline(always)]
pub fn offsets() -> KernelOffsets {
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

#[inline(always)]
pub fn tp_fields() -> TracepointFields {
    unsafe { core::ptr::read_volatile(&TP_FIELDS) }
}

#[inline(always)]
pub fn drop_probe_args() -> DropProbeArgs {
    unsafe { core::ptr::read_volatile(&DROP_PROBE_ARGS) }
}

/// Reads a `T` at `base + offset` in kernel memory; a failed read is counted and gives `None`.
#[inline(always)]
pub fn read<T>(base: u64, offset: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    let ptr = (base + offset as u64) as *const T;
    match unsafe { bpf_probe_read_kernel(ptr) } {
        Ok(value) => Some(value),
        Err(_) => {
            count_event(Event::ReadFailed);
            None
        }
    }
}

/// Namespace inode and index of a `struct net_device *`.
#[inline(always)]
pub fn device_key(off: &KernelOffsets, dev: u64) -> Option<InterfaceKey> {
    if off.net_inum == 0 {
        return None;
    }
    let ifindex: i32 = read(dev, off.netdev_ifindex)?;
    let net: u64 = read(dev, off.netdev_nd_net)?;
    let netns: u32 = read(net, off.net_inum)?;
    Some(InterfaceKey {
        netns,
        ifindex: ifindex as u32,
    })
}

/// Namespace of a `struct sock *`.
#[inline(always)]
pub fn socket_netns(off: &KernelOffsets, sk: u64) -> Option<u32> {
    // Without offsets from BTF the layout is unknown: read nothing.
    if off.net_inum == 0 {
        return None;
    }
    let net: u64 = read(sk, off.sk_net)?;
    read(net, off.net_inum)
}

/// Device of a `struct sk_buff *` as an interface key; packets without a device are
/// attributed to their socket's namespace with interface index 0.
#[inline(always)]
pub fn skb_interface(off: &KernelOffsets, skb: u64) -> InterfaceKey {
    let dev: u64 = read(skb, off.skb_dev).unwrap_or(0);
    if dev != 0
        && let Some(key) = device_key(off, dev)
    {
        return key;
    }
    let sk: u64 = read(skb, off.skb_sk).unwrap_or(0);
    InterfaceKey {
        netns: if sk != 0 {
            socket_netns(off, sk).unwrap_or(0)
        } else {
            0
        },
        ifindex: 0,
    }
}

#[unsafe(no_mangle)]
static NORMAL_FREE: NormalFreeReasons = NormalFreeReasons {
    not_dropped_yet: 0,
    consumed: DROP_REASON_UNKNOWN,
};

#[inline(always)]
pub fn normal_free() -> NormalFreeReasons {
    unsafe { core::ptr::read_volatile(&NORMAL_FREE) }
}
