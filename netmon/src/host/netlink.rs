//! Netlink dumps (rtnetlink, sock_diag) on a socket of the calling thread's namespace.
use std::fmt::Debug;

use anyhow::{Context as _, bail};
use netlink_packet_core::{
    ErrorBuffer, ErrorMessage, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_ALIGNTO, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable, Parseable,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{LinkAttribute, LinkMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Sends one dump request and hands the type and payload of each answer to `each` until
/// `NLMSG_DONE`: a dump of 100,000 sockets is never held whole, and a caller that needs a
/// message's fixed header only parses nothing else.
pub fn dump_payloads<R>(
    protocol: isize,
    request: R,
    mut each: impl FnMut(u16, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()>
where
    R: NetlinkSerializable + Debug,
{
    let mut socket = Socket::new(protocol).context("opening a netlink socket")?;
    socket.bind_auto().context("binding a netlink socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("connecting a netlink socket")?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).context("sending a netlink request")?;

    // Large enough for the kernel's biggest dump batch, so messages never arrive truncated.
    let mut receive = vec![0u8; 1 << 16];
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .context("receiving a netlink answer")?;
        let mut rest = &receive[..size];
        while !rest.is_empty() {
            let message = NetlinkBuffer::new_checked(rest).context("decoding a netlink answer")?;
            match message.message_type() {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let payload = message.payload();
                    let error = ErrorBuffer::new_checked(&payload)
                        .and_then(|buffer| ErrorMessage::parse(&buffer))
                        .context("decoding a netlink error")?;
                    bail!("netlink error: {}", error.to_io());
                }
                NLMSG_NOOP | NLMSG_OVERRUN => {}
                kind => each(kind, message.payload())?,
            }
            let length = (message.length() as usize).next_multiple_of(usize::from(NLMSG_ALIGNTO));
            rest = rest.get(length..).unwrap_or_default();
        }
    }
}

/// Like [`dump_payloads`], each answer decoded as a `T`.
pub fn dump<T>(protocol: isize, request: T, mut each: impl FnMut(T)) -> anyhow::Result<()>
where
    T: NetlinkSerializable + NetlinkDeserializable + Debug,
{
    dump_payloads(protocol, request, |kind, payload| {
        let mut header = NetlinkHeader::default();
        header.message_type = kind;
        each(T::deserialize(&header, payload).context("decoding a netlink answer")?);
        Ok(())
    })
}

/// The kernel's announcements of changed links and addresses in the namespace of the thread
/// that opened it (rtnetlink groups `RTNLGRP_LINK`, `RTNLGRP_IPV4_IFADDR` and
/// `RTNLGRP_IPV6_IFADDR`): what was read of them stays true until one arrives.
///
/// Not yet listening when made: the first [`RouteChanges::changed`] opens the socket, in the
/// calling thread's namespace.
#[derive(Default)]
pub struct RouteChanges {
    socket: Option<Socket>,
}

impl RouteChanges {
    fn open() -> std::io::Result<Socket> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        for group in [
            libc::RTNLGRP_LINK,
            libc::RTNLGRP_IPV4_IFADDR,
            libc::RTNLGRP_IPV6_IFADDR,
        ] {
            socket.add_membership(group)?;
        }
        socket.set_non_blocking(true)?;
        Ok(socket)
    }

    /// Whether anything may have changed since the last call: an announcement arrived, some
    /// were lost (the socket's queue overflowed), or the watch has just started or cannot
    /// be had (then every call says so, and callers read everything as before).
    pub fn changed(&mut self) -> bool {
        let Some(socket) = &self.socket else {
            self.socket = Self::open()
                .inspect_err(|error| {
                    tracing::debug!("link and address changes are not announced: {error}");
                })
                .ok();
            return true;
        };
        // Only an arrival matters: a longer message is cut to the buffer, which netlink
        // allows, and the next one is whole again.
        let mut buffer = [0u8; 256];
        let mut changed = false;
        loop {
            match socket.recv(&mut &mut buffer[..], 0) {
                Ok(_) => changed = true,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return changed,
                // ENOBUFS: announcements were lost. What is still queued is seen next time.
                Err(_) => return true,
            }
        }
    }
}

/// Index and name of every link of the calling thread's namespace.
pub fn links() -> anyhow::Result<Vec<(u32, String)>> {
    let mut links = Vec::new();
    dump(
        NETLINK_ROUTE,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        |message| {
            if let RouteNetlinkMessage::NewLink(link) = message
                && let Some(name) = link.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some(name),
                    _ => None,
                })
            {
                links.push((link.header.index, name));
            }
        },
    )?;
    Ok(links)
}

/// Every address of the calling thread's namespace, as the kernel reports it.
pub fn addresses() -> anyhow::Result<Vec<AddressMessage>> {
    let mut addresses = Vec::new();
    dump(
        NETLINK_ROUTE,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        |message| {
            if let RouteNetlinkMessage::NewAddress(address) = message {
                addresses.push(address);
            }
        },
    )?;
    Ok(addresses)
}

/// The attribute holding an address message's own address: `IFA_LOCAL` where present (it is
/// the local end of point-to-point links), else `IFA_ADDRESS`.
pub fn own_address(message: &AddressMessage) -> Option<std::net::IpAddr> {
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_the_loopback_link_and_its_address() {
        let links = links().unwrap();
        assert!(links.contains(&(1, "lo".to_string())), "{links:?}");
        let addresses = addresses().unwrap();
        assert!(
            addresses.iter().any(
                |a| a.header.index == 1 && own_address(a) == Some("127.0.0.1".parse().unwrap())
            ),
            "{addresses:?}"
        );
    }
}
