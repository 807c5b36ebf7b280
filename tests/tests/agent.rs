//! The agent end to end: real binary, real kernel programs, known traffic, clean exit.
use std::{net::UdpSocket, time::Duration};

use netmon_tests::{Agent, Netns, Veth, loaded_netmon_programs, require_root, wait_for_unload};

const DATAGRAMS: u64 = 200;
const PAYLOAD: usize = 100;

#[test]
fn counts_known_traffic_and_leaves_nothing_loaded() {
    require_root();
    let a = Netns::new("agent-a");
    let b = Netns::new("agent-b");
    let veth = Veth::connect(&a, &b, 201);
    let target = format!("{}:9999", veth.b_ip);
    let receiver = {
        let target = target.clone();
        b.run(move || UdpSocket::bind(target).unwrap())
    };

    let mut agent = Agent::start(&[]);
    let attached = agent.fresh_metrics();
    assert_eq!(
        attached.value(
            "netmon_probe_attached",
            &[("probe", "net_dev_xmit"), ("method", "tp_btf")]
        ),
        Some(1.0),
        "this kernel has BTF: the transmit hook attaches as tp_btf"
    );

    let netns_a = a.inode().to_string();
    let labels = [
        ("netns", netns_a.as_str()),
        ("interface", veth.a_dev.as_str()),
        ("direction", "tx"),
    ];
    let kernel_before = a.link_stats(&veth.a_dev);
    let before = agent.fresh_metrics();
    let source = format!("{}:0", veth.a_ip);
    a.run(move || {
        let socket = UdpSocket::bind(source).unwrap();
        for _ in 0..DATAGRAMS {
            socket.send_to(&[7u8; PAYLOAD], &target).unwrap();
        }
    });
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..DATAGRAMS {
        receiver.recv(&mut buf).expect("every datagram arrives");
    }
    let kernel_after = a.link_stats(&veth.a_dev);
    let after = agent.fresh_metrics();

    let kernel_packets = kernel_after.tx_packets - kernel_before.tx_packets;
    let netmon_packets = after.counter("netmon_kernel_packets_total", &labels)
        - before.counter("netmon_kernel_packets_total", &labels);
    assert_eq!(kernel_packets, DATAGRAMS);
    assert_eq!(netmon_packets, kernel_packets);
    let kernel_bytes = kernel_after.tx_bytes - kernel_before.tx_bytes;
    let netmon_bytes = after.counter("netmon_kernel_bytes_total", &labels)
        - before.counter("netmon_kernel_bytes_total", &labels);
    // Ethernet (14) + IPv4 (20) + UDP (8) headers around each payload.
    assert_eq!(kernel_bytes, DATAGRAMS * (14 + 20 + 8 + PAYLOAD as u64));
    assert_eq!(netmon_bytes, kernel_bytes);

    assert!(!loaded_netmon_programs().is_empty());
    let status = agent.stop(Duration::from_secs(5));
    assert!(status.success(), "netmon exited with {status}");
    assert_eq!(
        wait_for_unload(Duration::from_secs(5)),
        Vec::<String>::new(),
        "programs left loaded after the agent exited"
    );
}
