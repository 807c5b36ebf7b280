//! Socket I/O by process and cgroup, shared by the send and receive hooks: the bytes each
//! call moved and the calls that moved any, by (process, cgroup, protocol, direction). Only
//! IP sockets count (not Unix or netlink ones).
use core::ptr::read_volatile;

use aya_ebpf::helpers::{
    bpf_get_current_task_btf, bpf_get_smp_processor_id, bpf_probe_read_kernel,
};
use netmon_common::{
    IO_OTHER, IO_TCP, IO_UDP, ProcessIoKey, ProcessName, SOCKET_MEMOS_PER_CPU, SocketMemo,
};

use crate::{
    kernel::{AF_INET, AF_INET6, Btf, IPPROTO_TCP, Memory, constant, socket_namespace},
    maps::{PROCESS_NAMES, SOCKET_MEMOS, process_counts, processes},
    slots::Counts as _,
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
    // SAFETY: a helper without arguments, allowed in tracing programs.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    // The thread's own start and its set of cgroups tell whether this CPU's memo still
    // holds its identity: two loads from the task, where working it out takes seven.
    let thread_start: u64 = Btf::read(task, constant!(OFFSETS.task_start_boottime)).unwrap_or(0);
    let set: u64 = Btf::read(task, constant!(OFFSETS.task_cgroups)).unwrap_or(0);
    if let Some(memo) = memo(direction) {
        // SAFETY: this CPU's memo; one program per hook, which does not nest on a CPU. The
        // agent writes only the epoch, a whole word at a time.
        let (seen, epoch) = unsafe { (*memo, read_volatile(&raw const (*memo).epoch)) };
        if seen.task == task
            && seen.thread_start == thread_start
            && seen.set == set
            && seen.protocol == u32::from(protocol)
            && seen.written == epoch
            && let Some(io) = process_counts().at(seen.slot)
        {
            // SAFETY: this CPU's counts of the slot, as above.
            unsafe {
                (*io).bytes += ret as u64;
                (*io).calls += 1;
            }
            return;
        }
    }
    // Direction and protocol in one argument: a BPF function takes at most five.
    let kind = (u16::from(direction) << 8) | u16::from(protocol);
    count_unseen(sk, task, set, ret as u64, kind);
}

/// The path of a call the memo does not know: works out the caller's identity, counts it in
/// its slot (claiming one if it has none), and remembers where. A BPF subprogram of its own,
/// away from the common path's instructions.
#[inline(never)]
fn count_unseen(sk: u64, task: u64, set: u64, bytes: u64, kind: u16) {
    let (direction, protocol) = ((kind >> 8) as u8, kind as u8);
    let memo = memo(direction);
    // Read before the slot is found: if the agent frees it after, the memo is not used.
    // SAFETY: this CPU's memo, as above.
    let epoch = memo.map(|memo| unsafe { read_volatile(&raw const (*memo).epoch) });
    let id = identity(task, set, protocol, direction);
    let claim = |slot: u32| {
        // The process's name is its leader's: a thread may have named itself otherwise.
        let comm = (id.leader + constant!(OFFSETS.task_comm) as u64) as *const ProcessName;
        // SAFETY: the helper checks the address; nothing is dereferenced here.
        let name = unsafe { bpf_probe_read_kernel(comm) };
        if let (Ok(name), Some(entry)) = (name, PROCESS_NAMES.get_ptr_mut(slot)) {
            // SAFETY: the slot's entry, this program's until its claim is complete.
            unsafe { *entry = name };
        }
        socket_namespace::<Btf>(sk).inode as u64
    };
    let table = processes();
    let Some((slot, io)) = table.slot_counts(id.id, id.cgroup, id.start, claim) else {
        return;
    };
    io.bytes += bytes;
    io.calls += 1;
    if let (Some(memo), Some(epoch)) = (memo, epoch) {
        // Read again rather than passed: a BPF function takes at most five arguments.
        let thread_start = Btf::read(task, constant!(OFFSETS.task_start_boottime)).unwrap_or(0);
        // SAFETY: this CPU's memo, as above; the epoch is the agent's to write.
        unsafe {
            (*memo).task = task;
            (*memo).thread_start = thread_start;
            (*memo).set = set;
            (*memo).slot = slot;
            (*memo).protocol = u32::from(protocol);
            (*memo).written = epoch;
        }
    }
}

/// This CPU's memo for `direction`.
#[inline(always)]
fn memo(direction: u8) -> Option<*mut SocketMemo> {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    SOCKET_MEMOS.get_ptr_mut(cpu * SOCKET_MEMOS_PER_CPU + u32::from(direction))
}

/// A process slot's identity, worked out from the task: its process, protocol and direction;
/// its cgroup; its process's start (that of the leader of its group).
struct Identity {
    id: u64,
    cgroup: u64,
    start: u64,
    leader: u64,
}

/// The identity of calls by `task`, whose set of cgroups is `set`.
#[inline(always)]
fn identity(task: u64, set: u64, protocol: u8, direction: u8) -> Identity {
    let tgid: i32 = Btf::read(task, constant!(OFFSETS.task_tgid)).unwrap_or(0);
    let key = ProcessIoKey {
        tgid: tgid as u32,
        protocol,
        direction,
    };
    let leader: u64 = Btf::read(task, constant!(OFFSETS.task_group_leader)).unwrap_or(0);
    let start: u64 = Btf::read(leader, constant!(OFFSETS.task_start_boottime)).unwrap_or(0);
    Identity {
        id: key.slot_id(),
        cgroup: default_cgroup(set),
        start: ProcessIoKey::extra2(start),
        leader,
    }
}

/// The id of the cgroup in the default (v2) hierarchy of a task whose set of cgroups
/// (`task->cgroups`) is `set`: `set->dfl_cgrp->kn->id`.
#[inline(always)]
fn default_cgroup(set: u64) -> u64 {
    let cgroup: u64 = Btf::read(set, constant!(OFFSETS.css_set_dfl_cgrp)).unwrap_or(0);
    let node: u64 = Btf::read(cgroup, constant!(OFFSETS.cgroup_kn)).unwrap_or(0);
    Btf::read(node, constant!(OFFSETS.kernfs_node_id)).unwrap_or(0)
}
