//! The socket hooks' per-CPU memos (see `netmon-common`), in the object for kernels with
//! `bpf_loop` (5.17 and later): a thread's calls count in its CPU's memo, and only a change
//! of thread moves them to the slot.
use core::{
    intrinsics::{AtomicOrdering::SeqCst, atomic_cxchg},
    ptr::{read_volatile, write_volatile},
};

use aya_ebpf::helpers::{bpf_get_current_task_btf, bpf_get_smp_processor_id};
use netmon_common::socket_memo::{SOCKET_MEMOS_PER_CPU, SocketMemo};

use crate::{
    kernel::{Btf, Memory, constant},
    maps::{SOCKET_MEMOS, processes},
    slots::Counts as _,
    socket_caller::{THREAD_CHANGES, claim_slot, identity, protocol},
};

/// A memo's `prot` that no socket has.
const NO_PROT: u64 = u64::MAX;
/// What a thread's kernel stack is aligned to, at least: its size (`THREAD_SIZE`, 16 KiB on
/// x86-64 and arm64, more with KASAN). All of a 16 KiB block is one thread's stack.
const KERNEL_STACK_ALIGN: u64 = 16 << 10;

/// Counts the `ret` bytes (more than 0) a call on the IP socket `sk` moved in `direction`: in
/// the memo when it is the caller's, else on the slow path.
#[inline(always)]
pub fn count(sk: u64, ret: i32, direction: u8) {
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
    let claim = |slot| claim_slot(&id, sk, slot);
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

/// This CPU's memo for `direction`.
#[inline(always)]
fn memo(direction: u8) -> Option<*mut SocketMemo> {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    SOCKET_MEMOS.get_ptr_mut(cpu * SOCKET_MEMOS_PER_CPU + u32::from(direction))
}
