//! Types shared by the kernel programs and the agent: map keys, map values, sizes and indices.
//! Every type is `#[repr(C)]` with explicit padding so that both sides agree byte for byte.
//!
//! Counters live in slot tables: a shared array of [`SlotTag`]s says what each slot counts,
//! and an array of the same length holds the counts (one per CPU where events are frequent,
//! one added to atomically where they are not). A program finds its slot from a hash of the
//! identity, looks at [`SLOT_PROBES`] consecutive slots at most, and claims a free one with
//! an atomic compare-and-swap on [`SlotTag::id`]; the agent reads the tags (memory-mapped),
//! sums the counts of the claimed slots by what each tag means, and frees the slots of what
//! is gone. A slot is used only when its whole identity matches, so a hash collision can
//! never merge two identities' counts.
#![no_std]

// Capacities are powers of two. The per-CPU tables take their size times the CPUs: they are
// sized for a busy host (hundreds of containers) and no more, so that a 128-CPU host pays
// at most 32 MiB of kernel memory for all of them (BENCHMARKS.md, table 7).

/// Capacity of the per-interface traffic table. One slot per (namespace, interface).
pub const MAX_INTERFACES: u32 = 4096;
/// Capacity of the drop table. One slot per (namespace, interface, reason, protocol).
pub const MAX_DROP_KEYS: u32 = 4096;

/// Capacity of the TCP transition table: (namespace, family, from, to).
pub const MAX_TRANSITION_KEYS: u32 = 4096;
/// Capacity of the handshake histogram table: (namespace, open kind).
pub const MAX_HANDSHAKE_KEYS: u32 = 1024;
/// Capacity of the socket I/O table: (process, cgroup, protocol, direction). The agent frees
/// the slots of processes that have exited at every poll.
pub const MAX_PROCESS_KEYS: u32 = 1024;

/// Bytes of the ring buffer that carries drop samples to the agent: about 740 samples. At
/// the default budget a CPU sends at most 400 between two reads (a burst of 200 and 2 s of
/// 100 a second); when many CPUs drop at once, what does not fit is counted as suppressed.
pub const DROP_SAMPLE_RING_BYTES: u32 = 64 * 1024;
/// Bytes of the ring that tells the agent which namespaces were torn down: about 500 a poll
/// (a record of 4 bytes takes 16 with its header).
pub const GONE_NAMESPACE_RING_BYTES: u32 = 8 * 1024;
/// Entries of the `DROP_SAMPLE_BUDGET` per-CPU array of [`SampleTally`]: what this CPU sent
/// and suppressed (written by the programs only), and how many samples it may have sent by
/// now (written by the agent only, which adds to it at every poll as a token bucket
/// refills). With one writer an entry, neither side's update can undo the other's.
pub const SAMPLE_BUDGET_SLOTS: u32 = 2;
pub const SAMPLE_USED: u32 = 0;
pub const SAMPLE_ALLOWED: u32 = 1;

/// An entry of `DROP_SAMPLE_BUDGET`. At [`SAMPLE_USED`]: samples sent, and real drops not
/// sampled (the budget was spent, or the ring full). At [`SAMPLE_ALLOWED`]: in `samples`,
/// the samples allowed by now; `suppressed` is unused.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleTally {
    pub samples: u64,
    pub suppressed: u64,
}

/// The maps of each table in the object, by the label metrics and benchmarks give the table.
pub const TABLE_MAPS: [(&str, &[&str]); 8] = [
    ("traffic", &["TRAFFIC_TAGS", "TRAFFIC", "TRAFFIC_CLAIMS"]),
    ("drops", &["DROP_TAGS", "DROPS", "DROP_CLAIMS"]),
    (
        "transitions",
        &["TRANSITION_TAGS", "TCP_TRANSITIONS", "TRANSITION_CLAIMS"],
    ),
    (
        "handshakes",
        &["HANDSHAKE_TAGS", "HANDSHAKES", "HANDSHAKE_CLAIMS"],
    ),
    (
        "processes",
        &[
            "PROCESS_TAGS",
            "PROCESS_IO",
            "PROCESS_CLAIMS",
            "PROCESS_NAMES",
            "SOCKET_MEMOS",
        ],
    ),
    ("drop_samples", &["DROP_SAMPLES", "DROP_SAMPLE_BUDGET"]),
    ("events", &["EVENTS", "GONE_NAMESPACES"]),
    ("tcp_sockets", &["SOCKET_TALLY"]),
];

