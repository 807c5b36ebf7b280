//! What the programs must be told about the running kernel before they load: struct member
//! offsets from BTF, classic tracepoint record layouts from tracefs, and the function behind
//! the drop hook's kprobe fallback.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    io::{BufRead, BufReader},
};

use netmon_common::kernel_layout::{DropProbeArgs, KernelOffsets, TracepointFields};

use crate::{
    model::probes::Hook,
    probes::{
        btf::Btf,
        tracefs::{self, TracepointFormat},
    },
};

/// Offsets of the kernel struct members the programs read, from BTF.
pub(super) fn kernel_offsets(btf: &Btf) -> anyhow::Result<KernelOffsets> {
    let protocol = btf.member_offset("sock", "sk_protocol")?;
    // Linux 6.7 and later: a connection's TCP timestamps may count microseconds.
    let usec_ts = btf.member_offset("tcp_sock", "tcp_usec_ts").ok();
    Ok(KernelOffsets {
        skb_dev: btf.byte_offset("sk_buff", "dev")?,
        skb_len: btf.byte_offset("sk_buff", "len")?,
        skb_protocol: btf.byte_offset("sk_buff", "protocol")?,
        skb_sk: btf.byte_offset("sk_buff", "sk")?,
        netdev_ifindex: btf.byte_offset("net_device", "ifindex")?,
        netdev_nd_net: btf.byte_offset("net_device", "nd_net.net")?,
        net_inum: btf.byte_offset("net", "ns.inum")?,
        net_cookie: btf.byte_offset("net", "net_cookie")?,
        sk_family: btf.byte_offset("sock", "__sk_common.skc_family")?,
        sk_state: btf.byte_offset("sock", "__sk_common.skc_state")?,
        sk_num: btf.byte_offset("sock", "__sk_common.skc_num")?,
        tw_substate: btf.byte_offset("tcp_timewait_sock", "tw_sk.tw_substate")?,
        sk_net: btf.byte_offset("sock", "__sk_common.skc_net.net")?,
        sk_protocol: protocol.byte_offset,
        tcp_srtt_us: btf.byte_offset("tcp_sock", "srtt_us")?,
        sk_protocol_readable: u32::from(!protocol.is_bitfield),
        skb_head: btf.byte_offset("sk_buff", "head")?,
        skb_network_header: btf.byte_offset("sk_buff", "network_header")?,
        sk_socket: btf.byte_offset("sock", "sk_socket")?,
        socket_inode_ino: btf.byte_offset("socket_alloc", "vfs_inode")?
            + btf.byte_offset("inode", "i_ino")?,
        socket_sk: btf.byte_offset("socket", "sk")?,
        task_tgid: btf.byte_offset("task_struct", "tgid")?,
        task_group_leader: btf.byte_offset("task_struct", "group_leader")?,
        task_start_boottime: btf.byte_offset("task_struct", "start_boottime")?,
        task_comm: btf.byte_offset("task_struct", "comm")?,
        task_cgroups: btf.byte_offset("task_struct", "cgroups")?,
        sk_prot: btf.byte_offset("sock", "__sk_common.skc_prot")?,
        css_set_dfl_cgrp: btf.byte_offset("css_set", "dfl_cgrp")?,
        cgroup_kn: btf.byte_offset("cgroup", "kn")?,
        kernfs_node_id: btf.byte_offset("kernfs_node", "id")?,
        file_inode: btf.byte_offset("file", "f_inode")?,
        inode_mode: btf.byte_offset("inode", "i_mode")?,
        inode_ino: btf.byte_offset("inode", "i_ino")?,
        sk_type: btf.member_offset("sock", "sk_type")?.byte_offset,
        sk_err: btf.byte_offset("sock", "sk_err")?,
        sk_daddr: btf.byte_offset("sock", "__sk_common.skc_daddr")?,
        sk_dport: btf.byte_offset("sock", "__sk_common.skc_dport")?,
        sk_v6_daddr: btf
            .byte_offset("sock", "__sk_common.skc_v6_daddr")
            .unwrap_or(0),
        tcp_bytes_acked: btf.byte_offset("tcp_sock", "bytes_acked")?,
        tcp_bytes_received: btf.byte_offset("tcp_sock", "bytes_received")?,
        tcp_total_retrans: btf.byte_offset("tcp_sock", "total_retrans")?,
        sk_max_ack_backlog: btf.byte_offset("sock", "sk_max_ack_backlog")?,
        inet_sport: btf.byte_offset("inet_sock", "inet_sport")?,
        tcp_retrans_stamp: btf.byte_offset("tcp_sock", "retrans_stamp")?,
        tcp_mstamp: btf.byte_offset("tcp_sock", "tcp_mstamp")?,
        tcp_usec_ts: usec_ts.map_or(0, |field| field.byte_offset),
        tcp_usec_ts_mask: usec_ts.map_or(0, |field| 1 << field.bit),
    })
}

