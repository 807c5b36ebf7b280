//! The agent's side of the thread watch (`netmon-ebpf/src/thread_exit.rs` and
//! `cgroup_move.rs`): attaches both programs, then lets the socket hooks keep memos, which
//! name a thread by its kernel stack and are right only while every thread exit and cgroup
//! move on the host is counted (see `THREAD_CHANGES` in `netmon-ebpf/src/socket_caller.rs`).
use anyhow::{Context as _, anyhow};
use aya::{Ebpf, maps::Array};

use crate::probes::attach::attach_tp_btf;

/// The watch's programs and the tracepoints they attach to.
const PROGRAMS: [(&str, &str); 2] = [
    ("nm_thread_exit_btf", "sched_process_exit"),
    ("nm_cgroup_move_btf", "cgroup_attach_task"),
];

/// Attaches the watch and, once both programs run, turns the socket memos on. Without it
/// every socket call counts in its slot: exact, and slower.
pub(super) fn attach(ebpf: &mut Ebpf, btf: Option<&aya::Btf>) -> anyhow::Result<()> {
    let btf = btf.ok_or_else(|| anyhow!("the kernel has no BTF (/sys/kernel/btf/vmlinux)"))?;
    for (name, tracepoint) in PROGRAMS {
        let program = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing from the object"))?;
        attach_tp_btf(program.try_into()?, tracepoint, btf)
            .with_context(|| format!("{name} on {tracepoint}"))?;
    }
    // The object's zeroed globals: only the count of changes. Its lowest bit turns the memos
    // on; a change counted meanwhile may be overwritten, and need not be counted: no memo
    // was kept before.
    let mut changes: Array<_, u64> = Array::try_from(
        ebpf.map_mut(".bss")
            .ok_or_else(|| anyhow!("the object has no .bss map"))?,
    )?;
    changes
        .set(0, 1, 0)
        .context("turning the socket memos on")?;
    Ok(())
}
