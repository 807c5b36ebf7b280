//! netmon's kernel programs. Each hook lives in its own file and has one entry per attach
//! method (BTF-typed tracepoint, raw tracepoint, classic tracepoint, kprobe or fexit where it is
//! a fallback; fentry or kprobe for namespace teardown, which has no tracepoint); the agent
//! loads the one the running kernel supports. Programs only count: they never change, drop or
//! redirect a packet, and any failure leaves the packet alone.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

#[cfg(feature = "bounded-walk")]
mod bounded_walk;
mod events;
mod kernel;
mod maps;
mod samples;
mod slots;
mod socket_caller;
mod socket_io;
#[cfg(not(feature = "bounded-walk"))]
mod socket_memo;
mod tcp_peers;

mod cgroup_move;
mod drop;
mod namespaces;
mod receive;
mod socket_files;
mod socket_receive;
mod socket_send;
mod sockets;
mod tcp_events;
mod tcp_state;
mod thread_exit;
mod xmit;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
