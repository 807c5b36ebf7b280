//! Families counted by the kernel programs, in every namespace, and the tables' health.
use prometheus::proto::{MetricFamily, MetricType};

use crate::{
    export::metrics::Family,
    model::{HandshakeHistogram, Snapshot},
};

pub(super) fn families(snapshot: &Snapshot, out: &mut Vec<MetricFamily>) {
    let mut push = |family: Family| out.push(family.0);

    // Counted by the kernel programs, in every namespace.
    let kernel = &snapshot.kernel;
    let mut bytes = Family::new(
        "netmon_kernel_bytes_total",
        "Bytes seen by the kernel hooks per namespace and interface: tx at net_dev_xmit \
         (link-layer header included), rx at netif_receive_skb (link-layer header excluded).",
        MetricType::COUNTER,
    );
    let mut packets = Family::new(
        "netmon_kernel_packets_total",
        "Packets seen by the kernel hooks per namespace and interface.",
        MetricType::COUNTER,
    );
    let mut failed = Family::new(
        "netmon_kernel_transmit_failures_total",
        "Transmits the device refused (net_dev_xmit with a non-zero return code); not counted \
         when the transmit probe runs on a classic tracepoint.",
        MetricType::COUNTER,
    );
    for traffic in &kernel.traffic {
        let netns = traffic.netns.to_string();
        let labels = |direction| {
            [
                ("netns", netns.as_str()),
                ("interface", traffic.interface.as_str()),
                ("direction", direction),
            ]
        };
        bytes.sample(&labels("rx"), traffic.rx_bytes as f64);
        bytes.sample(&labels("tx"), traffic.tx_bytes as f64);
        packets.sample(&labels("rx"), traffic.rx_packets as f64);
        packets.sample(&labels("tx"), traffic.tx_packets as f64);
        failed.sample(
            &[("netns", &netns), ("interface", &traffic.interface)],
            traffic.tx_failed as f64,
        );
    }
    push(bytes);
    push(packets);
    push(failed);

    let mut drops = Family::new(
        "netmon_kernel_drops_total",
        "Packets the kernel dropped (kfree_skb), by namespace, interface, drop reason and protocol.",
        MetricType::COUNTER,
    );
    for drop in &kernel.drops {
        drops.sample(
            &[
                ("netns", &drop.netns.to_string()),
                ("interface", &drop.interface),
                ("reason", &drop.reason),
                ("protocol", &drop.protocol),
            ],
            drop.count as f64,
        );
    }
    push(drops);

    let mut transitions = Family::new(
        "netmon_tcp_state_transitions_total",
        "TCP state transitions (inet_sock_set_state), by namespace and address family.",
        MetricType::COUNTER,
    );
    for t in &kernel.transitions {
        transitions.sample(
            &[
                ("netns", &t.netns.to_string()),
                ("family", t.family),
                ("from", &t.from),
                ("to", &t.to),
            ],
            t.count as f64,
        );
    }
    push(transitions);

    let mut handshake = Family::new(
        "netmon_tcp_handshake_duration_seconds",
        "TCP handshake round trip by namespace, the kernel's own sample when the connection \
         becomes ESTABLISHED: SYN to SYN-ACK for active opens, SYN-ACK to ACK for passive opens.",
        MetricType::HISTOGRAM,
    );
    for histogram in &kernel.handshakes {
        handshake.histogram(
            &[
                ("netns", &histogram.netns.to_string()),
                ("open", histogram.open),
            ],
            &histogram.buckets,
            histogram.sum_ns,
            |i| Some(HandshakeHistogram::upper_bound_seconds(i)),
        );
    }
    push(handshake);

    let mut retransmits = Family::new(
        "netmon_tcp_retransmits_total",
        "TCP segments retransmitted (tcp_retransmit_skb), by the socket's namespace.",
        MetricType::COUNTER,
    );
    let mut resets = Family::new(
        "netmon_tcp_resets_total",
        "TCP resets sent (tcp_send_reset) and received (tcp_receive_reset), by namespace (of \
         the socket, or of the device for a reset answering a packet for no socket).",
        MetricType::COUNTER,
    );
    for events in &kernel.tcp_events {
        let netns = events.netns.to_string();
        retransmits.sample(&[("netns", &netns)], events.retransmits as f64);
        resets.sample(
            &[("netns", &netns), ("direction", "sent")],
            events.resets_sent as f64,
        );
        resets.sample(
            &[("netns", &netns), ("direction", "received")],
            events.resets_received as f64,
        );
    }
    push(retransmits);
    push(resets);

    let mut full = Family::new(
        "netmon_probe_map_full_total",
        "Events a kernel program could not record because its map was full.",
        MetricType::COUNTER,
    );
    for (map, count) in &kernel.programs.map_full {
        full.sample(&[("map", map)], *count as f64);
    }
    push(full);

    let mut entries = Family::new(
        "netmon_probe_map_entries",
        "Slots in use in each kernel table; bounded, and cleaned of interfaces and namespaces \
         that are gone.",
        MetricType::GAUGE,
    );
    for (map, count) in &kernel.map_entries {
        entries.sample(&[("map", map)], *count as f64);
    }
    push(entries);

    let mut memory = Family::new(
        "netmon_probe_map_bytes",
        "Kernel memory of each table's maps (tags and counts), as the kernel charges it.",
        MetricType::GAUGE,
    );
    for (map, size) in &kernel.programs.map_bytes {
        memory.sample(&[("map", map)], *size as f64);
    }
    push(memory);

    let mut missed = Family::new(
        "netmon_probe_missed_total",
        "Events a hook's program did not see: the kernel skips a program already running on \
         the CPU (a softirq interrupting it on the same hook) and counts the skip \
         (recursion_misses, Linux 5.12 and later).",
        MetricType::COUNTER,
    );
    for (probe, count) in &kernel.programs.missed {
        missed.sample(&[("probe", probe)], *count as f64);
    }
    push(missed);

    let mut read_failures = Family::new(
        "netmon_probe_read_failures_total",
        "Kernel memory reads that failed inside the programs.",
        MetricType::COUNTER,
    );
    read_failures.sample(&[], kernel.programs.read_failures as f64);
    push(read_failures);

    let mut samples = Family::new(
        "netmon_drop_samples_total",
        "Dropped packets sampled with their flow and kernel location (/api/v1/drops/recent).",
        MetricType::COUNTER,
    );
    samples.sample(&[], snapshot.drop_samples_total as f64);
    push(samples);
    let mut suppressed = Family::new(
        "netmon_drop_samples_suppressed_total",
        "Real drops not sampled: a CPU's sample budget (drop_samples.per_cpu_rate and \
         per_cpu_burst) was spent, or the ring of samples was full.",
        MetricType::COUNTER,
    );
    suppressed.sample(&[], snapshot.drop_samples_suppressed as f64);
    push(suppressed);
}
