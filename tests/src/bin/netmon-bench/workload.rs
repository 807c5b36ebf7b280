//! What the bench makes the kernel do: the kernel-cost traffic across a veth pair, in windows
//! measured one by one, and the interfaces and held sockets of the busy host.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use netmon_tests::{Netns, Veth, send_udp, sh};

use crate::bpf::{Stats, program_stats};

/// Datagrams per kernel-cost run.
pub(crate) const DATAGRAMS: u64 = 200_000;
/// Rounds of each kernel-cost run; a round is a tenth of the workload with an agent of its
/// own, and each figure is the median of the rounds (one round's figure moves by a few ns
/// with the machine's state and where the agent's maps are).
pub(crate) const ROUNDS: u64 = 10;
/// Windows a round's datagrams are sent in, each measured on its own: a window in which the
/// virtual machine lost its CPU to the host for a while is an outlier that the median of the
/// windows passes over, where a mean over the whole round would carry it.
pub(crate) const SLICES: u64 = 20;
/// Windows a round's TCP part (lossy transfer, connections, refused ones) is run in, for the
/// same reason: the hooks it drives run a few hundred to a few thousand times a round, and an
/// interrupt that lands in a program (its handler's time counts as the program's) moved a
/// round's mean by tens of ns when the round was one window.
pub(crate) const TCP_SLICES: u64 = 5;
/// Connections made and closed in all rounds (a state change each way, and the handshake):
/// 200 a window. A hook's first runs in a window find its map lines cold; at 40 a window
/// those misses moved the state and reset hooks' figures by about +10 ns, and two runs of
/// one binary against itself differed by up to 7 ns; at 200, by about 1 ns.
pub(crate) const CONNECTIONS: u64 = 10_000;
/// Connections refused (a reset sent and one received each) in all rounds, 200 a window
/// as for [`CONNECTIONS`].
pub(crate) const REFUSED: u64 = 10_000;

/// Bytes of each of a round's lossy transfers, 16 MiB a round (see [`LOSSY_PORT`]): about a
/// hundred retransmits a window, for the reason given at [`CONNECTIONS`].
pub(crate) const LOSSY_BYTES: usize = (16 << 20) / TCP_SLICES as usize;
/// Bytes the receiver of the lossy transfer asks for at a time.
pub(crate) const RECEIVE_CHUNK: usize = 1024;
/// Port of a bulk transfer one of whose every [`LOSSY_EVERY`] segments [`LossyPort`] drops,
/// so that the sender retransmits.
const LOSSY_PORT: u16 = 7002;
pub(crate) const LOSSY_EVERY: &str = "25";

/// (run count, run time) of every program before and after a window of the workload.
pub(crate) type Window = (Stats, Stats);

/// One round of traffic for every hook, in windows measured one by one: [`TCP_SLICES`]
/// windows of TCP (a bulk transfer that loses segments for retransmits, connections and
/// refused ones for state changes and resets), then [`SLICES`] windows of datagrams across
/// the pair to a closed port (transmits, receives and drops). One round: a [`ROUNDS`]th of
/// 200,000 datagrams, [`CONNECTIONS`] connections and [`REFUSED`] refused ones, and 16 MiB.
pub(crate) fn workload(a: &Netns, b: &Netns, veth: &Veth) -> Vec<Window> {
    let mut windows: Vec<Window> = (0..TCP_SLICES)
        .map(|_| {
            let before = program_stats();
            lossy_transfer(a, b, veth);
            connections(a, b, veth);
            (before, program_stats())
        })
        .collect();
    windows.extend((0..SLICES).map(|_| datagram_window(a, veth)));
    windows
}

/// One slice of a round's datagrams across the pair to a closed port, measured on its own.
pub(crate) fn datagram_window(a: &Netns, veth: &Veth) -> Window {
    let before = program_stats();
    send_udp(
        a,
        &veth.a_ip,
        &format!("{}:9", veth.b_ip),
        DATAGRAMS / ROUNDS / SLICES,
        64,
    );
    (before, program_stats())
}

