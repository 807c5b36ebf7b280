//! Who makes a socket call: the identity of the process slot its calls count in (process,
//! cgroup, protocol, direction, the process's start), what a process claiming a slot stores,
//! and the count of thread changes (exits, cgroup moves) that outdate the socket hooks' memos.
use core::intrinsics::{AtomicOrdering::SeqCst, atomic_xadd};

use aya_ebpf::helpers::bpf_probe_read_kernel;
use netmon_common::processes::{IO_OTHER, IO_TCP, IO_UDP, ProcessIoKey, ProcessName};

use crate::{
    kernel::{Btf, IPPROTO_TCP, Memory, constant, socket_namespace},
    maps::PROCESS_NAMES,
};

const IPPROTO_UDP: u16 = 17;
const IPPROTO_UDPLITE: u16 = 136;
const IPPROTO_MPTCP: u16 = 262;
const SOCK_RAW: u16 = 3;

/// Thread exits and cgroup moves on the host, two for each, counted by the thread watch
/// (`thread_exit`, `cgroup_move`); its lowest bit is set by the agent once the watch is
/// attached. A memo names its thread by its kernel stack, on which the program's frame lies:
/// while no thread has exited, no other thread has that stack, and while none has moved, the
/// thread is in the cgroup the memo counts for. Memos are kept only while the bit is set:
/// without the watch, a call counts in its slot.
#[unsafe(no_mangle)]
pub(crate) static mut THREAD_CHANGES: u64 = 0;

/// Counts a thread's exit or move to another cgroup: every memo written before is not hit
/// again.
#[inline(always)]
pub fn thread_changed() {
    // SAFETY: an aligned u64 global, added to atomically; the agent writes it once, before
    // any memo is kept.
    unsafe { atomic_xadd::<u64, u64, { SeqCst }>(&raw mut THREAD_CHANGES, 2) };
}

/// What a process claiming `slot` stores for the agent: its name in the slot's entry of the
/// names, and (returned, the slot's `meta`) the inode of the socket's namespace.
#[inline(always)]
pub fn claim_slot(id: &Identity, sk: u64, slot: u32) -> u64 {
    // The process's name is its leader's: a thread may have named itself otherwise.
    let comm = (id.leader + constant!(OFFSETS.task_comm) as u64) as *const ProcessName;
    // SAFETY: the helper checks the address; nothing is dereferenced here.
    let name = unsafe { bpf_probe_read_kernel(comm) };
    if let (Ok(name), Some(entry)) = (name, PROCESS_NAMES.get_ptr_mut(slot)) {
        // SAFETY: the slot's entry, this program's until its claim is complete.
        unsafe { *entry = name };
    }
    socket_namespace::<Btf>(sk).inode as u64
}

/// The socket's protocol ([`IO_TCP`], [`IO_UDP`] or [`IO_OTHER`]), and whether it is a raw
/// socket.
#[inline(always)]
pub fn protocol(sk: u64) -> (u8, bool) {
    if constant!(OFFSETS.sk_protocol_readable) == 0 {
        return (IO_OTHER, false);
    }
    let protocol = match Btf::read::<u16>(sk, constant!(OFFSETS.sk_protocol)) {
        Some(IPPROTO_TCP | IPPROTO_MPTCP) => IO_TCP,
        Some(IPPROTO_UDP | IPPROTO_UDPLITE) => IO_UDP,
        _ => IO_OTHER,
    };
    let kind: u16 = Btf::read(sk, constant!(OFFSETS.sk_type)).unwrap_or(0);
    (protocol, kind == SOCK_RAW)
}

/// A process slot's identity, worked out from the task: its process, protocol and direction;
/// its cgroup; its process's start (that of the leader of its group).
pub struct Identity {
    pub id: u64,
    pub cgroup: u64,
    pub start: u64,
    leader: u64,
}

/// The identity of calls by `task`, whose set of cgroups is `set`, from the typed task that
/// `bpf_get_current_task_btf` gives.
#[cfg(not(feature = "bounded-walk"))]
#[inline(always)]
pub fn identity(task: u64, set: u64, protocol: u8, direction: u8) -> Identity {
    let tgid: i32 = Btf::read(task, constant!(OFFSETS.task_tgid)).unwrap_or(0);
    identity_of::<Btf>(
        task,
        tgid as u32,
        || default_cgroup(set),
        protocol,
        direction,
    )
}

/// The identity of calls by `task` of process `tgid`, in the cgroup `cgroup()` names, read
/// through `M`: typed loads where the task came from `bpf_get_current_task_btf`, probe reads
/// where it is a number.
#[inline(always)]
pub fn identity_of<M: Memory>(
    task: u64,
    tgid: u32,
    cgroup: impl FnOnce() -> u64,
    protocol: u8,
    direction: u8,
) -> Identity {
    let key = ProcessIoKey {
        tgid,
        protocol,
        direction,
    };
    let leader: u64 = M::read(task, constant!(OFFSETS.task_group_leader)).unwrap_or(0);
    let start: u64 = M::read(leader, constant!(OFFSETS.task_start_boottime)).unwrap_or(0);
    Identity {
        id: key.slot_id(),
        cgroup: cgroup(),
        start: ProcessIoKey::extra2(start),
        leader,
    }
}

/// The id of the cgroup in the default (v2) hierarchy of a task whose set of cgroups
/// (`task->cgroups`) is `set`: `set->dfl_cgrp->kn->id`.
#[cfg(not(feature = "bounded-walk"))]
#[inline(always)]
fn default_cgroup(set: u64) -> u64 {
    let cgroup: u64 = Btf::read(set, constant!(OFFSETS.css_set_dfl_cgrp)).unwrap_or(0);
    let node: u64 = Btf::read(cgroup, constant!(OFFSETS.cgroup_kn)).unwrap_or(0);
    Btf::read(node, constant!(OFFSETS.kernfs_node_id)).unwrap_or(0)
}
