//! The TCP connections of the calling thread's namespace by peer, from the kernel's socket
//! dump with each socket's `tcp_info`: how many are established, and the totals of those not
//! yet closed (the state hook adds each connection's as it closes).
use std::{collections::BTreeSet, net::IpAddr};

use netlink_packet_core::NlasIterator;
use netlink_packet_sock_diag::{
    constants::{
        INET_DIAG_INFO, IPPROTO_TCP, TCP_ESTABLISHED, TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT,
    },
    inet::{ExtensionFlags, StateFlags},
};
use netmon_common::peers::{
    MAX_PEER_KEYS, OpenConnections, PeerKey, ROLE_CLIENT, ROLE_SERVER, peer_bucket,
};

use crate::{
    host::sockets,
    model::{peer_names::address_words, peers::LivePeers},
};

/// One connection of the dump: its ends, and its totals where the kernel gave its
/// `tcp_info`.
struct Connection {
    state: u8,
    local_port: u16,
    remote: IpAddr,
    remote_port: u16,
    totals: Option<Totals>,
}

/// What a connection's `tcp_info` adds to its peer's.
struct Totals {
    bytes_sent: u64,
    bytes_received: u64,
    retransmits: u32,
    rtt_us: u32,
}

/// The connections of the calling thread's namespace, whose inode is `netns`, by peer: a
/// connection from a port something listens on is accepted (`server`, the listening port),
/// any other one opened (`client`, the remote port). At most [`MAX_PEER_KEYS`] peers, as in
/// the kernel's table: the connections of the others count under the overflow identity.
pub fn live_peers(netns: u32) -> anyhow::Result<LivePeers> {
    // Every state of a socket that has not closed: TIME_WAIT is one the kernel already
    // closed (and the state hook counted); connection requests show as SYN_RECV, opens that
    // wait for their handshake.
    let states = StateFlags::all() - StateFlags::TIME_WAIT - StateFlags::CLOSE;
    let mut listening = BTreeSet::new();
    let mut connections = Vec::new();
    sockets::dump_raw(
        IPPROTO_TCP,
        states,
        ExtensionFlags::INFO,
        |header, attributes| {
            if header.state == TCP_LISTEN {
                listening.insert(header.socket_id.source_port);
                return;
            }
            connections.push(Connection {
                state: header.state,
                local_port: header.socket_id.source_port,
                remote: header.socket_id.destination_address,
                remote_port: header.socket_id.destination_port,
                totals: tcp_info(attributes).map(|info| Totals {
                    bytes_sent: info.tcpi_bytes_acked,
                    bytes_received: info.tcpi_bytes_received,
                    retransmits: info.tcpi_total_retrans,
                    rtt_us: info.tcpi_rtt,
                }),
            });
        },
    )?;
    let mut peers = LivePeers::new();
    for connection in connections {
        let server = listening.contains(&connection.local_port);
        let key = PeerKey {
            netns,
            role: if server { ROLE_SERVER } else { ROLE_CLIENT },
            port: if server {
                connection.local_port
            } else {
                connection.remote_port
            },
            address: address_words(connection.remote),
        };
        add_bounded(&mut peers, key, &connection);
    }
    Ok(peers)
}

/// Adds a connection to its peer's totals, or to the overflow identity's where the peers are
/// at their bound and its peer is not among them.
fn add_bounded(peers: &mut LivePeers, key: PeerKey, connection: &Connection) {
    let full = peers.len() >= MAX_PEER_KEYS as usize && !peers.contains_key(&key);
    let key = if full { key.overflow() } else { key };
    add(peers.entry(key).or_default(), connection);
}

/// Adds one connection to its peer's totals.
fn add(totals: &mut OpenConnections, connection: &Connection) {
    totals.established += u64::from(connection.state == TCP_ESTABLISHED);
    let opening = [TCP_SYN_SENT, TCP_SYN_RECV].contains(&connection.state);
    totals.opening += u64::from(opening);
    let Some(info) = &connection.totals else {
        return;
    };
    totals.bytes_sent += info.bytes_sent;
    totals.bytes_received += info.bytes_received;
    totals.retransmits += u64::from(info.retransmits);
    if info.rtt_us != 0 {
        let rtt_us = u64::from(info.rtt_us);
        totals.rtt[peer_bucket(rtt_us)] += 1;
        totals.rtt_sum_ns += rtt_us * 1000;
    }
}

/// The socket's `tcp_info` among its attributes; a shorter one (an older kernel's) is read as
/// far as it goes, the rest 0.
fn tcp_info(attributes: &[u8]) -> Option<libc::tcp_info> {
    let attribute = NlasIterator::new(attributes)
        .map_while(Result::ok)
        .find(|nla| nla.kind() == INET_DIAG_INFO)?;
    let value = attribute.value();
    // SAFETY: all-zero bytes are a valid `tcp_info`, a struct of integers.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let size = value.len().min(size_of::<libc::tcp_info>());
    // SAFETY: `size` bytes fit both the attribute and the struct, which has no invalid bit
    // patterns; the copy makes no assumption about the attribute's alignment.
    unsafe {
        std::ptr::copy_nonoverlapping(value.as_ptr(), (&raw mut info).cast::<u8>(), size);
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
    };

    use super::*;
    use crate::collect::own_netns;

    #[test]
    fn peers_past_the_bound_count_under_the_overflow_identity() {
        let connection = Connection {
            state: TCP_ESTABLISHED,
            local_port: 40000,
            remote: "10.0.0.1".parse().unwrap(),
            remote_port: 80,
            totals: None,
        };
        let key = |port: u16| PeerKey {
            netns: 1,
            role: ROLE_CLIENT,
            port,
            address: address_words(connection.remote),
        };
        let mut peers = LivePeers::new();
        for port in 1..=MAX_PEER_KEYS as u16 {
            add_bounded(&mut peers, key(port), &connection);
        }
        add_bounded(&mut peers, key(1), &connection);
        add_bounded(&mut peers, key(9999), &connection);
        assert_eq!(peers.len(), MAX_PEER_KEYS as usize + 1);
        assert_eq!(peers[&key(1)].established, 2);
        assert_eq!(peers[&key(9999).overflow()].established, 1);
        assert!(!peers.contains_key(&key(9999)));
    }

    #[test]
    fn a_connection_of_this_process_shows_on_both_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[1; 1000]).unwrap();
        server.read_exact(&mut [0; 1000]).unwrap();
        let netns = own_netns();
        let peers = live_peers(netns).unwrap();
        let loopback = address_words("127.0.0.1".parse().unwrap());
        let find = |role: u8| {
            let key = PeerKey {
                netns,
                role,
                port,
                address: loopback,
            };
            peers.get(&key).cloned().unwrap_or_default()
        };
        let (opened, accepted) = (find(ROLE_CLIENT), find(ROLE_SERVER));
        assert!(opened.established >= 1 && accepted.established >= 1);
        assert!(opened.bytes_sent >= 1000, "{opened:?}");
        assert!(accepted.bytes_received >= 1000, "{accepted:?}");
    }
}