/// Consecutive slots a program looks at for an identity before it counts the table as full.
/// With linear probing, 8 let a table of 4,096 slots refuse one of 1,000 identities in one
/// filling of 20, and always one of 2,048; 128 let it fill three quarters of its slots (one
/// refusal in 300 fillings to 3,072). Only identities whose first slot was taken walk
/// further, and they stop at their own slot; a full table costs each refused event 128.
pub const SLOT_PROBES: u32 = 128;

/// What one slot counts. `id` is 0 while the slot is free; it is claimed with a
/// compare-and-swap, then `meta`, `extra` and last `extra2` are written once. A program uses
/// a slot only when `id`, `extra` and `extra2` all match. `meta` is for the agent: what the
/// identity means (for devices, the namespace inode and interface index, read once at the
/// claim instead of at every packet).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotTag {
    pub id: u64,
    pub extra: u64,
    pub extra2: u64,
    pub meta: u64,
}

impl SlotTag {
    /// A claim is complete once its last word is written; tables whose identities have a
    /// second and third word keep them non-zero.
    pub fn is_complete(&self) -> bool {
        self.extra2 != 0
    }
}

/// Identity of a device in a slot table: its `struct net_device` as a number (an address,
/// or a distance from one fixed address; only equality matters), its namespace's cookie and
/// its index. A namespace made just after another died may get the dead one's address, its
/// inode, and devices at the same addresses with the same indexes; its cookie is new: the
/// kernel never gives one twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// `struct net_device *`, or the `struct net *` of a socket for packets with no device,
    /// or 1 when neither is known. Never 0.
    pub device: u64,
    /// `net->net_cookie`, the slot's `extra` word, which the agent reads to tell a namespace
    /// from an earlier one with the same inode; 0 when unknown.
    pub cookie: u64,
    pub ifindex: u32,
}

impl DeviceIdentity {
    /// The third word of a traffic slot.
    #[inline(always)]
    pub fn traffic_extra2(&self) -> u64 {
        CLAIMED | (self.ifindex as u64 & 0x7fff_ffff)
    }

    /// The third word of a drop slot: index, reason (16 bits; [`DROP_REASON_UNKNOWN`] as
    /// `0xffff`) and protocol.
    #[inline(always)]
    pub fn drop_extra2(&self, reason: u32, protocol: u16) -> u64 {
        let reason = if reason > 0xfffe {
            0xffff
        } else {
            reason as u64
        };
        self.traffic_extra2() | (reason << 32) | ((protocol as u64) << 48)
    }
}

/// Start slot of the identity (`id`, `extra`, `extra2`) in a table of `mask + 1` slots (a
/// power of two). Every word counts: the drops of one device by different reasons start at
/// different slots instead of queueing behind each other. A slot is `mask` of bits 32 and up
/// of the product, which only the factor's bits 0 to 32 + log2(slots) reach: `extra2` is
/// turned so that its reason and protocol (bits 32 to 63) land there.
#[inline(always)]
pub fn slot_hash(id: u64, extra: u64, extra2: u64) -> u32 {
    ((id ^ extra.rotate_left(29) ^ extra2.rotate_right(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 32) as u32
}

/// Set in every identity so that none is 0, the mark of a free slot.
const CLAIMED: u64 = 1 << 31;

/// Masks of the slot tables (slots - 1, each a power of two), written by the agent into the
/// programs' read-only data before they load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotMasks {
    pub traffic: u32,
    pub drops: u32,
    pub transitions: u32,
    pub handshakes: u32,
    pub processes: u32,
}

/// Key of the TCP transition map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransitionKey {
    /// Namespace inode of the socket; 0 when it could not be read.
    pub netns: u32,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u8,
    /// Kernel TCP state numbers (`TCP_ESTABLISHED` = 1 ...).
    pub old_state: u8,
    pub new_state: u8,
    pub _pad: u8,
}

