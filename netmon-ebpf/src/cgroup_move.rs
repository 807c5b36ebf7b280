//! `cgroup:cgroup_attach_task`: a process or thread moved to another cgroup, after the move;
//! the socket memos, which count for a thread's cgroup, stop hitting (see
//! `socket_caller::THREAD_CHANGES`). Every move of a task in the default hierarchy goes
//! through `cgroup_attach_task`, which fires this tracepoint.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::socket_caller::thread_changed;

// TP_PROTO(struct cgroup *dst_cgrp, const char *path, struct task_struct *task,
//          bool threadgroup)
#[btf_tracepoint(function = "cgroup_attach_task")]
pub fn nm_cgroup_move_btf(_ctx: BtfTracePointContext) -> i32 {
    thread_changed();
    0
}
