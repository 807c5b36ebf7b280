//! The queueing disciplines of every interface of the calling thread's namespace, with their
//! counters (rtnetlink `RTM_GETQDISC`, as `tc -s qdisc` and node_exporter's qdisc collector
//! read them): what went through, what was dropped or over the limit, and the backlog now.
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcHandle, TcMessage, TcStats2},
};
use netlink_sys::protocols::NETLINK_ROUTE;

use crate::{host::netlink, model::pressure::Qdisc};

/// Every queueing discipline of the namespace.
pub fn qdiscs() -> anyhow::Result<Vec<Qdisc>> {
    let mut found = Vec::new();
    netlink::dump(
        NETLINK_ROUTE,
        RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
        |message| {
            if let RouteNetlinkMessage::NewQueueDiscipline(qdisc) = message {
                found.push(of(&qdisc));
            }
        },
    )?;
    Ok(found)
}

fn of(message: &TcMessage) -> Qdisc {
    let mut qdisc = Qdisc {
        ifindex: message.header.index as u32,
        handle: handle(message.header.handle),
        parent: handle(message.header.parent),
        ..Qdisc::default()
    };
    for attribute in &message.attributes {
        match attribute {
            TcAttribute::Kind(kind) => qdisc.kind = kind.clone(),
            TcAttribute::Stats2(stats) => stats.iter().for_each(|s| add(&mut qdisc, s)),
            _ => {}
        }
    }
    qdisc
}

fn add(qdisc: &mut Qdisc, stats: &TcStats2) {
    match stats {
        TcStats2::Basic(basic) => {
            qdisc.bytes = basic.bytes;
            qdisc.packets = u64::from(basic.packets);
        }
        TcStats2::Queue(queue) => {
            qdisc.drops = u64::from(queue.drops);
            qdisc.overlimits = u64::from(queue.overlimits);
            qdisc.requeues = u64::from(queue.requeues);
            qdisc.backlog_bytes = u64::from(queue.backlog);
            qdisc.backlog_packets = u64::from(queue.qlen);
        }
        _ => {}
    }
}

/// A handle as `tc` writes it, in hexadecimal: `8001:` (minor 0), `1:10`; the root is `root`.
fn handle(handle: TcHandle) -> String {
    match (handle.major, handle.minor) {
        (0xffff, 0xffff) => "root".to_string(),
        (major, 0) => format!("{major:x}:"),
        (major, minor) => format!("{major:x}:{minor:x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_as_tc_writes_them() {
        let of = |major, minor| handle(TcHandle { major, minor });
        assert_eq!(of(0x8001, 0), "8001:");
        assert_eq!(of(1, 0x10), "1:10");
        assert_eq!(of(0xffff, 0xffff), "root");
    }

    #[test]
    fn loopback_has_its_queueing_discipline() {
        let found = qdiscs().unwrap();
        assert!(found.iter().any(|q| q.ifindex == 1), "{found:?}");
    }
}