impl TransitionKey {
    /// The key as a slot identity.
    #[inline(always)]
    pub fn slot_id(&self) -> u64 {
        ((self.netns as u64) << 32)
            | CLAIMED
            | ((self.family as u64) << 16)
            | ((self.old_state as u64) << 8)
            | self.new_state as u64
    }

    pub fn from_slot_id(id: u64) -> Self {
        Self {
            netns: (id >> 32) as u32,
            family: (id >> 16) as u8,
            old_state: (id >> 8) as u8,
            new_state: id as u8,
            _pad: 0,
        }
    }
}

/// The third word of a transition or handshake slot, whose second is the namespace's cookie
/// (as a device's is, see [`DeviceIdentity`]): it only marks the claim complete.
pub const NAMESPACE_SLOT_EXTRA2: u64 = CLAIMED;

/// The TCP event hooks count by namespace in the transition table, under keys whose `family`
/// is this (no address family is 0) and whose `old_state` is the [`TcpEvent`].
pub const TCP_EVENT_FAMILY: u8 = 0;

/// What the TCP event hooks count.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpEvent {
    Retransmit = 1,
    ResetSent = 2,
    ResetReceived = 3,
}

impl TransitionKey {
    /// The key under which `event` is counted for namespace `netns`.
    #[inline(always)]
    pub fn event(netns: u32, event: TcpEvent) -> Self {
        Self {
            netns,
            family: TCP_EVENT_FAMILY,
            old_state: event as u8,
            new_state: 0,
            _pad: 0,
        }
    }
}

/// Handshake histogram buckets: bucket `i` holds round trips in `[2^i, 2^(i+1))`
/// microseconds (bucket 0 also those under 1 us), the last bucket everything longer.
pub const HANDSHAKE_BUCKETS: usize = 32;
/// Active opens: `SYN_SENT` to `ESTABLISHED`.
pub const HANDSHAKE_ACTIVE: u32 = 0;
/// Passive opens: `SYN_RECV` to `ESTABLISHED`.
pub const HANDSHAKE_PASSIVE: u32 = 1;

/// Key of the handshake histogram map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandshakeKey {
    pub netns: u32,
    /// [`HANDSHAKE_ACTIVE`] or [`HANDSHAKE_PASSIVE`].
    pub open: u32,
}

impl HandshakeKey {
    /// The key as a slot identity.
    #[inline(always)]
    pub fn slot_id(&self) -> u64 {
        ((self.netns as u64) << 32) | CLAIMED | (self.open as u64 & 0xffff)
    }

    pub fn from_slot_id(id: u64) -> Self {
        Self {
            netns: (id >> 32) as u32,
            open: (id & 0xffff) as u32,
        }
    }
}

/// Value of the handshake histogram map (shared by all CPUs, added to atomically).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeHistogram {
    pub buckets: [u64; HANDSHAKE_BUCKETS],
    /// Sum of all durations, in nanoseconds.
    pub sum_ns: u64,
}

impl Default for HandshakeHistogram {
    fn default() -> Self {
        Self {
            buckets: [0; HANDSHAKE_BUCKETS],
            sum_ns: 0,
        }
    }
}

/// Indices of the `EVENTS` per-CPU array: single counters of the programs' own failures.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An interface entry could not be stored: the traffic map is full.
    TrafficMapFull = 0,
    /// A drop entry could not be stored: the drop map is full.
    DropMapFull = 1,
    /// A handshake histogram could not be stored: the handshake table is full.
    HandshakeMapFull = 2,
    /// A kernel read failed (a pointer the program followed was not readable).
    ReadFailed = 3,
    /// A transition or TCP event could not be stored: the transition map is full.
    TransitionMapFull = 4,
    /// A process's socket I/O could not be stored: the process table is full.
    ProcessMapFull = 5,
    /// A namespace's teardown could not be told: the ring of them is full.
    NamespaceNoticeLost = 6,
}

/// Entries of the `EVENTS` array.
pub const EVENT_SLOTS: u32 = 7;

