//! Families from the host readers: interfaces, addresses, connections, listeners.
use prometheus::proto::{MetricFamily, MetricType};

use crate::{export::metrics::Family, model::Snapshot};

pub(super) fn families(snapshot: &Snapshot, out: &mut Vec<MetricFamily>) {
    let mut push = |family: Family| out.push(family.0);

    // Kernel interface statistics of the agent's namespace.
    let counters = [
        (
            "netmon_network_bytes_total",
            "Bytes received and sent, from the kernel's interface statistics.",
        ),
        (
            "netmon_network_packets_total",
            "Packets received and sent, from the kernel's interface statistics.",
        ),
        (
            "netmon_network_errors_total",
            "Receive and transmit errors, from the kernel's interface statistics.",
        ),
        (
            "netmon_network_drops_total",
            "Packets dropped by the device or its driver, from the kernel's interface statistics.",
        ),
    ];
    for (index, (name, help)) in counters.into_iter().enumerate() {
        let mut family = Family::new(name, help, MetricType::COUNTER);
        for interface in &snapshot.interfaces {
            let c = &interface.counters;
            let (rx, tx) = match index {
                0 => (c.rx_bytes, c.tx_bytes),
                1 => (c.rx_packets, c.tx_packets),
                2 => (c.rx_errors, c.tx_errors),
                _ => (c.rx_dropped, c.tx_dropped),
            };
            family.sample(
                &[("interface", &interface.name), ("direction", "rx")],
                rx as f64,
            );
            family.sample(
                &[("interface", &interface.name), ("direction", "tx")],
                tx as f64,
            );
        }
        push(family);
    }

    let mut info = Family::new(
        "netmon_network_info",
        "Interface metadata; the value is always 1.",
        MetricType::GAUGE,
    );
    let mut up = Family::new(
        "netmon_network_up",
        "1 when the interface's operational state is up.",
        MetricType::GAUGE,
    );
    let mut mtu = Family::new(
        "netmon_network_mtu_bytes",
        "Maximum transmission unit of the interface.",
        MetricType::GAUGE,
    );
    let mut speed = Family::new(
        "netmon_network_speed_bytes",
        "Link speed in bytes per second; absent when the device reports none.",
        MetricType::GAUGE,
    );
    for interface in &snapshot.interfaces {
        let name = interface.name.as_str();
        info.sample(
            &[
                ("interface", name),
                ("operstate", &interface.operstate),
                ("duplex", interface.duplex.as_deref().unwrap_or("unknown")),
                ("address", &interface.mac),
            ],
            1.0,
        );
        up.sample(&[("interface", name)], f64::from(u8::from(interface.up)));
        mtu.sample(&[("interface", name)], f64::from(interface.mtu));
        if let Some(mbps) = interface.speed_mbps {
            speed.sample(&[("interface", name)], mbps as f64 * 1_000_000.0 / 8.0);
        }
    }
    let mut capacity = Family::new(
        "netmon_network_capacity_bytes",
        "Capacity used for utilization in bytes per second: the configured link capacity, else \
         the link speed; absent when neither is known.",
        MetricType::GAUGE,
    );
    let mut addresses = Family::new(
        "netmon_network_address_info",
        "IPv4 and IPv6 addresses of the interfaces; the value is always 1.",
        MetricType::GAUGE,
    );
    for interface in &snapshot.interfaces {
        if let Some(mbps) = interface.capacity_mbps {
            capacity.sample(
                &[("interface", &interface.name)],
                mbps as f64 * 1_000_000.0 / 8.0,
            );
        }
        for address in &interface.addresses {
            addresses.sample(
                &[
                    ("interface", &interface.name),
                    ("family", address.family),
                    ("address", &address.address),
                    ("prefix_length", &address.prefix_length.to_string()),
                    ("broadcast", address.broadcast.as_deref().unwrap_or("")),
                ],
                1.0,
            );
        }
    }
    push(info);
    push(up);
    push(mtu);
    push(speed);
    push(capacity);
    push(addresses);

    let mut connections = Family::new(
        "netmon_network_connections",
        "TCP sockets by state, IPv4 and IPv6, from the kernel's socket dump.",
        MetricType::GAUGE,
    );
    for (state, count) in &snapshot.connections {
        connections.sample(&[("status", state)], *count as f64);
    }
    push(connections);

    let mut listening = Family::new(
        "netmon_listening_socket_info",
        "Listening TCP and bound UDP sockets with the processes holding them; the value is \
         always 1. pid and process are empty when no process could be found.",
        MetricType::GAUGE,
    );
    for socket in &snapshot.listening {
        let port = socket.port.to_string();
        let labels = |pid: &str, process: &str| {
            [
                ("protocol", socket.protocol),
                ("address", socket.address.as_str()),
                ("port", port.as_str()),
                ("pid", pid),
                ("process", process),
            ]
            .map(|(k, v)| (k, v.to_string()))
        };
        let owners: Vec<[(&str, String); 5]> = if socket.processes.is_empty() {
            vec![labels("", "")]
        } else {
            socket
                .processes
                .iter()
                .map(|p| labels(&p.pid.to_string(), &p.name))
                .collect()
        };
        for owner in owners {
            let pairs: Vec<(&str, &str)> = owner.iter().map(|(k, v)| (*k, v.as_str())).collect();
            listening.sample(&pairs, 1.0);
        }
    }
    push(listening);
}
