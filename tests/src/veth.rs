//! Links between test namespaces, namespaces made in linked pairs, and traffic sent across
//! them.
use std::{net::UdpSocket, time::Duration};

use crate::{machine::sh, netns::Netns};

/// A veth pair between two test namespaces, addressed 10.<subnet>.0.1/24 and .2, with static
/// neighbour entries so that no ARP packet mixes with the test's own traffic.
pub struct Veth {
    pub a_dev: String,
    pub b_dev: String,
    pub a_ip: String,
    pub b_ip: String,
}

impl Veth {
    pub fn connect(a: &Netns, b: &Netns, subnet: u8) -> Self {
        Self::connect_named(
            a,
            b,
            subnet,
            &format!("nma{subnet}"),
            &format!("nmb{subnet}"),
        )
    }

    /// Like [`Veth::connect`] with chosen device names.
    pub fn connect_named(a: &Netns, b: &Netns, subnet: u8, a_dev: &str, b_dev: &str) -> Self {
        let (a_dev, b_dev) = (a_dev.to_string(), b_dev.to_string());
        let a_ip = format!("10.{subnet}.0.1");
        let b_ip = format!("10.{subnet}.0.2");
        sh(
            "ip",
            &[
                "link", "add", &a_dev, "netns", &a.name, "type", "veth", "peer", "name", &b_dev,
                "netns", &b.name,
            ],
        );
        for (ns, dev, ip) in [(a, &a_dev, &a_ip), (b, &b_dev, &b_ip)] {
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        let mac = |ns: &Netns, dev: &str| ns.link(dev)["address"].as_str().unwrap().to_string();
        neighbour(a, &a_dev, &b_ip, &mac(b, &b_dev));
        neighbour(b, &b_dev, &a_ip, &mac(a, &a_dev));
        Self {
            a_dev,
            b_dev,
            a_ip,
            b_ip,
        }
    }
}

/// A permanent neighbour entry in `ns`: `ip` is at `mac` behind `dev`.
fn neighbour(ns: &Netns, dev: &str, ip: &str, mac: &str) {
    ns.ip(&[
        "neigh",
        "replace",
        ip,
        "lladdr",
        mac,
        "dev",
        dev,
        "nud",
        "permanent",
    ]);
}

/// Sends `count` UDP datagrams of `payload` bytes from `from` (in `ns`) to `to`.
pub fn send_udp(ns: &Netns, from: &str, to: &str, count: u64, payload: usize) {
    let (from, to) = (format!("{from}:0"), to.to_string());
    ns.run(move || {
        let socket = UdpSocket::bind(from).unwrap();
        for _ in 0..count {
            socket.send_to(&vec![7u8; payload], &to).unwrap();
        }
    });
}

/// Two namespaces made by the test, `a` and `b`, joined by a veth pair.
pub struct LinkedNamespaces {
    pub a: Netns,
    pub b: Netns,
    pub veth: Veth,
}

impl LinkedNamespaces {
    pub fn new(tag: &str, subnet: u8) -> Self {
        let a = Netns::new(&format!("{tag}-a"));
        let b = Netns::new(&format!("{tag}-b"));
        let veth = Veth::connect(&a, &b, subnet);
        Self { a, b, veth }
    }

    /// The `netns` label of `a`.
    pub fn netns_a(&self) -> String {
        self.a.inode().to_string()
    }

    /// The `netns` label of `b`.
    pub fn netns_b(&self) -> String {
        self.b.inode().to_string()
    }

    /// Sends `count` datagrams from `a` to port 9 of `b`, where nothing listens.
    pub fn send_to_port_9(&self, count: u64, payload: usize) {
        let to = format!("{}:9", self.veth.b_ip);
        send_udp(&self.a, &self.veth.a_ip, &to, count, payload);
    }

    /// A UDP socket bound to `port` of `b`'s end, waiting at most 5 s for each datagram.
    pub fn udp_receiver(&self, port: u16) -> UdpSocket {
        let addr = format!("{}:{port}", self.veth.b_ip);
        let socket = self.b.run(move || UdpSocket::bind(addr).unwrap());
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
    }
}
