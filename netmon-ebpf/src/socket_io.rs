//! Socket I/O by process and cgroup, shared by the send and receive hooks: the bytes each
//! call moved and the calls that moved any, by (process, cgroup, protocol, direction). Only
//! IP sockets count (not Unix or netlink ones). Where the kernel has `bpf_loop`, a thread's
//! calls count in its CPU's memo (`socket_memo`); in the object for older kernels, built with
//! `bounded-walk`, each call counts in its slot.
use core::intrinsics::{AtomicOrdering::SeqCst, atomic_xadd};

use aya_ebpf::helpers::bpf_probe_read_kernel;
use netmon_common::{IO_OTHER, IO_TCP, IO_UDP, ProcessIoKey, ProcessName};

use crate::{
    kernel::{AF_INET, AF_INET6, Btf, IPPROTO_TCP, Memory, constant, socket_namespace},
    maps::PROCESS_NAMES,
};

const IPPROTO_UDP: u16 = 17;
const IPPROTO_UDPLITE: u16 = 136;
const IPPROTO_MPTCP: u16 = 262;
const SOCK_RAW: u16 = 3;
/// A receive that only looks at the data (`MSG_PEEK`) leaves it for the next one.
const MSG_PEEK: i32 = 2;

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
    #[cfg(not(feature = "bounded-walk"))]
    crate::socket_memo::count(sk, ret, direction);
    #[cfg(feature = "bounded-walk")]
    count_in_slot(sk, ret as u64, direction);
}

/// Counts a call in its slot, claiming one if the caller has none: the path of every call
/// in the object for kernels before 5.17, which have neither `bpf_get_current_task_btf`
/// (5.11) nor the compare-and-swap the memo moves under (5.12). The task is a plain number
/// there, read with `bpf_probe_read_kernel`.
#[cfg(feature = "bounded-walk")]
#[inline(never)]
fn count_in_slot(sk: u64, bytes: u64, direction: u8) {
    use aya_ebpf::helpers::bpf_get_current_task;

    use crate::{kernel::Probe, maps::processes, slots::Counts as _};

    // SAFETY: a helper without arguments, allowed in tracing programs.
    let task = unsafe { bpf_get_current_task() };
    let set: u64 = Probe::read(task, constant!(OFFSETS.task_cgroups)).unwrap_or(0);
    let (protocol, _) = protocol(sk);
    let id = identity::<Probe>(task, set, protocol, direction);
    let table = processes();
    let claim = |slot| claim_slot(&id, sk, slot);
    if let Some(slot) = table.slots.find(id.id, id.cgroup, id.start, claim)
        && let Some(io) = table.counts.at(slot)
    {
        // SAFETY: this CPU's counts of the slot; one program per hook, which does not nest on
        // a CPU.
        unsafe {
            (*io).bytes += bytes;
            (*io).calls += 1;
        }
    }
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

/// The identity of calls by `task`, whose set of cgroups is `set`, read through `M`: typed
/// loads where the task came from `bpf_get_current_task_btf`, probe reads where it is a
/// number.
#[inline(always)]
pub fn identity<M: Memory>(task: u64, set: u64, protocol: u8, direction: u8) -> Identity {
    let tgid: i32 = M::read(task, constant!(OFFSETS.task_tgid)).unwrap_or(0);
    let key = ProcessIoKey {
        tgid: tgid as u32,
        protocol,
        direction,
    };
    let leader: u64 = M::read(task, constant!(OFFSETS.task_group_leader)).unwrap_or(0);
    let start: u64 = M::read(leader, constant!(OFFSETS.task_start_boottime)).unwrap_or(0);
    Identity {
        id: key.slot_id(),
        cgroup: default_cgroup::<M>(set),
        start: ProcessIoKey::extra2(start),
        leader,
    }
}

/// The id of the cgroup in the default (v2) hierarchy of a task whose set of cgroups
/// (`task->cgroups`) is `set`: `set->dfl_cgrp->kn->id`.
#[inline(always)]
fn default_cgroup<M: Memory>(set: u64) -> u64 {
    let cgroup: u64 = M::read(set, constant!(OFFSETS.css_set_dfl_cgrp)).unwrap_or(0);
    let node: u64 = M::read(cgroup, constant!(OFFSETS.cgroup_kn)).unwrap_or(0);
    M::read(node, constant!(OFFSETS.kernfs_node_id)).unwrap_or(0)
}