/// Directions of socket I/O: data a process sent, and data it received.
pub const IO_TX: u8 = 0;
pub const IO_RX: u8 = 1;
/// Protocols of socket I/O, by the socket's IP protocol.
pub const IO_TCP: u8 = 0;
pub const IO_UDP: u8 = 1;
pub const IO_OTHER: u8 = 2;

/// What a slot of the socket I/O table counts: one process's calls that moved data in one
/// direction over sockets of one protocol. With the process's cgroup v2 id (the slot's
/// `extra`) and its start time (in `extra2`), it is the slot's identity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessIoKey {
    /// The process (thread group) id.
    pub tgid: u32,
    /// [`IO_TCP`], [`IO_UDP`] or [`IO_OTHER`].
    pub protocol: u8,
    /// [`IO_TX`] or [`IO_RX`].
    pub direction: u8,
}

impl ProcessIoKey {
    /// The key as a slot identity.
    #[inline(always)]
    pub fn slot_id(&self) -> u64 {
        ((self.tgid as u64) << 32) | CLAIMED | ((self.protocol as u64) << 8) | self.direction as u64
    }

    pub fn from_slot_id(id: u64) -> Self {
        Self {
            tgid: (id >> 32) as u32,
            protocol: (id >> 8) as u8,
            direction: id as u8,
        }
    }

    /// The third word of a slot: the process's start (`start_boottime` of its leader, in ns
    /// since boot, as `/proc/<pid>/stat` counts it in clock ticks), so that a process id the
    /// kernel gives again never adds to the counts of the process that had it before.
    #[inline(always)]
    pub fn extra2(start_boottime_ns: u64) -> u64 {
        start_boottime_ns | PROCESS_CLAIMED
    }

    /// The start time a slot's third word holds.
    pub fn start_boottime_ns(extra2: u64) -> u64 {
        extra2 & !PROCESS_CLAIMED
    }
}

/// Set in the third word of a process slot so that it is never 0 (a claim is complete once
/// it is written); boot times in ns stay far below it.
const PROCESS_CLAIMED: u64 = 1 << 63;

/// Value of the socket I/O table (one per CPU and slot): bytes moved (the calls' return
/// values) and calls that moved any.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketIo {
    pub bytes: u64,
    pub calls: u64,
}

/// Where one CPU last counted a thread's socket calls in one direction, and what it counted
/// there since: entry `cpu * 2 + direction` of an array the agent maps, two cache lines each.
///
/// A call by the same thread, told by its kernel stack (which no other live thread shares;
/// the program's frame lies on it), with no thread exit or cgroup move on the host since the
/// memo was written (`changes`, see `THREAD_CHANGES` in `netmon-ebpf`) and on a socket with
/// the same protocol operations (`sk->sk_prot`: one `struct proto` serves sockets of one IP
/// protocol, but for raw sockets, which the memo never keeps), adds to the memo's own `bytes`
/// and `calls` and touches nothing but the memo's first line: no helper call and no load
/// from the task. A call by another thread (or in another epoch)
/// moves the memo's counts into its slot's counts, if the slot still counts for the memo's
/// identity (the second line), and makes the memo its own. The agent adds a memo's counts to
/// its slot's when reading while the identities match. A move happens while `moves` is odd:
/// the agent reads a CPU's counts and memos again when a move was under way or happened
/// meanwhile.
///
/// The agent frees only the slots of processes that have exited; after freeing any, it adds
/// one to every memo's `epoch`, and a memo whose `written` is not the epoch it was written in
/// is not added to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketMemo {
    /// The base of the kernel stack of the thread that wrote the memo.
    pub stack: u64,
    /// The count of thread exits and cgroup moves when the memo was written.
    pub changes: u64,
    /// The socket's `sk_prot`; `u64::MAX`, which no socket has, for a raw socket (whose
    /// protocol is its user's choice).
    pub prot: u64,
    /// Counted here, not yet in the slot's counts.
    pub bytes: u64,
    pub calls: u64,
    /// The `epoch` in which the program wrote the memo, read before it found the slot.
    pub written: u32,
    /// Advanced by the agent each time it frees slots.
    pub epoch: u32,
    /// Where the program turns the address of its frame into a number, to find its stack.
    pub scratch: u64,
    /// To the end of the first line.
    pub _first: u64,
    /// Advanced by the program before and after each move; on the second line, which only a
    /// move writes.
    pub moves: u64,
    pub slot: u32,
    pub _slot: u32,
    /// The slot's identity (its tag's `id`, `extra`, `extra2`).
    pub id: u64,
    pub extra: u64,
    pub extra2: u64,
    /// To the end of the line: a CPU's memo shares its lines with no other CPU's.
    pub _second: [u64; 3],
}

