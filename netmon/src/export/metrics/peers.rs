//! The family of TCP connection results by peer (`KernelCounters::peers`).
use netmon_common::peers::PeerResult;
use prometheus::proto::{MetricFamily, MetricType};

use crate::{export::metrics::Family, model::Snapshot};

pub(super) fn families(snapshot: &Snapshot, out: &mut Vec<MetricFamily>) {
    let mut connects = Family::new(
        "netmon_tcp_peer_connects_total",
        "TCP connections opened (role=\"client\": the remote port) and accepted \
         (role=\"server\": the listening port) by namespace and remote endpoint, by result \
         (ok, refused, timeout, unreachable, other) as the socket left SYN_SENT or SYN_RECV. \
         peer is the remote address, its configured group, \"external\" or, past peers.top \
         in a namespace, \"other\".",
        MetricType::COUNTER,
    );
    for peer in &snapshot.kernel.peers {
        let netns = peer.netns.to_string();
        for result in PeerResult::ALL {
            let labels = [
                ("netns", netns.as_str()),
                ("role", peer.role),
                ("peer", &peer.peer),
                ("port", &peer.port),
                ("result", result.as_str()),
            ];
            connects.sample(&labels, peer.results.get(result) as f64);
        }
    }
    out.push(connects.0);
}
