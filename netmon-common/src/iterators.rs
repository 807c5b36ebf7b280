//! What the BPF iterators the agent runs once a poll write: the TCP socket tally and the
//! sockets among the processes' open files.

/// The one-entry map of the socket iterator's tally.
pub const SOCKET_TALLY: &str = "SOCKET_TALLY";

/// What one walk of the TCP socket iterator counts, in its one-entry map: sockets by state
/// (`TCP_NEW_SYN_RECV`, 12, for a connection request) and, one bit a port, the local ports
/// that some socket other than a listener holds. The agent zeroes it before each walk; only
/// the agent's walk, on one CPU at a time, writes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSocketTally {
    pub states: [u64; 16],
    pub ports: [u64; 1024],
    /// The walk's number, which the agent sets: the open connections it counts by peer
    /// (`peers::OpenConnections`) are those of this walk.
    pub walk: u64,
}

impl TcpSocketTally {
    pub const ZERO: Self = Self {
        states: [0; 16],
        ports: [0; 1024],
        walk: 0,
    };
}

/// One open socket of a process, as the socket file iterator writes it: the socket's inode
/// number (what `/proc/<pid>/fd` shows as `socket:[N]`) and the process's id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketFileRecord {
    pub inode: u64,
    pub tgid: u32,
    pub pad: u32,
}
// SAFETY: `#[repr(C)]`, only integers, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for TcpSocketTally {}
