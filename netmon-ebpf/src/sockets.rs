//! `iter/tcp`: every TCP socket of the reading thread's namespace, as its state and local
//! port, for the connections by state and the ephemeral ports in use. One walk of the kernel's
//! socket tables a poll, where the socket dump builds and the agent decodes a netlink message
//! for each socket.
use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_seq_write, bpf_skc_to_tcp_timewait_sock};
use netmon_common::TcpSocketRecord;

use crate::kernel::{Btf, Memory, constant};

const TCP_TIME_WAIT: u8 = 6;

/// The context is `struct bpf_iter__tcp { struct bpf_iter_meta *meta; struct sock_common
/// *sk_common; uid_t uid; }`, and `meta` starts with `struct seq_file *seq`: both are part of
/// the BPF interface, not of the kernel's internals.
#[unsafe(link_section = "iter/tcp")]
#[unsafe(no_mangle)]
pub fn nm_sockets_iter(ctx: *mut c_void) -> i32 {
    let ctx = ctx as u64;
    // The last call of a walk has no socket.
    let (Some(meta), Some(sk)) = (Btf::read::<u64>(ctx, 0), Btf::read::<u64>(ctx, 8)) else {
        return 0;
    };
    let Some(seq) = Btf::read::<u64>(meta, 0) else {
        return 0;
    };
    let (Some(mut state), Some(local_port)) = (
        Btf::read::<u8>(sk, constant!(OFFSETS.sk_state)),
        Btf::read::<u16>(sk, constant!(OFFSETS.sk_num)),
    ) else {
        return 0;
    };
    // A closed connection waits as a time-wait socket, in the state it closed in: the socket
    // dump (and `ss`) shows that one.
    if state == TCP_TIME_WAIT {
        // SAFETY: the helper checks what the socket is and gives null when it is not one.
        let tw = unsafe { bpf_skc_to_tcp_timewait_sock(sk as *mut c_void) } as u64;
        state = Btf::read::<u8>(tw, constant!(OFFSETS.tw_substate)).unwrap_or(state);
    }
    let record = TcpSocketRecord {
        state,
        pad: 0,
        local_port,
    };
    // SAFETY: the iterator's own output, and a record on this program's stack.
    unsafe {
        bpf_seq_write(
            seq as *mut _,
            (&raw const record).cast(),
            size_of::<TcpSocketRecord>() as u32,
        )
    };
    0
}
