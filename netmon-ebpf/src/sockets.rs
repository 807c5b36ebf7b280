//! `iter/tcp`: every TCP socket of the reading thread's namespace, counted by state and with
//! the local ports in use into `SOCKET_TALLY`, for the connections by state and the
//! ephemeral ports in use; and each connection not yet closed with its peer
//! (`tcp_peers.rs`). One walk of the kernel's socket tables a poll, which writes
//! nothing out: the socket dump builds and the agent decodes a netlink message for each
//! socket.
use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_skc_to_tcp_sock, bpf_skc_to_tcp_timewait_sock};

use crate::{
    kernel::{Btf, Memory, constant},
    maps::SOCKET_TALLY,
    tcp_peers::count_open_connection,
};

const TCP_TIME_WAIT: u8 = 6;
const TCP_LISTEN: u8 = 10;

/// The context is `struct bpf_iter__tcp { struct bpf_iter_meta *meta; struct sock_common
/// *sk_common; uid_t uid; }`: part of the BPF interface, not of the kernel's internals.
#[unsafe(link_section = "iter/tcp")]
#[unsafe(no_mangle)]
pub fn nm_sockets_iter(ctx: *mut c_void) -> i32 {
    // The last call of a walk has no socket.
    let Some(sk) = Btf::read::<u64>(ctx as u64, 8) else {
        return 0;
    };
    let (Some(socket_state), Some(local_port)) = (
        Btf::read::<u8>(sk, constant!(OFFSETS.sk_state)),
        Btf::read::<u16>(sk, constant!(OFFSETS.sk_num)),
    ) else {
        return 0;
    };
    let mut state = socket_state;
    // A closed connection waits as a time-wait socket, in the state it closed in: the socket
    // dump (and `ss`) shows that one.
    if state == TCP_TIME_WAIT {
        // SAFETY: the helper checks what the socket is and gives null when it is not one.
        let tw = unsafe { bpf_skc_to_tcp_timewait_sock(sk as *mut c_void) } as u64;
        state = Btf::read::<u8>(tw, constant!(OFFSETS.tw_substate)).unwrap_or(state);
    }
    let Some(tally) = SOCKET_TALLY.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: map memory that only the agent's walk, on one CPU at a time, writes.
    let walk = unsafe {
        (*tally).states[usize::from(state & 15)] += 1;
        if state != TCP_LISTEN {
            (*tally).ports[usize::from(local_port >> 6)] |= 1 << (local_port & 63);
        }
        (*tally).walk
    };
    // SAFETY: the helper checks what the socket is and gives null when it is no full one.
    let tcp = unsafe { bpf_skc_to_tcp_sock(sk as *mut c_void) } as u64;
    count_open_connection(sk, tcp, socket_state, walk);
    0
}
