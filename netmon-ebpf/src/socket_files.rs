//! `iter/task_file`: the sockets among every process's open files, as (socket inode, process).
//! Which processes hold the listening sockets and the sockets of sampled drops, in one walk
//! of the kernel's file tables, where reading every `/proc/<pid>/fd` link costs a path lookup
//! and a formatted name for each open file.
use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_seq_write;
use netmon_common::iterators::SocketFileRecord;

use crate::kernel::{Btf, Memory, constant};

/// `S_IFMT` and `S_IFSOCK` of `inode.i_mode`.
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

/// The context is `struct bpf_iter__task_file { struct bpf_iter_meta *meta; struct
/// task_struct *task; u32 fd; struct file *file; }`, and `meta` starts with `struct seq_file
/// *seq`: both are part of the BPF interface, not of the kernel's internals. The kernel visits
/// a thread's files only where they are not its process's.
#[unsafe(link_section = "iter/task_file")]
#[unsafe(no_mangle)]
pub fn nm_socket_files_iter(ctx: *mut c_void) -> i32 {
    let ctx = ctx as u64;
    // The last call of a walk has no file.
    let (Some(meta), Some(task), Some(file)) = (
        Btf::read::<u64>(ctx, 0),
        Btf::read::<u64>(ctx, 8),
        Btf::read::<u64>(ctx, 24),
    ) else {
        return 0;
    };
    // Read before anything else: Linux 6.1's verifier, which cannot tell that a second test
    // of `meta` against null has the first one's answer, then sees one test.
    let Some(seq) = Btf::read::<u64>(meta, 0) else {
        return 0;
    };
    let Some(inode) = Btf::read::<u64>(file, constant!(OFFSETS.file_inode)) else {
        return 0;
    };
    let Some(mode) = Btf::read::<u16>(inode, constant!(OFFSETS.inode_mode)) else {
        return 0;
    };
    if mode & S_IFMT != S_IFSOCK {
        return 0;
    }
    let (Some(number), Some(tgid)) = (
        Btf::read::<u64>(inode, constant!(OFFSETS.inode_ino)),
        Btf::read::<i32>(task, constant!(OFFSETS.task_tgid)),
    ) else {
        return 0;
    };
    let record = SocketFileRecord {
        inode: number,
        tgid: tgid as u32,
        pad: 0,
    };
    // SAFETY: the iterator's own output, and a record on this program's stack.
    unsafe {
        bpf_seq_write(
            seq as *mut _,
            (&raw const record).cast(),
            size_of::<SocketFileRecord>() as u32,
        )
    };
    0
}
