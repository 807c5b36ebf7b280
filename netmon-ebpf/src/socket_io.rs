//! Socket I/O by process and cgroup, shared by the send and receive hooks: the bytes each
//! call moved and the calls that moved any, by (process, cgroup, protocol, direction). Only
//! IP sockets count (not Unix or netlink ones). Where the kernel has `bpf_loop`, a thread's
//! calls count in its CPU's memo (`socket_memo`); in the object for older kernels, built with
//! `bounded-walk`, each call counts in its slot. Who calls is `socket_caller`'s.
use crate::kernel::{AF_INET, AF_INET6, Btf, Memory, constant};

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
    #[cfg(not(feature = "bounded-walk"))]
    crate::socket_memo::count(sk, ret, direction);
    #[cfg(feature = "bounded-walk")]
    count_in_slot(sk, ret as u64, direction);
}

/// Counts a call in its slot, claiming one if the caller has none: the path of every call
/// in the object for kernels before 5.17, which have neither `bpf_get_current_task_btf`
/// (5.11) nor the compare-and-swap the memo moves under (5.12). The task is a plain number
/// there, read with `bpf_probe_read_kernel`: the process and its cgroup come from helpers
/// instead, two calls rather than four reads.
#[cfg(feature = "bounded-walk")]
#[inline(never)]
fn count_in_slot(sk: u64, bytes: u64, direction: u8) {
    use aya_ebpf::helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
    };

    use crate::{
        kernel::Probe,
        maps::processes,
        slots::Counts as _,
        socket_caller::{claim_slot, identity_of, protocol},
    };

    // SAFETY: helpers without arguments, allowed in tracing programs.
    let (task, tgid) = unsafe { (bpf_get_current_task(), bpf_get_current_pid_tgid() >> 32) };
    let (protocol, _) = protocol(sk);
    // SAFETY: as above; the id of the task's cgroup in the default hierarchy.
    let cgroup = || unsafe { bpf_get_current_cgroup_id() };
    let id = identity_of::<Probe>(task, tgid as u32, cgroup, protocol, direction);
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
