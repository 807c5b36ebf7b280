//! The families of pressure before loss (`Snapshot::pressure`): listen queues, the
//! namespaces' own counters, connection tracking, queueing disciplines, the CPUs' backlogs
//! and TCP memory.
use prometheus::proto::{MetricFamily, MetricType};

use crate::{
    export::metrics::Family,
    model::{
        Snapshot,
        pressure::{NamespacePressure, Pressure},
    },
};

pub(super) fn families(snapshot: &Snapshot, out: &mut Vec<MetricFamily>) {
    let pressure = &snapshot.pressure;
    out.extend(listeners(pressure));
    out.extend(counters(pressure));
    out.extend(conntrack(pressure));
    out.extend(qdiscs(pressure));
    out.extend(host_wide(pressure));
}

fn gauge(name: &str, help: &str) -> Family {
    Family::new(name, help, MetricType::GAUGE)
}

fn counter(name: &str, help: &str) -> Family {
    Family::new(name, help, MetricType::COUNTER)
}

fn listeners(pressure: &Pressure) -> [MetricFamily; 3] {
    let mut length = gauge(
        "netmon_listen_queue_length",
        "Connections waiting in a TCP listener's accept queue (ss -ltn Recv-Q), by namespace.",
    );
    let mut limit = gauge(
        "netmon_listen_queue_limit",
        "A TCP listener's listen backlog (ss -ltn Send-Q): connections past it are dropped.",
    );
    let mut drops = counter(
        "netmon_listen_drops_total",
        "Packets a TCP listener dropped (the socket's sk_drops).",
    );
    for (netns, namespace) in by_namespace(pressure) {
        for listener in &namespace.listeners {
            let port = listener.port.to_string();
            let labels = [
                ("netns", netns.as_str()),
                ("address", listener.address.as_str()),
                ("port", port.as_str()),
            ];
            length.sample(&labels, listener.length as f64);
            limit.sample(&labels, listener.limit as f64);
            drops.sample(&labels, listener.drops as f64);
        }
    }
    [length.0, limit.0, drops.0]
}

fn counters(pressure: &Pressure) -> [MetricFamily; 1] {
    let mut counters = counter(
        "netmon_netstat_total",
        "The namespace's own TCP and UDP counters of queues and tables filling up \
         (/proc/net/netstat, /proc/net/snmp), named as the kernel spells them.",
    );
    for (netns, namespace) in by_namespace(pressure) {
        for (name, value) in &namespace.counters {
            let labels = [("netns", netns.as_str()), ("counter", name.as_str())];
            counters.sample(&labels, *value as f64);
        }
    }
    [counters.0]
}

fn conntrack(pressure: &Pressure) -> [MetricFamily; 3] {
    let mut entries = gauge(
        "netmon_conntrack_entries",
        "Connections the namespace's connection tracking holds.",
    );
    let mut limit = gauge(
        "netmon_conntrack_entries_limit",
        "The most connections the tracking holds (nf_conntrack_max).",
    );
    let mut events = counter(
        "netmon_conntrack_events_total",
        "Connection tracking failures: insert_failed, drop (a packet dropped for want of an \
         entry), early_drop (an entry dropped to make room).",
    );
    for (netns, namespace) in by_namespace(pressure) {
        let Some(conntrack) = &namespace.conntrack else {
            continue;
        };
        let labels = [("netns", netns.as_str())];
        entries.sample(&labels, conntrack.entries as f64);
        limit.sample(&labels, conntrack.limit as f64);
        for (event, count) in [
            ("insert_failed", conntrack.insert_failed),
            ("drop", conntrack.drop),
            ("early_drop", conntrack.early_drop),
        ] {
            events.sample(&[("netns", netns.as_str()), ("event", event)], count as f64);
        }
    }
    [entries.0, limit.0, events.0]
}

fn qdiscs(pressure: &Pressure) -> Vec<MetricFamily> {
    let help = "Of a queueing discipline (tc -s qdisc), by namespace, interface, kind and handle; \
                noqueue disciplines, which queue nothing, are left out.";
    let mut families = [
        ("netmon_qdisc_bytes_total", MetricType::COUNTER),
        ("netmon_qdisc_packets_total", MetricType::COUNTER),
        ("netmon_qdisc_drops_total", MetricType::COUNTER),
        ("netmon_qdisc_overlimits_total", MetricType::COUNTER),
        ("netmon_qdisc_requeues_total", MetricType::COUNTER),
        ("netmon_qdisc_backlog_bytes", MetricType::GAUGE),
        ("netmon_qdisc_backlog_packets", MetricType::GAUGE),
    ]
    .map(|(name, kind)| Family::new(name, help, kind));
    for (netns, namespace) in by_namespace(pressure) {
        for qdisc in namespace.qdiscs.iter().filter(|q| q.kind != "noqueue") {
            let labels = [
                ("netns", netns.as_str()),
                ("interface", qdisc.interface.as_str()),
                ("kind", qdisc.kind.as_str()),
                ("handle", qdisc.handle.as_str()),
            ];
            let values = [
                qdisc.bytes,
                qdisc.packets,
                qdisc.drops,
                qdisc.overlimits,
                qdisc.requeues,
                qdisc.backlog_bytes,
                qdisc.backlog_packets,
            ];
            for (family, value) in families.iter_mut().zip(values) {
                family.sample(&labels, value as f64);
            }
        }
    }
    families.into_iter().map(|f| f.0).collect()
}

fn host_wide(pressure: &Pressure) -> Vec<MetricFamily> {
    let mut softnet = [
        counter(
            "netmon_softnet_processed_total",
            "Packets a CPU's network stack processed (/proc/net/softnet_stat).",
        ),
        counter(
            "netmon_softnet_dropped_total",
            "Packets dropped because a CPU's backlog was full.",
        ),
        counter(
            "netmon_softnet_times_squeezed_total",
            "Times a CPU's receive processing ran out of its budget with work left.",
        ),
    ];
    let mut backlog = gauge(
        "netmon_softnet_backlog_packets",
        "Packets waiting in a CPU's backlog (Linux 5.10 and later).",
    );
    for cpu in &pressure.softnet {
        let labels = [("cpu", cpu.cpu.to_string())];
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let values = [cpu.processed, cpu.dropped, cpu.times_squeezed];
        for (family, value) in softnet.iter_mut().zip(values) {
            family.sample(&labels, value as f64);
        }
        if let Some(packets) = cpu.backlog_packets {
            backlog.sample(&labels, packets as f64);
        }
    }
    let mut memory = [
        gauge(
            "netmon_tcp_memory_pages",
            "Pages all TCP sockets take (/proc/net/sockstat).",
        ),
        gauge(
            "netmon_tcp_memory_pressure_pages",
            "Pages of TCP memory from which the kernel presses sockets to give memory back \
             (the second value of net.ipv4.tcp_mem).",
        ),
    ];
    if let Some(tcp) = &pressure.tcp_memory {
        memory[0].sample(&[], tcp.pages as f64);
        memory[1].sample(&[], tcp.pressure_pages as f64);
    }
    let families = softnet.into_iter().chain([backlog]).chain(memory);
    families.map(|f| f.0).collect()
}

/// Each namespace with its `netns` label.
fn by_namespace(pressure: &Pressure) -> impl Iterator<Item = (String, &NamespacePressure)> {
    pressure.namespaces.iter().map(|n| (n.netns.to_string(), n))
}
