//! Sockets from the kernel's socket dump (sock_diag over netlink): TCP connections by state
//! and listening sockets, IPv4 and IPv6.
use std::{collections::BTreeMap, net::IpAddr};

use anyhow::Context as _;
use netlink_packet_core::{NlasIterator, Parseable as _};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, INET_DIAG_SKMEMINFO, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags},
};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netmon_common::iterators::TcpSocketTally;

use crate::{
    host::netlink,
    model::{EphemeralPorts, pressure::ListenQueue},
    names,
};

/// One socket as the dump shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedSocket {
    pub state: u8,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote_port: u16,
    pub inode: u32,
}

/// Hands each socket of the dump to `each`, IPv4 then IPv6.
fn dump(
    protocol: u8,
    states: StateFlags,
    mut each: impl FnMut(DumpedSocket),
) -> anyhow::Result<()> {
    // Only the fixed header: the attributes the kernel adds to every socket are not needed,
    // and decoding them was most of the agent's time on a busy host.
    dump_raw(protocol, states, ExtensionFlags::empty(), |header, _| {
        each(DumpedSocket {
            state: header.state,
            local: header.socket_id.source_address,
            local_port: header.socket_id.source_port,
            remote_port: header.socket_id.destination_port,
            inode: header.inode,
        });
    })
}

/// Bytes of the fixed header of each socket of the dump (`struct inet_diag_msg`); its
/// attributes follow.
const INET_DIAG_MSG_LEN: usize = 72;

/// Hands each socket of the dump to `each`, IPv4 then IPv6: its header, and its attributes
/// undecoded (those of `extensions`, and what the kernel adds to every socket).
pub(super) fn dump_raw(
    protocol: u8,
    states: StateFlags,
    extensions: ExtensionFlags,
    mut each: impl FnMut(&InetResponseHeader, &[u8]),
) -> anyhow::Result<()> {
    for family in [AF_INET, AF_INET6] {
        let request = SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol,
            extensions: extensions.clone(),
            states: states.clone(),
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        });
        netlink::dump_payloads(NETLINK_SOCK_DIAG, request, |_, payload| {
            let header =
                InetResponseHeader::parse(payload).context("decoding a socket of the dump")?;
            each(
                &header,
                payload.get(INET_DIAG_MSG_LEN..).unwrap_or_default(),
            );
            Ok(())
        })?;
    }
    Ok(())
}

/// TCP sockets by state, and how much of the ephemeral port range they use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpSummary {
    /// Every one of the eleven states, 0 when none.
    pub states: BTreeMap<&'static str, u64>,
    pub ephemeral: EphemeralPorts,
}

/// `net.ipv4.ip_local_port_range` of the calling thread's namespace.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Counts sockets by state, and the ephemeral ports they hold: one socket at a time from the
/// socket dump, or all at once from the socket iterator's tally.
pub struct TcpTally {
    /// Sockets by state number (a busy host has tens of thousands: no lookup by name each).
    states: [u64; 16],
    /// One bit a port: which local ports some socket other than a listener holds.
    ports: [u64; 1024],
}

impl TcpTally {
    pub fn add(&mut self, state: u8, local_port: u16) {
        if let Some(count) = self.states.get_mut(usize::from(state)) {
            *count += 1;
        }
        if state != TCP_LISTEN {
            self.ports[usize::from(local_port >> 6)] |= 1 << (local_port & 63);
        }
    }

    /// The summary, with the ephemeral port range of the calling thread's namespace.
    pub fn finish(self) -> TcpSummary {
        let mut states = self.states;
        // Request sockets (TCP_NEW_SYN_RECV) are half-open connections: SYN_RECV to users.
        states[TCP_SYN_RECV] += std::mem::take(&mut states[TCP_NEW_SYN_RECV]);
        let (first, last) = ephemeral_range();
        let held = |port: u16| self.ports[usize::from(port >> 6)] & (1 << (port & 63)) != 0;
        TcpSummary {
            states: names::TCP_STATES
                .iter()
                .map(|(state, name)| (*name, states[usize::from(*state)]))
                .collect(),
            ephemeral: EphemeralPorts {
                first,
                last,
                in_use: (first..=last).filter(|port| held(*port)).count() as u64,
            },
        }
    }
}

impl Default for TcpTally {
    fn default() -> Self {
        Self::from(TcpSocketTally::ZERO)
    }
}

impl From<TcpSocketTally> for TcpTally {
    fn from(tally: TcpSocketTally) -> Self {
        Self {
            states: tally.states,
            ports: tally.ports,
        }
    }
}