const _: () = assert!(size_of::<SocketMemo>() == 128);
const _: () = assert!(core::mem::offset_of!(SocketMemo, moves) == 64);

impl SocketMemo {
    /// Whether the memo's counts belong to the slot with `tag`.
    pub fn counts_for(&self, tag: &SlotTag) -> bool {
        (self.id, self.extra, self.extra2) == (tag.id, tag.extra, tag.extra2)
    }
}

/// Socket memos a CPU has: one for each direction.
pub const SOCKET_MEMOS_PER_CPU: u32 = 2;

/// Arrays that hold a region of values for each possible CPU, sized by the agent before it
/// loads them: their names, and the values in a CPU's region.
pub const CPU_REGION_MAPS: [(&str, u32); 2] = [
    ("PROCESS_IO", MAX_PROCESS_KEYS),
    ("SOCKET_MEMOS", SOCKET_MEMOS_PER_CPU),
];

/// A process's name as the kernel keeps it (`comm`), NUL-padded; written when the process
/// claims a slot.
pub type ProcessName = [u8; 16];

/// Key of the per-interface traffic map and part of the drop key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceKey {
    /// Inode number of the interface's network namespace, as `/proc/<pid>/ns/net` shows it.
    pub netns: u32,
    /// Interface index inside that namespace; 0 when the packet had no device.
    pub ifindex: u32,
}

impl InterfaceKey {
    /// The key as a slot's `meta` word.
    #[inline(always)]
    pub fn to_meta(&self) -> u64 {
        ((self.netns as u64) << 32) | self.ifindex as u64
    }

