//! Samples of real drops for the agent's record of recent drops: where the packet died, its
//! flow and its socket. A per-CPU budget that the agent refills (a token bucket whose clock
//! is the agent's) bounds them: beyond counting, a drop in a storm costs a look at two
//! entries of this CPU's budget and an increment, and the drops not sampled are counted.
use aya_ebpf::helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel};
use netmon_common::samples::{DropSample, SAMPLE_ALLOWED, SAMPLE_USED};

use crate::{
    kernel::{Memory, Probe, constant},
    maps::{DROP_SAMPLE_BUDGET, DROP_SAMPLES},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// `TCP_TIME_WAIT` and `TCP_NEW_SYN_RECV`: sockets that are not full `struct sock`s.
const TCP_TIME_WAIT: u8 = 6;
const TCP_NEW_SYN_RECV: u8 = 12;
/// Bytes read from the IP header on: an IPv6 header (40) and the transport header's first 14
/// (ports, and TCP's flags at 13), or an IPv4 header without options (20) and the same.
const HEADERS: usize = 56;

/// Whether this CPU may send one more sample; a drop it may not sample is counted.
#[inline(always)]
fn take_token() -> bool {
    let (Some(tally), Some(allowed)) = (
        DROP_SAMPLE_BUDGET.get_ptr_mut(SAMPLE_USED),
        DROP_SAMPLE_BUDGET.get_ptr(SAMPLE_ALLOWED),
    ) else {
        return false;
    };
    // SAFETY: this CPU's values; the first entry is written by programs only, the second by
    // the agent only.
    unsafe {
        if (*tally).samples < core::ptr::read_volatile(&raw const (*allowed).samples) {
            (*tally).samples += 1;
            return true;
        }
        (*tally).suppressed += 1;
    }
    false
}

/// Counts a sample that could not be sent (the ring is full) as suppressed.
#[inline(always)]
fn suppressed() {
    if let Some(tally) = DROP_SAMPLE_BUDGET.get_ptr_mut(SAMPLE_USED) {
        // SAFETY: this CPU's value, written by programs only.
        unsafe { (*tally).suppressed += 1 };
    }
}

/// Reads a `T` at `address` with `bpf_probe_read_kernel`. Packet bytes may lie beyond what
/// the packet holds: a failed read only leaves the sample without that part, and is not one
/// of the programs' read failures.
#[inline(always)]
fn read<T: Copy>(address: u64) -> Option<T> {
    if address == 0 {
        return None;
    }
    // SAFETY: the helper checks the address; nothing is dereferenced here.
    unsafe { bpf_probe_read_kernel(address as *const T) }.ok()
}

/// Samples the drop of `skb` (of `ethertype`, in host order) if this CPU's budget allows:
/// `interface()` is the device's [`netmon_common::traffic::InterfaceKey`] as a slot's meta word,
/// `location` where it was freed.
#[inline(always)]
pub fn sample_drop<M: Memory>(
    skb: u64,
    ethertype: u16,
    reason: u32,
    location: u64,
    interface: impl FnOnce() -> u64,
) {
    if take_token() {
        send_sample::<M>(skb, ethertype, reason, location, interface);
    }
}

/// Sends one sample. Fields of the kernel's structures are read the hook's way (`M`); the
/// packet's bytes and the socket's inode, which lie beyond any typed pointer, are copied with
/// `bpf_probe_read_kernel`: one copy for the headers, one for the inode. A function of its
/// own (a BPF subprogram), so that the drops it does not sample carry none of its code or
/// registers.
#[inline(never)]
fn send_sample<M: Memory>(
    skb: u64,
    ethertype: u16,
    reason: u32,
    location: u64,
    interface: impl FnOnce() -> u64,
) {
    let mut sample = DropSample {
        // SAFETY: a helper without arguments.
        time_ns: unsafe { bpf_ktime_get_ns() },
        location,
        interface: interface(),
        reason,
        ethertype,
        ..DropSample::default()
    };
    read_flow::<M>(skb, &mut sample);
    sample.socket_inode = socket_inode::<M>(skb).unwrap_or(0);
    if DROP_SAMPLES.output::<DropSample>(&sample, 0).is_err() {
        // The ring is full: the agent has not read it for a while.
        suppressed();
    }
}

/// The packet's addresses, protocol, ports and TCP flags, from its IP header.
#[inline(always)]
fn read_flow<M: Memory>(skb: u64, sample: &mut DropSample) -> Option<()> {
    // `head` is copied: the verifier lets no offset known only at run time be added to a
    // typed pointer.
    let head: u64 = Probe::read(skb, constant!(OFFSETS.skb_head))?;
    let network: u16 = M::read(skb, constant!(OFFSETS.skb_network_header))?;
    let ip = head + network as u64;
    let headers: [u8; HEADERS] = read(ip)?;
    let transport = match sample.ethertype {
        ETH_P_IP if headers[0] >> 4 == 4 => {
            sample.family = 4;
            sample.ip_protocol = headers[9];
            sample.source[..4].copy_from_slice(&headers[12..16]);
            sample.destination[..4].copy_from_slice(&headers[16..20]);
            // A fragment after the first has no transport header.
            if u16::from_be_bytes([headers[6], headers[7]]) & 0x1fff != 0 {
                return None;
            }
            let length = (headers[0] & 0x0f) as usize * 4;
            if length == 20 {
                let mut transport = [0u8; 14];
                transport.copy_from_slice(&headers[20..34]);
                transport
            } else {
                // Options: the transport header is further on.
                read(ip + length as u64)?
            }
        }
        ETH_P_IPV6 if headers[0] >> 4 == 6 => {
            sample.family = 6;
            // Extension headers are not followed: their protocol is what the sample shows.
            sample.ip_protocol = headers[6];
            sample.source.copy_from_slice(&headers[8..24]);
            sample.destination.copy_from_slice(&headers[24..40]);
            let mut transport = [0u8; 14];
            transport.copy_from_slice(&headers[40..54]);
            transport
        }
        _ => return None,
    };
    if sample.ip_protocol == IPPROTO_TCP || sample.ip_protocol == IPPROTO_UDP {
        sample.source_port = u16::from_be_bytes([transport[0], transport[1]]);
        sample.destination_port = u16::from_be_bytes([transport[2], transport[3]]);
    }
    if sample.ip_protocol == IPPROTO_TCP {
        sample.tcp_flags = transport[13];
    }
    Some(())
}

/// Inode number of the packet's socket, when it has a full one (not a connection request or
/// a closed connection's time-wait entry) that a process can hold.
#[inline(always)]
fn socket_inode<M: Memory>(skb: u64) -> Option<u64> {
    let sk: u64 = M::read(skb, constant!(OFFSETS.skb_sk))?;
    let state: u8 = M::read(sk, constant!(OFFSETS.sk_state))?;
    if state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV {
        return None;
    }
    let socket: u64 = M::read(sk, constant!(OFFSETS.sk_socket))?;
    // `i_ino` is an `unsigned long`, in the `struct socket_alloc` around the socket.
    read(socket + constant!(OFFSETS.socket_inode_ino) as u64)
}