const TCP_SYN_RECV: usize = 3;
const TCP_LISTEN: u8 = 10;
const TCP_NEW_SYN_RECV: usize = 12;

/// The summary from the kernel's socket dump.
pub fn tcp_summary() -> anyhow::Result<TcpSummary> {
    let mut tally = TcpTally::default();
    dump(IPPROTO_TCP, StateFlags::all(), |socket| {
        tally.add(socket.state, socket.local_port);
    })?;
    Ok(tally.finish())
}

/// A socket waiting for peers: a TCP listener, or a UDP socket bound to a port and not
/// connected to one peer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    pub protocol: &'static str,
    pub address: IpAddr,
    pub port: u16,
    pub inode: u32,
}

pub fn listeners() -> anyhow::Result<Vec<Listener>> {
    let mut found = Vec::new();
    dump(IPPROTO_TCP, StateFlags::LISTEN, |socket| {
        found.push(Listener {
            protocol: "tcp",
            address: socket.local,
            port: socket.local_port,
            inode: socket.inode,
        });
    })?;
    dump(IPPROTO_UDP, StateFlags::all(), |socket| {
        if socket.remote_port == 0 && socket.local_port != 0 {
            found.push(Listener {
                protocol: "udp",
                address: socket.local,
                port: socket.local_port,
                inode: socket.inode,
            });
        }
    })?;
    found.sort();
    Ok(found)
}

/// The accept queue of every TCP listener of the calling thread's namespace: its length and
/// limit (a listener's receive and send queues in the dump, as `ss -ltn` shows them) and the
/// socket's drops (`SK_MEMINFO_DROPS` of its memory attribute).
pub fn listen_queues() -> anyhow::Result<Vec<ListenQueue>> {
    let mut queues = Vec::new();
    let memory = ExtensionFlags::SKMEMINFO;
    dump_raw(
        IPPROTO_TCP,
        StateFlags::LISTEN,
        memory,
        |header, attributes| {
            queues.push(ListenQueue {
                address: header.socket_id.source_address.to_string(),
                port: header.socket_id.source_port,
                length: header.recv_queue.into(),
                limit: header.send_queue.into(),
                drops: socket_drops(attributes).unwrap_or(0),
                inode: header.inode,
                processes: Vec::new(),
            });
        },
    )?;
    queues.sort_by(|a, b| (a.port, &a.address).cmp(&(b.port, &b.address)));
    Ok(queues)
}

/// The drops among a socket's attributes (`INET_DIAG_SKMEMINFO`: an array of 32-bit counts).
fn socket_drops(attributes: &[u8]) -> Option<u64> {
    const SK_MEMINFO_DROPS: usize = 8;
    let memory = NlasIterator::new(attributes)
        .map_while(Result::ok)
        .find(|nla| nla.kind() == INET_DIAG_SKMEMINFO)?;
    let at = SK_MEMINFO_DROPS * 4;
    let bytes = memory.value().get(at..at + 4)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_listener_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let udp = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let udp_port = udp.local_addr().unwrap().port();
        let found = listeners().unwrap();
        assert!(
            found
                .iter()
                .any(|l| l.protocol == "tcp" && l.port == port && l.address.is_loopback())
        );
        assert!(
            found
                .iter()
                .any(|l| l.protocol == "udp" && l.port == udp_port && l.address.is_ipv6())
        );
        let summary = tcp_summary().unwrap();
        assert_eq!(summary.states.len(), 11);
        assert!(summary.states["LISTEN"] >= 1);
        let (low, high) = ephemeral_range();
        assert_eq!(summary.ephemeral.range_size(), u64::from(high - low) + 1);
    }

    #[test]
    fn a_tally_folds_requests_into_syn_recv_and_counts_each_held_port_once() {
        let (low, high) = ephemeral_range();
        let mut tally = TcpTally::default();
        tally.add(1, low); // ESTABLISHED
        tally.add(6, low); // TIME_WAIT on the same port: one port
        tally.add(10, high); // LISTEN: a listener's port is not an ephemeral one in use
        tally.add(12, high); // a connection request, on the listener's port
        tally.add(3, low - 1); // SYN_RECV, below the range
        let summary = tally.finish();
        assert_eq!(summary.states["ESTABLISHED"], 1);
        assert_eq!(summary.states["TIME_WAIT"], 1);
        assert_eq!(summary.states["LISTEN"], 1);
        assert_eq!(summary.states["SYN_RECV"], 2);
        assert_eq!(summary.states.values().sum::<u64>(), 5);
        // `high` is held by the request (whose port is its listener's).
        assert_eq!(summary.ephemeral.in_use, 2);
    }
}