/// A slice of a round's TCP connections, and of its refused ones.
fn connections(a: &Netns, b: &Netns, veth: &Veth) {
    let (addr, closed) = (format!("{}:7000", veth.b_ip), format!("{}:7001", veth.b_ip));
    let listener = {
        let addr = addr.clone();
        b.run(move || TcpListener::bind(addr).unwrap())
    };
    let server = thread::spawn(move || {
        for _ in 0..CONNECTIONS / ROUNDS / TCP_SLICES {
            drop(listener.accept());
        }
    });
    a.run(move || {
        for _ in 0..CONNECTIONS / ROUNDS / TCP_SLICES {
            drop(TcpStream::connect(&addr));
        }
        for _ in 0..REFUSED / ROUNDS / TCP_SLICES {
            let _ = TcpStream::connect(&closed);
        }
    });
    server.join().unwrap();
}

/// Sends [`LOSSY_BYTES`] from `a` to `b` on [`LOSSY_PORT`] and waits until `b` has read
/// them all.
fn lossy_transfer(a: &Netns, b: &Netns, veth: &Veth) {
    let addr = format!("{}:{LOSSY_PORT}", veth.b_ip);
    let listener = {
        let addr = addr.clone();
        b.run(move || TcpListener::bind(addr).unwrap())
    };
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        // Read as a program that handles a message at a time does, so that the receive hook
        // runs thousands of times a round.
        let (mut chunk, mut received) = ([0u8; RECEIVE_CHUNK], 0);
        loop {
            match stream.read(&mut chunk).unwrap() {
                0 => break,
                n => received += n,
            }
        }
        assert_eq!(received, LOSSY_BYTES, "the lossy transfer arrived whole");
    });
    a.run(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(&vec![7u8; LOSSY_BYTES]).unwrap();
    });
    server.join().unwrap();
}

/// Drops every [`LOSSY_EVERY`]th segment that reaches [`LOSSY_PORT`] in `b` while alive.
pub(crate) struct LossyPort<'a>(&'a Netns);

impl<'a> LossyPort<'a> {
    /// Also makes `a` send one segment a packet (no segmentation offload), so that each drop
    /// loses one segment and costs one retransmit.
    pub(crate) fn new(a: &Netns, b: &'a Netns, veth: &Veth) -> Self {
        a.exec(&["ip", "link", "set", "dev", &veth.a_dev, "gso_max_segs", "1"]);
        Self::rule(b, "-A");
        Self(b)
    }

    fn rule(b: &Netns, operation: &str) {
        let port = LOSSY_PORT.to_string();
        b.exec(&[
            "iptables",
            operation,
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            &port,
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            LOSSY_EVERY,
            "--packet",
            "0",
            "-j",
            "DROP",
        ]);
    }
}

impl Drop for LossyPort<'_> {
    fn drop(&mut self) {
        Self::rule(self.0, "-D");
    }
}

/// Holds `count` TCP sockets (half clients, half servers) inside `ns`, spread over processes
/// because one process may hold at most 20,000 files.
pub(crate) fn hold_sockets(ns: &Netns, count: usize, first_port: u16) -> Vec<Child> {
    let mut children = Vec::new();
    let mut left = count / 2;
    let mut port = first_port;
    while left > 0 {
        let connections = left.min(5000);
        left -= connections;
        let code = format!(
            "import resource, socket, threading, time\n\
             resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))\n\
             l = socket.socket(); l.bind(('127.0.0.1', {port})); l.listen(8192)\n\
             held = []\n\
             def accept():\n    for _ in range({connections}):\n        held.append(l.accept()[0])\n\
             t = threading.Thread(target=accept); t.start()\n\
             for _ in range({connections}):\n    held.append(socket.create_connection(('127.0.0.1', {port})))\n\
             t.join(); print('ready', flush=True); time.sleep(3600)"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", &code])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        children.push(child);
        port += 1;
    }
    children
}

/// Adds veth pairs `from..to` between `x` and `y`.
pub(crate) fn add_interfaces(x: &Netns, y: &Netns, from: usize, to: usize) {
    let mut batch = String::new();
    for i in from..to {
        batch.push_str(&format!(
            "link add nmk{i} type veth peer name nmq{i} netns {}\nlink set nmk{i} up\n",
            y.name
        ));
    }
    let path = std::env::temp_dir().join(format!("{}.batch", x.name));
    std::fs::write(&path, batch).unwrap();
    sh("ip", &["-n", &x.name, "-batch", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(path);
}
