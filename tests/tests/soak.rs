//! Soak and churn, bounded: traffic, 50 concurrent scrapers and repeated creation and deletion
//! of namespaces and interfaces, together. No request fails, no count is lost, and memory and
//! map entries settle once the churn stops.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use netmon_tests::{Agent, Netns, Veth, request, require_root, send_udp, status_mib};

/// How long the churn lasts.
const CHURN: Duration = Duration::from_secs(40);
/// RSS the agent may gain between the end of the first churn round and the end of the test.
const RSS_BOUND_MIB: f64 = 16.0;

fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:").unwrap()
}

#[test]
fn traffic_scrapers_and_churn_together() {
    require_root();
    let a = Netns::new("soak-a");
    let b = Netns::new("soak-b");
    let veth = Veth::connect(&a, &b, 238);
    let agent = Arc::new(Agent::start(&[]));
    let baseline = agent.fresh_metrics();
    let entries =
        |m: &netmon_tests::Metrics| m.counter("netmon_probe_map_entries", &[("map", "traffic")]);

    let stop = Arc::new(AtomicBool::new(false));
    let (requests, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let scrapers: Vec<_> = (0..50)
        .map(|i| {
            let (agent, stop) = (agent.clone(), stop.clone());
            let (requests, failures) = (requests.clone(), failures.clone());
            thread::spawn(move || {
                let paths = [
                    "/metrics",
                    "/api/v1/interfaces",
                    "/api/v1/drops",
                    "/api/v1/diagnosis",
                ];
                let mut stream = agent.connect().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let path = paths[(i + requests.load(Ordering::Relaxed) as usize) % paths.len()];
                    requests.fetch_add(1, Ordering::Relaxed);
                    match request(&mut stream, agent.addr, path, &[]) {
                        Ok(r) if r.status == 200 && !r.body.is_empty() => {}
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            stream = agent.connect().unwrap();
                        }
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();

    // Steady traffic on the pair that stays, in bounded batches.
    let sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let (ns, from, to) = (
            std::fs::File::open(a.path()).unwrap(),
            format!("{}:0", veth.a_ip),
            format!("{}:9", veth.b_ip),
        );
        thread::spawn(move || {
            use std::os::fd::AsRawFd as _;
            // SAFETY: entering the test's namespace on this thread only.
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            let socket = std::net::UdpSocket::bind(from).unwrap();
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..100 {
                    socket.send_to(&[0u8; 200], &to).unwrap();
                }
                sent.fetch_add(100, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // Churn: namespaces with interfaces made, used and deleted, over and over.
    let begin = Instant::now();
    let mut rounds = 0;
    let mut rss_after_first_round = 0.0;
    while begin.elapsed() < CHURN {
        let x = Netns::new("churn-x");
        let y = Netns::new("churn-y");
        let pair = Veth::connect(&x, &y, 239);
        x.ip(&[
            "link", "add", "nmc0", "type", "veth", "peer", "name", "nmc1",
        ]);
        send_udp(&x, &pair.a_ip, &format!("{}:9", pair.b_ip), 20, 50);
        thread::sleep(Duration::from_millis(300));
        drop((x, y));
        rounds += 1;
        if rounds == 1 {
            thread::sleep(Duration::from_millis(500));
            rss_after_first_round = rss_mib(agent.pid());
        }
    }
    stop.store(true, Ordering::Relaxed);
    for scraper in scrapers {
        scraper.join().unwrap();
    }
    traffic.join().unwrap();
    let total_sent = sent.load(Ordering::Relaxed);

    // Let the kernel finish freeing the namespaces, then let the agent clean up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let settled = loop {
        let m = agent.fresh_metrics();
        if entries(&m) <= entries(&baseline) + 2 || Instant::now() > deadline {
            break m;
        }
        thread::sleep(Duration::from_millis(500));
    };
    let kernel = a.link_stats(&veth.a_dev);
    let netns = a.inode().to_string();
    let counted = settled.counter(
        "netmon_kernel_packets_total",
        &[
            ("netns", &netns),
            ("interface", &veth.a_dev),
            ("direction", "tx"),
        ],
    );
    let rss_end = rss_mib(agent.pid());
    eprintln!(
        "soak: {rounds} churn rounds, {} requests, {} failed, {total_sent} datagrams, RSS \
         {rss_after_first_round:.1} -> {rss_end:.1} MiB, traffic map entries {} -> {}",
        requests.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
        entries(&baseline),
        entries(&settled)
    );
    assert!(rounds >= 10, "only {rounds} churn rounds");
    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed requests");
    assert!(requests.load(Ordering::Relaxed) > 5000);
    assert_eq!(
        kernel.tx_packets, total_sent,
        "the kernel saw every datagram"
    );
    assert_eq!(counted, kernel.tx_packets, "no count lost");
    assert!(
        entries(&settled) <= entries(&baseline) + 2,
        "map entries {} after churn, {} before",
        entries(&settled),
        entries(&baseline)
    );
    assert!(
        rss_end <= rss_after_first_round + RSS_BOUND_MIB,
        "RSS grew from {rss_after_first_round:.1} to {rss_end:.1} MiB"
    );
}
