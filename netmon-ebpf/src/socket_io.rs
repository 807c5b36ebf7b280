//! Socket I/O by process and cgroup, shared by the send and receive hooks: the bytes each
//! call moved and the calls that moved any, by (process, cgroup, protocol, direction). Only
//! IP sockets count (not Unix or netlink ones).
use aya_ebpf::helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel};
use netmon_common::{IO_OTHER, IO_TCP, IO_UDP, ProcessIoKey, ProcessName};

use crate::{
    kernel::{AF_INET, AF_INET6, Btf, IPPROTO_TCP, Memory, constant, socket_netns},
    maps::{PROCESS_NAMES, processes},
};

const IPPROTO_UDP: u16 = 17;
const IPPROTO_UDPLITE: u16 = 136;
const IPPROTO_MPTCP: u16 = 262;
/// A receive that only looks at the data (`MSG_PEEK`) leaves it for the next one.
const MSG_PEEK: i32 = 2;

/// Counts a call on socket `sk` that returned `ret` (bytes, or a negative error) in
/// `direction`, in the calling process's context.
#[inline(always)]
pub fn count_socket_io(sk: u64, ret: i32, flags: i32, direction: u8) {
    if ret <= 0 || flags & MSG_PEEK != 0 {
        return;
    }
    let family: u16 = Btf::read(sk, constant!(OFFSETS.sk_family)).unwrap_or(0);
    if family != AF_INET && family != AF_INET6 {
        return;
    }
    let protocol = if constant!(OFFSETS.sk_protocol_readable) != 0 {
        match Btf::read::<u16>(sk, constant!(OFFSETS.sk_protocol)) {
            Some(IPPROTO_TCP | IPPROTO_MPTCP) => IO_TCP,
            Some(IPPROTO_UDP | IPPROTO_UDPLITE) => IO_UDP,
            _ => IO_OTHER,
        }
    } else {
        IO_OTHER
    };
    // The process, its start and its cgroup are read from the task with typed loads: one
    // helper call where three would be.
    // SAFETY: a helper without arguments, allowed in tracing programs.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    let tgid: i32 = Btf::read(task, constant!(OFFSETS.task_tgid)).unwrap_or(0);
    let key = ProcessIoKey {
        tgid: tgid as u32,
        protocol,
        direction,
    };
    let leader: u64 = Btf::read(task, constant!(OFFSETS.task_group_leader)).unwrap_or(0);
    let start: u64 = Btf::read(leader, constant!(OFFSETS.task_start_boottime)).unwrap_or(0);
    let cgroup = current_cgroup(task);
    let claim = |slot: u32| {
        // The process's name is its leader's: a thread may have named itself otherwise.
        let comm = (leader + constant!(OFFSETS.task_comm) as u64) as *const ProcessName;
        // SAFETY: the helper checks the address; nothing is dereferenced here.
        let name = unsafe { bpf_probe_read_kernel(comm) };
        if let (Ok(name), Some(entry)) = (name, PROCESS_NAMES.get_ptr_mut(slot)) {
            // SAFETY: the slot's entry, this program's until its claim is complete.
            unsafe { *entry = name };
        }
        socket_netns::<Btf>(sk).unwrap_or(0) as u64
    };
    if let Some(io) = processes().counts(key.slot_id(), cgroup, ProcessIoKey::extra2(start), claim)
    {
        io.bytes += ret as u64;
        io.calls += 1;
    }
}

/// The id of `task`'s cgroup in the default (v2) hierarchy: `task->cgroups->dfl_cgrp->kn->id`.
#[inline(always)]
fn current_cgroup(task: u64) -> u64 {
    let set: u64 = Btf::read(task, constant!(OFFSETS.task_cgroups)).unwrap_or(0);
    let cgroup: u64 = Btf::read(set, constant!(OFFSETS.css_set_dfl_cgrp)).unwrap_or(0);
    let node: u64 = Btf::read(cgroup, constant!(OFFSETS.cgroup_kn)).unwrap_or(0);
    Btf::read(node, constant!(OFFSETS.kernfs_node_id)).unwrap_or(0)
}
