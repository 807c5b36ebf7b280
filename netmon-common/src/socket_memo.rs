//! The socket hooks' per-CPU memos (in the `bpf_loop` build only): where a CPU last counted a
//! thread's socket calls, so that the next call of the same thread counts without a walk.
use crate::slots::SlotTag;

/// The map of the memos, sized by the agent (see `CPU_REGION_MAPS`).
pub const SOCKET_MEMOS: &str = "SOCKET_MEMOS";

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
// SAFETY: `#[repr(C)]`, only integers, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for SocketMemo {}
