//! Socket I/O by process and cgroup, shared by the send and receive hooks: the bytes each
//! call moved and the calls that moved any, by (process, cgroup, protocol, direction). Only
//! IP sockets count (not Unix or netlink ones).
use core::{
    intrinsics::{AtomicOrdering::SeqCst, atomic_cxchg, atomic_xadd},
    ptr::{read_volatile, write_volatile},
};

use aya_ebpf::helpers::{
    bpf_get_current_task_btf, bpf_get_smp_processor_id, bpf_probe_read_kernel,
};
use netmon_common::{
    IO_OTHER, IO_TCP, IO_UDP, ProcessIoKey, ProcessName, SOCKET_MEMOS_PER_CPU, SocketMemo,
};

use crate::{
    kernel::{AF_INET, AF_INET6, Btf, IPPROTO_TCP, Memory, constant, socket_namespace},
    maps::{PROCESS_NAMES, SOCKET_MEMOS, processes},
    slots::Counts as _,
};

const IPPROTO_UDP: u16 = 17;
const IPPROTO_UDPLITE: u16 = 136;
const IPPROTO_MPTCP: u16 = 262;
const SOCK_RAW: u16 = 3;
/// A memo's `prot` that no socket has.
const NO_PROT: u64 = u64::MAX;
/// A receive that only looks at the data (`MSG_PEEK`) leaves it for the next one.
const MSG_PEEK: i32 = 2;
/// What a thread's kernel stack is aligned to, at least: its size (`THREAD_SIZE`, 16 KiB on
/// x86-64 and arm64, more with KASAN). All of a 16 KiB block is one thread's stack.
const KERNEL_STACK_ALIGN: u64 = 16 << 10;

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
    // On the line of the family: which protocol the socket speaks, as far as the memo needs to
    // know. The protocol itself is further into the socket, where a receive may not have been.
    let prot: u64 = Btf::read(sk, constant!(OFFSETS.sk_prot)).unwrap_or(0);
    // SAFETY: an aligned u64 global, read whole.
    let changes = unsafe { read_volatile(&raw const THREAD_CHANGES) };
    let Some(memo) = memo(direction) else {
        count_unseen(sk, 0, changes, ret as u64, direction);
        return;
    };
    // Which thread calls: the kernel stack this program's frame is on.
    let here = 0u8;
    // SAFETY: this CPU's memo; one program per hook, which does not nest on a CPU. The agent
    // writes only the epoch, a whole word at a time. Field by field: the memo's second line
    // is not this path's to load.
    let stack = unsafe {
        let stack = stack_of(&raw const here, memo);
        if (*memo).stack == stack
            && (*memo).changes == changes
            && (*memo).prot == prot
            && (*memo).written == read_volatile(&raw const (*memo).epoch)
        {
            (*memo).bytes += ret as u64;
            (*memo).calls += 1;
            return;
        }
        stack
    };
    count_unseen(sk, stack, changes, ret as u64, direction);
}

/// The base of the kernel stack that `frame`, on this program's stack, lies on. The verifier
/// lets a program compare and store the address of its stack, not mask it: it goes through
/// the memo's scratch word and comes back a number.
///
/// # Safety
/// `memo` is this CPU's memo.
#[inline(always)]
unsafe fn stack_of(frame: *const u8, memo: *mut SocketMemo) -> u64 {
    // SAFETY: as the caller promises; the scratch word is this program's alone.
    unsafe {
        write_volatile(&raw mut (*memo).scratch, frame as u64);
        read_volatile(&raw const (*memo).scratch) & !(KERNEL_STACK_ALIGN - 1)
    }
}

/// The path of a call the memo does not know: works out the caller's identity and finds its
/// slot (claiming one if it has none), moves what the memo counted to the memo's slot, and
/// makes the memo the caller's, counting this call. A BPF subprogram of its own, away from
/// the common path's instructions.
#[inline(never)]
fn count_unseen(sk: u64, stack: u64, changes: u64, bytes: u64, direction: u8) {
    // SAFETY: a helper without arguments, allowed in tracing programs.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    // Read after `changes` was: a move after it is counted in a later value.
    let set: u64 = Btf::read(task, constant!(OFFSETS.task_cgroups)).unwrap_or(0);
    let (protocol, raw) = protocol(sk);
    let memo = memo(direction);
    // Read before the slot is found: if the agent frees it after, the memo is not added to.
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
    let Some(slot) = table.slots.find(id.id, id.cgroup, id.start, claim) else {
        return;
    };
    let (Some(memo), Some(epoch), true) = (memo, epoch, changes & 1 == 1) else {
        if let Some(io) = table.counts.at(slot) {
            // SAFETY: this CPU's counts of the slot, as above.
            unsafe {
                (*io).bytes += bytes;
                (*io).calls += 1;
            }
        }
        return;
    };
    // A raw socket's protocol is the one its user chose: its calls never hit the memo.
    let prot = if raw {
        NO_PROT
    } else {
        Btf::read(sk, constant!(OFFSETS.sk_prot)).unwrap_or(0)
    };
    // SAFETY: this CPU's memo, as above: only this program writes it but for the epoch, and
    // the agent reads it a word at a time, between two reads of `moves`.
    unsafe {
        let moves = &raw mut (*memo).moves;
        let before = read_volatile(moves);
        advance(moves, before);
        // The memo's counts go to its slot while the slot counts for the memo's identity:
        // the agent, freeing a slot, retires its tag first, and reads its last counts only
        // once a move in flight is over.
        let last = (*memo).slot;
        if (*memo).calls != 0
            && table
                .slots
                .holds(last, (*memo).id, (*memo).extra, (*memo).extra2)
            && let Some(io) = table.counts.at(last)
        {
            (*io).bytes += (*memo).bytes;
            (*io).calls += (*memo).calls;
        }
        (*memo).stack = stack;
        (*memo).changes = changes;
        (*memo).prot = prot;
        (*memo).bytes = bytes;
        (*memo).calls = 1;
        (*memo).slot = slot;
        (*memo).written = epoch;
        (*memo).id = id.id;
        (*memo).extra = id.cgroup;
        (*memo).extra2 = id.start;
        advance(moves, before.wrapping_add(1));
    }
}

/// Adds one to a memo's count of moves, which is `now`, with an atomic compare-and-swap:
/// the BPF instruction orders the memory accesses on either side of it on every
/// architecture (a plain atomic add does not on some), and only this program writes it.
#[inline(always)]
fn advance(moves: *mut u64, now: u64) {
    // SAFETY: an aligned u64 in a map value.
    unsafe { atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(moves, now, now.wrapping_add(1)) };
}

/// The socket's protocol ([`IO_TCP`], [`IO_UDP`] or [`IO_OTHER`]), and whether it is a raw
/// socket.
#[inline(always)]
fn protocol(sk: u64) -> (u8, bool) {
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
