//! What the agent learns of the running kernel and writes into the programs' read-only data
//! before they load: structure offsets, tracepoint record layouts, the drop function's
//! arguments and the reasons that are not drops.

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
    /// `struct sock`: `sk_err` (the error a failed connect ends with); `struct sock_common`:
    /// `skc_daddr`, `skc_dport` (network order) and `skc_v6_daddr` (0 where the kernel has no
    /// IPv6, and so no IPv6 sockets), the remote end of a connection.
    pub sk_err: u32,
    pub sk_daddr: u32,
    pub sk_dport: u32,
    pub sk_v6_daddr: u32,
    /// `struct tcp_sock`: `bytes_acked`, `bytes_received` and `total_retrans`, a connection's
    /// totals; `struct sock`: `sk_max_ack_backlog`, which an accepted connection copies from
    /// its listener and an opened one leaves 0 (its role as it closes); `struct inet_sock`:
    /// `inet_sport` (network order), the local port, which stays as the socket closes when
    /// `skc_num` is already 0.
    pub tcp_bytes_acked: u32,
    pub tcp_bytes_received: u32,
    pub tcp_total_retrans: u32,
    pub sk_max_ack_backlog: u32,
    pub inet_sport: u32,
    /// `struct tcp_sock`: `retrans_stamp` (while the socket is in `SYN_SENT`, when its first
    /// SYN left: in milliseconds, or in microseconds where `tcp_usec_ts` is set) and
    /// `tcp_mstamp` (the socket's clock, in microseconds); the byte and the mask of the bit
    /// field `tcp_usec_ts` (Linux 6.7; the mask is 0 before).
    pub tcp_retrans_stamp: u32,
    pub tcp_mstamp: u32,
    pub tcp_usec_ts: u32,
    pub tcp_usec_ts_mask: u32,
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
// SAFETY: `#[repr(C)]`, only integers, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelOffsets {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for TracepointFields {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for DropProbeArgs {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for NormalFreeReasons {}