    pub fn from_meta(meta: u64) -> Self {
        Self {
            netns: (meta >> 32) as u32,
            ifindex: meta as u32,
        }
    }
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

impl DropKey {
    /// The drop a complete drop slot counts (see [`DeviceIdentity::drop_extra2`]).
    pub fn from_slot(tag: &SlotTag) -> Self {
        let reason = ((tag.extra2 >> 32) & 0xffff) as u32;
        Self {
            interface: InterfaceKey::from_meta(tag.meta),
            reason: if reason == 0xffff {
                DROP_REASON_UNKNOWN
            } else {
                reason
            },
            protocol: (tag.extra2 >> 48) as u16,
            _pad: 0,
        }
    }
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
    /// `struct net`: `ns.inum`, `net_cookie`.
    pub net_inum: u32,
    pub net_cookie: u32,
    /// `struct sock_common`: `skc_family`, `skc_state`, `skc_net`; `struct sock`: `sk_protocol`.
    pub sk_family: u32,
    pub sk_state: u32,
    pub sk_net: u32,
    pub sk_protocol: u32,
    /// `struct sock_common`: `skc_num` (the local port, in host order).
    pub sk_num: u32,
    /// `struct tcp_timewait_sock`: `tw_sk.tw_substate` (the state a closed connection shows:
    /// `TIME_WAIT`, or `FIN_WAIT2` while the peer has not closed).
    pub tw_substate: u32,
    /// `struct tcp_sock`: `srtt_us` (smoothed round-trip time in microseconds, times 8).
    pub tcp_srtt_us: u32,
    /// 1 when `sk_protocol` is a plain 16-bit field and can be read; 0 on kernels where it is a
    /// bit field (then the state hook trusts the tracepoint to be TCP-only).
    pub sk_protocol_readable: u32,
    /// `struct sk_buff`: `head` (start of the buffer) and `network_header` (offset of the IP
    /// header from `head`), for the flow of a drop sample.
    pub skb_head: u32,
    pub skb_network_header: u32,
    /// `struct sock`: `sk_socket`; and from a `struct socket` to its inode number
    /// (`socket_alloc.vfs_inode` plus `inode.i_ino`), which names the socket in
    /// `/proc/<pid>/fd`.
    pub sk_socket: u32,
    pub socket_inode_ino: u32,
    /// `struct socket`: `sk`.
    pub socket_sk: u32,
    /// `struct task_struct`: `tgid`, `group_leader`, `start_boottime`, `comm` and `cgroups`;
    /// from a `struct css_set` to its default hierarchy's cgroup's id (`dfl_cgrp`, then
    /// `cgroup.kn`, then `kernfs_node.id`), as `bpf_get_current_cgroup_id` reads it.
    pub task_tgid: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub task_comm: u32,
    pub task_cgroups: u32,
    /// `struct sock_common`: `skc_prot`, the socket's protocol operations: beside the family
    /// on the socket's first line, and one `struct proto` for each protocol (see
    /// `SocketMemo`).
    pub sk_prot: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// `struct file`: `f_inode`; `struct inode`: `i_mode` and `i_ino`, for the sockets among a
    /// process's open files.
    pub file_inode: u32,
    pub inode_mode: u32,
    pub inode_ino: u32,
    /// `struct sock`: `sk_type` (`SOCK_RAW` is 3), beside `sk_protocol`.
    pub sk_type: u32,
}

/// One dropped packet as the drop hook samples it. Addresses are in network order, IPv4 in
/// the first four bytes; ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropSample {
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`).
    pub time_ns: u64,
    /// Where in the kernel the packet was freed (the tracepoint's `location`); 0 if unknown.
    pub location: u64,
    /// Inode number of the packet's socket, when it has a full one; 0 otherwise.
    pub socket_inode: u64,
    /// [`InterfaceKey::to_meta`] of the device.
    pub interface: u64,
    pub reason: u32,
    /// `skb->protocol` in host order (0x0800 IPv4, 0x86dd IPv6).
    pub ethertype: u16,
    /// 4 or 6 when the packet's IP header was read; 0 otherwise.
    pub family: u8,
    /// IP protocol (6 TCP, 17 UDP, ...), when `family` is set.
    pub ip_protocol: u8,
    pub source_port: u16,
    pub destination_port: u16,
    /// TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ...).
    pub tcp_flags: u8,
    pub _pad: [u8; 3],
    pub source: [u8; 16],
    pub destination: [u8; 16],
}

/// What one walk of the TCP socket iterator counts, in its one-entry map: sockets by state
/// (`TCP_NEW_SYN_RECV`, 12, for a connection request) and, one bit a port, the local ports
/// that some socket other than a listener holds. The agent zeroes it before each walk; only
/// the agent's walk, on one CPU at a time, writes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSocketTally {
    pub states: [u64; 16],
    pub ports: [u64; 1024],
}

impl TcpSocketTally {
    pub const ZERO: Self = Self {
        states: [0; 16],
        ports: [0; 1024],
    };
}

/// One open socket of a process, as the socket file iterator writes it: the socket's inode
/// number (what `/proc/<pid>/fd` shows as `socket:[N]`) and the process's id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketFileRecord {
    pub inode: u64,
    pub tgid: u32,
    pub pad: u32,
}

/// Offsets of the fields of classic (format-file) tracepoints, read from
/// `/sys/kernel/tracing/events/<category>/<name>/format` at load time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointFields {
    /// `net:net_dev_start_xmit`: `skbaddr`, `len`.
    pub xmit_skb: u32,
    pub xmit_len: u32,
    /// `net:netif_receive_skb`: `skbaddr`, `len`.
    pub recv_skb: u32,
    pub recv_len: u32,
    /// `skb:kfree_skb`: `skbaddr`, `protocol`, `reason` (`reason_present` 0 when absent),
    /// `location`.
    pub drop_skb: u32,
    pub drop_protocol: u32,
    pub drop_reason: u32,
    pub drop_reason_present: u32,
    pub drop_location: u32,
    /// `sock:inet_sock_set_state`: `skaddr`, `oldstate`, `newstate`, `family`, `protocol`.
    pub state_sk: u32,
    pub state_old: u32,
    pub state_new: u32,
    pub state_family: u32,
    pub state_protocol: u32,
    /// `tcp:tcp_retransmit_skb` and `tcp:tcp_send_reset`: `skaddr`, `skbaddr`;
    /// `tcp:tcp_receive_reset`: `skaddr`.
    pub retransmit_sk: u32,
    pub reset_sent_sk: u32,
    pub reset_sent_skb: u32,
    pub reset_received_sk: u32,
    /// Not a classic field: 1 when the BTF-typed and raw `kfree_skb` tracepoints pass a reason
    /// as third argument (Linux 5.17, with `enum skb_drop_reason` in BTF); before, their
    /// programs must not read it, which the verifier refuses. Last, so that adding it moved
    /// none of the constants the per-packet hooks read.
    pub drop_reason_argument: u32,
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
    unsafe impl aya::Pod for TransitionKey {}
    unsafe impl aya::Pod for HandshakeKey {}
    unsafe impl aya::Pod for HandshakeHistogram {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for TracepointFields {}
    unsafe impl aya::Pod for DropProbeArgs {}
    unsafe impl aya::Pod for NormalFreeReasons {}
    unsafe impl aya::Pod for SlotTag {}
    unsafe impl aya::Pod for SlotMasks {}
    unsafe impl aya::Pod for DropSample {}
    unsafe impl aya::Pod for SampleTally {}
    unsafe impl aya::Pod for SocketIo {}
    unsafe impl aya::Pod for SocketMemo {}
    unsafe impl aya::Pod for TcpSocketTally {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_of_one_device_by_different_reasons_start_at_different_slots() {
        let device = DeviceIdentity {
            device: 0xffff_8881_0a3c_6000,
            cookie: 4097,
            ifindex: 2,
        };
        let mask = MAX_DROP_KEYS - 1;
        let mut starts = [0u32; 16];
        for (start, reason) in starts.iter_mut().zip(1..) {
            let extra2 = device.drop_extra2(reason, 0x0800);
            *start = slot_hash(device.device, device.cookie, extra2) & mask;
        }
        starts.sort_unstable();
        assert!(starts.windows(2).all(|w| w[0] != w[1]), "{starts:?}");
    }

    #[test]
    fn slot_identities_round_trip_and_are_never_free() {
        let transition = TransitionKey {
            netns: 4_026_532_000,
            family: 10,
            old_state: 2,
            new_state: 1,
            _pad: 0,
        };
        assert_eq!(
            TransitionKey::from_slot_id(transition.slot_id()),
            transition
        );
        assert_ne!(TransitionKey::default().slot_id(), 0);

        let handshake = HandshakeKey {
            netns: 7,
            open: HANDSHAKE_PASSIVE,
        };
        assert_eq!(HandshakeKey::from_slot_id(handshake.slot_id()), handshake);

        let interface = InterfaceKey {
            netns: 4_026_531_840,
            ifindex: 0x7fff_fffe,
        };
        assert_eq!(InterfaceKey::from_meta(interface.to_meta()), interface);
        let device = DeviceIdentity {
            device: 1,
            cookie: 0,
            ifindex: 0,
        };
        assert_ne!(device.traffic_extra2(), 0);
        for (reason, protocol) in [(DROP_REASON_UNKNOWN, 0x86dd), (2, 0x0800), (0xfffe, 0)] {
            let tag = SlotTag {
                id: 1,
                extra: 0,
                extra2: device.drop_extra2(reason, protocol),
                meta: interface.to_meta(),
            };
            assert!(tag.is_complete());
            let drop = DropKey::from_slot(&tag);
            assert_eq!(drop.interface, interface);
            assert_eq!((drop.reason, drop.protocol), (reason, protocol));
        }
    }

    #[test]
    fn device_identities_keep_index_reason_and_protocol_apart() {
        let a = DeviceIdentity {
            device: 5,
            cookie: 9,
            ifindex: 2,
        };
        let b = DeviceIdentity { ifindex: 3, ..a };
        assert_ne!(a.traffic_extra2(), b.traffic_extra2());
        assert_ne!(a.drop_extra2(2, 0x800), a.drop_extra2(3, 0x800));
        assert_ne!(a.drop_extra2(2, 0x800), a.drop_extra2(2, 0x86dd));
    }
}
