//! Reads from kernel structures at offsets the agent learned from the running kernel's BTF.
//!
//! Two ways to read: [`Btf`] loads straight through the BTF-typed pointers a `tp_btf` program
//! gets (the verifier knows the types and makes each load fault-safe; no helper call), and
//! [`Probe`] copies with `bpf_probe_read_kernel`, for the methods whose arguments are plain
//! numbers (raw and classic tracepoints, kprobes).
use aya_ebpf::helpers::bpf_probe_read_kernel;
use netmon_common::{
    drops::DROP_REASON_UNKNOWN,
    events::Event,
    kernel_layout::{DropProbeArgs, KernelOffsets, NormalFreeReasons, TracepointFields},
    traffic::{DeviceIdentity, InterfaceKey},
};

use crate::events::count_event;

#[unsafe(no_mangle)]
pub(crate) static OFFSETS: KernelOffsets = KernelOffsets {
    skb_dev: 0,
    skb_len: 0,
    skb_protocol: 0,
    skb_sk: 0,
    netdev_ifindex: 0,
    netdev_nd_net: 0,
    net_inum: 0,
    net_cookie: 0,
    sk_family: 0,
    sk_state: 0,
    sk_net: 0,
    sk_protocol: 0,
    sk_num: 0,
    tw_substate: 0,
    tcp_srtt_us: 0,
    sk_protocol_readable: 0,
    skb_head: 0,
    skb_network_header: 0,
    sk_socket: 0,
    socket_inode_ino: 0,
    socket_sk: 0,
    task_tgid: 0,
    task_group_leader: 0,
    task_start_boottime: 0,
    task_comm: 0,
    task_cgroups: 0,
    sk_prot: 0,
    css_set_dfl_cgrp: 0,
    cgroup_kn: 0,
    kernfs_node_id: 0,
    file_inode: 0,
    inode_mode: 0,
    inode_ino: 0,
    sk_type: 0,
    sk_err: 0,
    sk_daddr: 0,
    sk_dport: 0,
    sk_v6_daddr: 0,
    tcp_bytes_acked: 0,
    tcp_bytes_received: 0,
    tcp_total_retrans: 0,
    sk_max_ack_backlog: 0,
    inet_sport: 0,
    tcp_retrans_stamp: 0,
    tcp_mstamp: 0,
    tcp_usec_ts: 0,
    tcp_usec_ts_mask: 0,
};

#[unsafe(no_mangle)]
pub(crate) static TP_FIELDS: TracepointFields = TracepointFields {
    xmit_skb: 0,
    xmit_len: 0,
    recv_skb: 0,
    recv_len: 0,
    drop_skb: 0,
    drop_protocol: 0,
    drop_reason: 0,
    drop_reason_present: 0,
    drop_location: 0,
    state_sk: 0,
    state_old: 0,
    state_new: 0,
    state_family: 0,
    state_protocol: 0,
    retransmit_sk: 0,
    reset_sent_sk: 0,
    reset_sent_skb: 0,
    reset_received_sk: 0,
    drop_reason_argument: 1,
};

#[unsafe(no_mangle)]
pub(crate) static DROP_PROBE_ARGS: DropProbeArgs = DropProbeArgs {
    skb_arg: 0,
    reason_arg: 1,
    reason_present: 0,
};

#[unsafe(no_mangle)]
pub(crate) static NORMAL_FREE: NormalFreeReasons = NormalFreeReasons {
    not_dropped_yet: 0,
    consumed: DROP_REASON_UNKNOWN,
};

/// Socket families and the IP protocol of TCP, as the kernel's `struct sock` holds them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;

/// One member of a constant the loader rewrote. Each member is read on its own with a
/// volatile load: the compiler cannot fold the zeros it saw at build time, and the verifier
/// sees a load from frozen read-only data, which it knows as a constant.
macro_rules! constant {
    ($static:ident . $field:ident) => {
        // SAFETY: a read of a static the loader initialised.
        unsafe { core::ptr::read_volatile(&raw const $crate::kernel::$static.$field) }
    };
}
pub(crate) use constant;

/// A field offset of a classic tracepoint's record.
macro_rules! tp_field {
    ($field:ident) => {
        $crate::kernel::constant!(TP_FIELDS.$field)
    };
}
pub(crate) use tp_field;

#[inline(always)]
pub fn offset_skb_dev() -> u32 {
    constant!(OFFSETS.skb_dev)
}

#[inline(always)]
pub fn offset_skb_len() -> u32 {
    constant!(OFFSETS.skb_len)
}

#[inline(always)]
pub fn offset_skb_protocol() -> u32 {
    constant!(OFFSETS.skb_protocol)
}

#[inline(always)]
pub fn offsets_known() -> bool {
    constant!(OFFSETS.net_inum) != 0
}

/// Where the program's values come from: typed loads or probe reads.
pub trait Memory {
    /// Reads a `T` at `base + offset`; `None` when `base` is null or the read failed.
    fn read<T: Copy>(base: u64, offset: u32) -> Option<T>;

    /// A kernel pointer as a number that can be hashed and stored, equal for equal pointers.
    fn number(pointer: u64) -> u64;
}

/// Loads through BTF-typed pointers (`tp_btf` arguments and what they point to).
pub struct Btf;

