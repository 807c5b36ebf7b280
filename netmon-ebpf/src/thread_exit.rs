//! `sched:sched_process_exit`: a thread exits, and its kernel stack may serve another thread
//! next; the socket memos that name threads by their stacks stop hitting (see
//! `socket_caller::THREAD_CHANGES`).
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::socket_caller::thread_changed;

// TP_PROTO(struct task_struct *p, ...): run by the exiting thread, once for each thread.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn nm_thread_exit_btf(_ctx: BtfTracePointContext) -> i32 {
    thread_changed();
    0
}
