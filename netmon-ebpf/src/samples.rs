//! Samples of real drops for the agent's record of recent drops: where the packet died, its
//! flow and its socket. A per-CPU budget that the agent refills (a token bucket whose clock
//! is the agent's) bounds them: a drop storm costs one comparison a drop beyond counting,
//! and the drops it does not sample are counted.
use aya_ebpf::helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel};
use netmon_common::{DropSample, Event, SAMPLE_ALLOWED, SAMPLE_USED};

use crate::{
    events::count_event,
    kernel::constant,
    maps::{DROP_SAMPLE_BUDGET, DROP_SAMPLES},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// `TCP_TIME_WAIT` and `TCP_NEW_SYN_RECV`: sockets that are not full `struct sock`s.
const TCP_TIME_WAIT: u8 = 6;
const TCP_NEW_SYN_RECV: u8 = 12;

/// Whether this CPU may send one more sample; a drop it may not sample is counted.
#[inline(always)]
fn take_token() -> bool {
    let (Some(used), Some(allowed)) = (
        DROP_SAMPLE_BUDGET.get_ptr_mut(SAMPLE_USED),
        DROP_SAMPLE_BUDGET.get_ptr(SAMPLE_ALLOWED),
    ) else {
        return false;
    };
    // SAFETY: this CPU's values; `used` is written by programs only, `allowed` by the agent.
    unsafe {
        if *used < core::ptr::read_volatile(allowed) {
            *used += 1;
            return true;
        }
    }
    count_event(Event::DropSampleSuppressed);
    false
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
/// `interface()` is the device's [`netmon_common::InterfaceKey`] as a slot's meta word,
/// `location` where it was freed.
/// Everything is copied with `bpf_probe_read_kernel`, whatever method the hook attached
/// with: sampling is rare, and one way to read keeps the program small.
#[inline(always)]
pub fn sample_drop(
    skb: u64,
    ethertype: u16,
    reason: u32,
    location: u64,
    interface: impl FnOnce() -> u64,
) {
    if !take_token() {
        return;
    }
    let mut sample = DropSample {
        // SAFETY: a helper without arguments.
        time_ns: unsafe { bpf_ktime_get_ns() },
        location,
        interface: interface(),
        reason,
        ethertype,
        ..DropSample::default()
    };
    read_flow(skb, &mut sample);
    sample.socket_inode = socket_inode(skb).unwrap_or(0);
    if DROP_SAMPLES.output::<DropSample>(&sample, 0).is_err() {
        // The ring is full: the agent has not read it for a while.
        count_event(Event::DropSampleSuppressed);
    }
}

/// The packet's addresses, protocol, ports and TCP flags, from its IP header.
#[inline(always)]
fn read_flow(skb: u64, sample: &mut DropSample) -> Option<()> {
    let head: u64 = read(skb + constant!(OFFSETS.skb_head) as u64)?;
    let network: u16 = read(skb + constant!(OFFSETS.skb_network_header) as u64)?;
    let ip = head + network as u64;
    let transport = match sample.ethertype {
        ETH_P_IP => {
            let header: [u8; 20] = read(ip)?;
            if header[0] >> 4 != 4 {
                return None;
            }
            sample.family = 4;
            sample.ip_protocol = header[9];
            sample.source[..4].copy_from_slice(&header[12..16]);
            sample.destination[..4].copy_from_slice(&header[16..20]);
            // A fragment after the first has no transport header.
            if u16::from_be_bytes([header[6], header[7]]) & 0x1fff != 0 {
                return None;
            }
            ip + ((header[0] & 0x0f) as u64) * 4
        }
        ETH_P_IPV6 => {
            let header: [u8; 40] = read(ip)?;
            if header[0] >> 4 != 6 {
                return None;
            }
            sample.family = 6;
            // Extension headers are not followed: their protocol is what the sample shows.
            sample.ip_protocol = header[6];
            sample.source.copy_from_slice(&header[8..24]);
            sample.destination.copy_from_slice(&header[24..40]);
            ip + 40
        }
        _ => return None,
    };
    if sample.ip_protocol == IPPROTO_TCP || sample.ip_protocol == IPPROTO_UDP {
        let ports: [u8; 4] = read(transport)?;
        sample.source_port = u16::from_be_bytes([ports[0], ports[1]]);
        sample.destination_port = u16::from_be_bytes([ports[2], ports[3]]);
    }
    if sample.ip_protocol == IPPROTO_TCP {
        sample.tcp_flags = read(transport + 13)?;
    }
    Some(())
}

/// Inode number of the packet's socket, when it has a full one (not a connection request or
/// a closed connection's time-wait entry) that a process can hold.
#[inline(always)]
fn socket_inode(skb: u64) -> Option<u64> {
    let sk: u64 = read(skb + constant!(OFFSETS.skb_sk) as u64)?;
    if sk == 0 {
        return None;
    }
    let state: u8 = read(sk + constant!(OFFSETS.sk_state) as u64)?;
    if state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV {
        return None;
    }
    let socket: u64 = read(sk + constant!(OFFSETS.sk_socket) as u64)?;
    // `i_ino` is an `unsigned long`.
    read(socket + constant!(OFFSETS.socket_inode_ino) as u64)
}