/// Field offsets of the classic tracepoints; a tracepoint whose format cannot be read keeps
/// zeros, and its classic program is then refused at attach time. They are every hook's last
/// fallback, whatever BTF says: tracefs is mounted where it is not.
pub(super) fn tracepoint_fields() -> (TracepointFields, BTreeMap<Hook, String>) {
    let mut fields = TracepointFields::default();
    let mut missing = BTreeMap::new();
    if !tracefs::ensure_mounted() {
        for hook in Hook::ALL {
            missing.insert(hook, "tracefs is not mounted and cannot be".to_string());
        }
        return (fields, missing);
    }
    let mut read = |hook: Hook, f: &mut dyn FnMut(&TracepointFormat) -> anyhow::Result<()>| {
        let result = TracepointFormat::read(hook.category(), hook.classic_tracepoint())
            .and_then(|format| f(&format));
        if let Err(err) = result {
            missing.insert(hook, format!("{err:#}"));
        }
    };
    read(Hook::NetDevXmit, &mut |f| {
        fields.xmit_skb = f.require("skbaddr")?;
        fields.xmit_len = f.require("len")?;
        Ok(())
    });
    read(Hook::NetifReceiveSkb, &mut |f| {
        fields.recv_skb = f.require("skbaddr")?;
        fields.recv_len = f.require("len")?;
        Ok(())
    });
    read(Hook::KfreeSkb, &mut |f| {
        fields.drop_skb = f.require("skbaddr")?;
        fields.drop_protocol = f.require("protocol")?;
        fields.drop_location = f.require("location")?;
        if let Some(reason) = f.offset("reason") {
            fields.drop_reason = reason;
            fields.drop_reason_present = 1;
        }
        Ok(())
    });
    read(Hook::InetSockSetState, &mut |f| {
        fields.state_sk = f.require("skaddr")?;
        fields.state_old = f.require("oldstate")?;
        fields.state_new = f.require("newstate")?;
        fields.state_family = f.require("family")?;
        fields.state_protocol = f.require("protocol")?;
        Ok(())
    });
    read(Hook::TcpRetransmitSkb, &mut |f| {
        fields.retransmit_sk = f.require("skaddr")?;
        Ok(())
    });
    read(Hook::TcpSendReset, &mut |f| {
        fields.reset_sent_sk = f.require("skaddr")?;
        fields.reset_sent_skb = f.require("skbaddr")?;
        Ok(())
    });
    read(Hook::TcpReceiveReset, &mut |f| {
        fields.reset_received_sk = f.require("skaddr")?;
        Ok(())
    });
    (fields, missing)
}

/// The kernel function behind the drop hook on this kernel, and where its arguments are.
pub(super) fn drop_kprobe_target() -> Option<(&'static str, DropProbeArgs)> {
    let candidates = [
        (
            "sk_skb_reason_drop",
            DropProbeArgs {
                skb_arg: 1,
                reason_arg: 2,
                reason_present: 1,
            },
        ),
        (
            "kfree_skb_reason",
            DropProbeArgs {
                skb_arg: 0,
                reason_arg: 1,
                reason_present: 1,
            },
        ),
        (
            "kfree_skb",
            DropProbeArgs {
                skb_arg: 0,
                reason_arg: 0,
                reason_present: 0,
            },
        ),
    ];
    // Line by line: the whole symbol table is megabytes.
    let mut present = BTreeSet::new();
    for line in BufReader::new(File::open("/proc/kallsyms").ok()?).lines() {
        let line = line.ok()?;
        if let Some(name) = line.split_whitespace().nth(2)
            && let Some((known, _)) = candidates.iter().find(|(known, _)| *known == name)
        {
            present.insert(*known);
        }
    }
    candidates
        .into_iter()
        .find(|(name, _)| present.contains(name))
}
