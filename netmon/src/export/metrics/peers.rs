//! The families of TCP peers (`KernelCounters::peers`): connection results and times, and the
//! totals of the connections, by namespace, role and remote endpoint.
use netmon_common::peers::{PeerResult, peer_bucket_bound_us};
use prometheus::proto::{MetricFamily, MetricType};

use crate::{
    export::metrics::Family,
    model::{Snapshot, peers::PeerHistogram},
};

/// What a peer series is: which namespace, role, peer and port.
const SERIES: &str = "role=\"client\" for connections this host opened (port is the remote \
     one), \"server\" for those it accepted (port is the listening one); peer is the remote \
     address, its configured group, \"external\" or, past peers.top in a namespace, \"other\".";

/// The upper bound of a peer histogram's bucket in seconds; none for the last.
fn bound(bucket: usize) -> Option<f64> {
    peer_bucket_bound_us(bucket).map(|us| us as f64 / 1e6)
}

pub(super) fn families(snapshot: &Snapshot, out: &mut Vec<MetricFamily>) {
    let mut connects = Family::new(
        "netmon_tcp_peer_connects_total",
        &format!(
            "TCP connection attempts by namespace and remote endpoint, by result (ok, refused, \
             timeout, unreachable, other) as the socket left SYN_SENT or SYN_RECV. {SERIES}"
        ),
        MetricType::COUNTER,
    );
    let mut connect_time = Family::new(
        "netmon_tcp_peer_connect_duration_seconds",
        &format!(
            "Time of the TCP opens that succeeded: the kernel's round-trip sample of the \
             answered SYN (client) or SYN-ACK (server); SYN retries show in \
             netmon_tcp_peer_retransmits_total. {SERIES}"
        ),
        MetricType::HISTOGRAM,
    );
    let mut connections = Family::new(
        "netmon_tcp_peer_connections",
        &format!("TCP connections established now, from the socket dump. {SERIES}"),
        MetricType::GAUGE,
    );
    let mut retransmits = Family::new(
        "netmon_tcp_peer_retransmits_total",
        &format!(
            "Segments the TCP connections retransmitted (SYNs included): of those closed, as \
             each closed, and of those open, so far. {SERIES}"
        ),
        MetricType::COUNTER,
    );
    let mut bytes = Family::new(
        "netmon_tcp_peer_bytes_total",
        &format!(
            "Bytes of the TCP connections, sent (acknowledged by the peer) and received: of \
             those closed, as each closed, and of those open, so far. {SERIES}"
        ),
        MetricType::COUNTER,
    );
    let mut rtt = Family::new(
        "netmon_tcp_peer_rtt_seconds",
        &format!(
            "Smoothed round-trip time of the TCP connections: sockets=\"closed\" of each as it \
             closed (a counter), sockets=\"open\" of those open now (a gauge). {SERIES}"
        ),
        MetricType::HISTOGRAM,
    );
    for peer in &snapshot.kernel.peers {
        let netns = peer.netns.to_string();
        let series = [
            ("netns", netns.as_str()),
            ("role", peer.role),
            ("peer", &peer.peer),
            ("port", &peer.port),
        ];
        for result in PeerResult::ALL {
            let labels = [&series[..], &[("result", result.as_str())]].concat();
            connects.sample(&labels, peer.results.get(result) as f64);
        }
        for (direction, total) in [("sent", peer.bytes_sent), ("received", peer.bytes_received)] {
            let labels = [&series[..], &[("direction", direction)]].concat();
            bytes.sample(&labels, total as f64);
        }
        retransmits.sample(&series, peer.retransmits as f64);
        connections.sample(&series, peer.connections as f64);
        // A series that never completed an open, or had a round trip, has no times.
        let observe = |family: &mut Family, histogram: &PeerHistogram, sockets: Option<&str>| {
            if histogram.count() > 0 {
                let mut labels = series.to_vec();
                labels.extend(sockets.map(|sockets| ("sockets", sockets)));
                family.histogram(&labels, &histogram.buckets, histogram.sum_ns, bound);
            }
        };
        observe(&mut connect_time, &peer.connect_time, None);
        observe(&mut rtt, &peer.rtt, Some("closed"));
        observe(&mut rtt, &peer.open_rtt, Some("open"));
    }
    out.extend([connects, connect_time, connections, retransmits, bytes, rtt].map(|f| f.0));
}
