//! Netlink dumps (rtnetlink, sock_diag) on a socket of the calling thread's namespace.
use std::fmt::Debug;

use anyhow::{Context as _, bail};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
    link::{LinkAttribute, LinkMessage},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Sends one dump request and collects every answer until `NLMSG_DONE`.
pub fn dump<T>(protocol: isize, request: T) -> anyhow::Result<Vec<T>>
where
    T: NetlinkSerializable + NetlinkDeserializable + Debug,
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

    let mut answers = Vec::new();
    // Large enough for the kernel's biggest dump batch, so messages never arrive truncated.
    let mut receive = vec![0u8; 1 << 16];
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .context("receiving a netlink answer")?;
        let mut offset = 0;
        while offset < size {
            let message = NetlinkMessage::<T>::deserialize(&receive[offset..size])
                .context("decoding a netlink answer")?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                NetlinkPayload::Done(_) => return Ok(answers),
                NetlinkPayload::Error(err) => bail!("netlink error: {err:?}"),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

/// Index and name of every link of the calling thread's namespace.
pub fn links() -> anyhow::Result<Vec<(u32, String)>> {
    let answers = dump(
        NETLINK_ROUTE,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
    )?;
    Ok(answers
        .into_iter()
        .filter_map(|message| match message {
            RouteNetlinkMessage::NewLink(link) => {
                let name = link.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some(name.clone()),
                    _ => None,
                })?;
                Some((link.header.index, name))
            }
            _ => None,
        })
        .collect())
}

/// Every address of the calling thread's namespace, as the kernel reports it.
pub fn addresses() -> anyhow::Result<Vec<AddressMessage>> {
    let answers = dump(
        NETLINK_ROUTE,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
    )?;
    Ok(answers
        .into_iter()
        .filter_map(|message| match message {
            RouteNetlinkMessage::NewAddress(address) => Some(address),
            _ => None,
        })
        .collect())
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