impl Memory for Btf {
    #[inline(always)]
    fn read<T: Copy>(base: u64, offset: u32) -> Option<T> {
        if base == 0 {
            return None;
        }
        // SAFETY: `base` is a BTF-typed kernel pointer and `offset` a member's offset from the
        // same BTF; the verifier checks the access against the type and makes it fault-safe.
        Some(unsafe { core::ptr::read_volatile((base + offset as u64) as *const T) })
    }

    /// The verifier lets no arithmetic but addition touch a typed pointer, except the
    /// difference of two pointers, which is a plain number: the distance from a fixed
    /// address (these constants') identifies the pointer as well as the address does.
    #[inline(always)]
    fn number(pointer: u64) -> u64 {
        pointer.wrapping_sub(&raw const OFFSETS as u64)
    }
}

/// Copies with `bpf_probe_read_kernel`; a failed read is counted.
pub struct Probe;

impl Memory for Probe {
    #[inline(always)]
    fn read<T: Copy>(base: u64, offset: u32) -> Option<T> {
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

    #[inline(always)]
    fn number(pointer: u64) -> u64 {
        pointer
    }
}

/// A device as the programs count it: its identity in the slot tables, and its namespace
/// (`struct net *`), whose inode is read only when the device claims a slot.
pub struct Device {
    pub identity: DeviceIdentity,
    net: u64,
}

impl Device {
    /// The slot's `meta` word: namespace inode and interface index.
    #[inline(always)]
    pub fn meta<M: Memory>(&self) -> u64 {
        InterfaceKey {
            netns: M::read(self.net, constant!(OFFSETS.net_inum)).unwrap_or(0),
            ifindex: self.identity.ifindex,
        }
        .to_meta()
    }
}

/// The device behind a `struct net_device *`.
#[inline(always)]
pub fn device<M: Memory>(dev: u64) -> Option<Device> {
    // Without offsets from BTF the layout is unknown: read nothing.
    if !offsets_known() || dev == 0 {
        return None;
    }
    let ifindex: i32 = M::read(dev, constant!(OFFSETS.netdev_ifindex))?;
    let net: u64 = M::read(dev, constant!(OFFSETS.netdev_nd_net))?;
    let cookie: u64 = M::read(net, constant!(OFFSETS.net_cookie))?;
    Some(Device {
        identity: DeviceIdentity {
            device: M::number(dev),
            cookie,
            ifindex: ifindex as u32,
        },
        net,
    })
}

/// A network namespace as the agent tells it: its inode, and its cookie (`net->net_cookie`,
/// never given twice), which tells it from an earlier namespace that had the same inode. Each
/// is 0 when it could not be read.
#[derive(Clone, Copy)]
pub struct Namespace {
    pub inode: u32,
    pub cookie: u64,
}

impl Namespace {
    const UNKNOWN: Self = Self {
        inode: 0,
        cookie: 0,
    };

    /// The namespace of a `struct net *`.
    #[inline(always)]
    fn of<M: Memory>(net: u64) -> Self {
        Self {
            inode: M::read(net, constant!(OFFSETS.net_inum)).unwrap_or(0),
            cookie: M::read(net, constant!(OFFSETS.net_cookie)).unwrap_or(0),
        }
    }
}

/// Namespace of a `struct sock *`.
#[inline(always)]
pub fn socket_namespace<M: Memory>(sk: u64) -> Namespace {
    if !offsets_known() {
        return Namespace::UNKNOWN;
    }
    match M::read::<u64>(sk, constant!(OFFSETS.sk_net)) {
        Some(net) => Namespace::of::<M>(net),
        None => Namespace::UNKNOWN,
    }
}

/// Namespace of the device a `struct sk_buff *` is on; unknown when it has none or it cannot
/// be read.
#[inline(always)]
pub fn skb_namespace<M: Memory>(skb: u64) -> Namespace {
    if !offsets_known() || skb == 0 {
        return Namespace::UNKNOWN;
    }
    let dev: u64 = M::read(skb, offset_skb_dev()).unwrap_or(0);
    match M::read::<u64>(dev, constant!(OFFSETS.netdev_nd_net)) {
        Some(net) => Namespace::of::<M>(net),
        None => Namespace::UNKNOWN,
    }
}

/// Device of a `struct sk_buff *`; packets without a device are attributed to their
/// socket's namespace with interface index 0.
#[inline(always)]
pub fn skb_device<M: Memory>(skb: u64) -> Device {
    let dev: u64 = M::read(skb, offset_skb_dev()).unwrap_or(0);
    if let Some(device) = device::<M>(dev) {
        return device;
    }
    let sk: u64 = M::read(skb, constant!(OFFSETS.skb_sk)).unwrap_or(0);
    let net: u64 = if offsets_known() {
        M::read(sk, constant!(OFFSETS.sk_net)).unwrap_or(0)
    } else {
        0
    };
    let cookie: u64 = M::read(net, constant!(OFFSETS.net_cookie)).unwrap_or(0);
    Device {
        identity: DeviceIdentity {
            // No device: the namespace stands for it (never equal to a device's number).
            device: if net != 0 { M::number(net) } else { 1 },
            cookie,
            ifindex: 0,
        },
        net,
    }
}
