//! The TCP peer table: connections opened and accepted by (namespace, role, remote address,
//! port): each open's result and time, counted as the socket leaves `SYN_SENT` or
//! `SYN_RECV`, and each connection's totals, counted as it closes.
use crate::slots::{CLAIMED, CountsKept, SlotKey, SlotTableSpec, SlotTag};

/// Capacity of the TCP peer table: (namespace, role, remote address, port).
pub const MAX_PEER_KEYS: u32 = 4096;

/// The table's maps: tags, counts shared by all CPUs, and the claims of the bounded-walk
/// build.
pub const TAGS: &str = "PEER_TAGS";
pub const COUNTS: &str = "PEERS";
pub const CLAIMS: &str = "PEER_CLAIMS";
/// The socket iterator's memo of the last slot of each role (see [`WalkMemo`]).
pub const WALK_MEMO: &str = "PEER_WALK_MEMO";
/// When the first SYN of each connect whose SYN was retried left (see [`RetriedSyn`]).
pub const RETRIED_SYNS: &str = "RETRIED_SYNS";
pub const TABLE: SlotTableSpec = SlotTableSpec {
    number: 6,
    label: "peers",
    slots: MAX_PEER_KEYS,
    tags: TAGS,
    counts: COUNTS,
    claims: CLAIMS,
    kept: CountsKept::Shared,
    maps: &[TAGS, COUNTS, CLAIMS, WALK_MEMO, RETRIED_SYNS],
};

/// Roles: this host opened the connection (the port is the remote one), or accepted it (the
/// port is the local, listening one).
pub const ROLE_CLIENT: u8 = 0;
pub const ROLE_SERVER: u8 = 1;

/// Results of a connection attempt, the index of its count.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerResult {
    /// The handshake completed.
    Ok = 0,
    /// A reset answered the SYN (`ECONNREFUSED`; an ICMP port unreachable gives the same).
    Refused = 1,
    /// No answer: the SYN retries ran out (`ETIMEDOUT`).
    Timeout = 2,
    /// An ICMP destination unreachable (`EHOSTUNREACH`, `ENETUNREACH`, `EACCES` for
    /// administratively prohibited).
    Unreachable = 3,
    /// Any other error, or none (the socket was closed while connecting).
    Other = 4,
}

impl PeerResult {
    pub const ALL: [PeerResult; 5] = [
        Self::Ok,
        Self::Refused,
        Self::Timeout,
        Self::Unreachable,
        Self::Other,
    ];

    /// The result of an attempt that ended in `CLOSE` with the socket's error `sk_err`.
    #[inline(always)]
    pub fn of_error(sk_err: i32) -> Self {
        match sk_err {
            ECONNREFUSED => Self::Refused,
            ETIMEDOUT => Self::Timeout,
            EHOSTUNREACH | ENETUNREACH | EACCES | EHOSTDOWN => Self::Unreachable,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Other => "other",
        }
    }
}

// Linux's errno values (asm-generic/errno.h), the same on every architecture netmon runs on.
const EACCES: i32 = 13;
const ENETUNREACH: i32 = 101;
const ETIMEDOUT: i32 = 110;
const ECONNREFUSED: i32 = 111;
const EHOSTDOWN: i32 = 112;
const EHOSTUNREACH: i32 = 113;

/// The remote address of the identity that counts what has no slot of its own: all ones,
/// a multicast address no TCP connection has.
pub const OVERFLOW_ADDRESS: [u64; 2] = [u64::MAX, u64::MAX];

/// What a peer slot counts: the attempts of one role to or from one remote address and port
/// in one namespace. The address is IPv6, an IPv4 address mapped into it (`::ffff:a.b.c.d`),
/// as two big-endian halves: the slot's `extra` and `extra2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    /// Namespace inode of the socket; 0 when it could not be read.
    pub netns: u32,
    /// [`ROLE_CLIENT`] or [`ROLE_SERVER`].
    pub role: u8,
    /// The remote port of a client, the local port of a server; 0 for the overflow identity.
    pub port: u16,
    /// The remote address, high and low halves; [`OVERFLOW_ADDRESS`] for the overflow.
    pub address: [u64; 2],
}

impl PeerKey {
    /// The first word of the slot identity; the address is the second and third. The low
    /// half of an address is never 0 in a slot: such an address (a subnet-router anycast
    /// address, no usual peer) counts under the overflow identity, as a complete claim needs
    /// a third word that is not 0.
    #[inline(always)]
    pub fn slot_id(&self) -> u64 {
        ((self.netns as u64) << 32) | CLAIMED | ((self.role as u64) << 16) | self.port as u64
    }

    /// The key of the slot that counts what this key cannot: the overflow identity of its
    /// namespace and role.
    #[inline(always)]
    pub fn overflow(&self) -> Self {
        Self {
            port: 0,
            address: OVERFLOW_ADDRESS,
            ..*self
        }
    }

    /// Whether this is an overflow identity.
    pub fn is_overflow(&self) -> bool {
        self.address == OVERFLOW_ADDRESS && self.port == 0
    }
}

/// Connects whose SYN was retried and that have not yet ended, at most: a connect time is
/// the time since the first SYN, which the kernel forgets as the handshake completes. A
/// retry that finds the map full is counted in the table's `map_full`, and its connect is
/// timed by the last SYN's round trip.
pub const MAX_RETRIED_SYNS: u32 = 1024;

/// A connect in `SYN_SENT` whose SYN was retried: its namespace and both ends (a connecting
/// socket's four ports and addresses are its own in the namespace).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetriedSyn {
    /// The remote address, as in [`PeerKey`].
    pub address: [u64; 2],
    pub netns: u32,
    pub local_port: u16,
    pub remote_port: u16,
}

/// Buckets of the peer histograms, by powers of four: bucket 0 holds what is under 128 us,
/// bucket `i` then `[2^(5+2i), 2^(7+2i))` microseconds, the last everything from 2^23 us
/// (8.4 s) on.
pub const PEER_BUCKETS: usize = 10;

/// The counts of one peer slot, shared by all CPUs and added to atomically.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Attempts by result ([`PeerResult`] as index).
    pub results: [u64; 5],
    /// Times of the opens that succeeded: the kernel's round-trip sample of the last SYN (a
    /// client) or SYN-ACK (a server).
    pub connect_time: [u64; PEER_BUCKETS],
    pub connect_time_sum_ns: u64,
    /// Totals of the connections as they closed (failed opens included): bytes the peer
    /// acknowledged (`tcp_sock.bytes_acked`), bytes received (`bytes_received`), segments
    /// retransmitted (`total_retrans`, SYNs included).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u64,
    /// Smoothed round-trip time of the connections that closed with one (`srtt_us`).
    pub rtt: [u64; PEER_BUCKETS],
    pub rtt_sum_ns: u64,
    /// The connections not yet closed, as the socket iterator's last walk of the agent's
    /// namespace found them.
    pub open: OpenConnections,
}

/// What the socket iterator counts of a peer's connections not yet closed, in one walk: only
/// the walk writes it, and a walk numbered other than `walk` starts it again from zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenConnections {
    pub walk: u64,
    /// Established, and opens waiting for their handshake (`SYN_SENT`, `SYN_RECV`).
    pub established: u64,
    pub opening: u64,
    /// Their `tcp_sock` totals so far, as in [`PeerCounts`], and smoothed round trips now.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u64,
    pub rtt: [u64; PEER_BUCKETS],
    pub rtt_sum_ns: u64,
}

/// The slot a walk of the socket iterator last counted one role's connections in, and that
/// slot's identity: many connections in a row share their peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkMemo {
    pub walk: u64,
    pub id: u64,
    pub high: u64,
    pub low: u64,
    pub slot: u64,
}

impl OpenConnections {
    /// Adds the counts of `other` (its walk aside).
    pub fn add(&mut self, other: &Self) {
        self.established += other.established;
        self.opening += other.opening;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.retransmits += other.retransmits;
        for (total, count) in self.rtt.iter_mut().zip(other.rtt) {
            *total += count;
        }
        self.rtt_sum_ns += other.rtt_sum_ns;
    }
}

/// The bucket of a duration in microseconds (see [`PEER_BUCKETS`]). BPF has no
/// count-leading-zeros instruction: floor(log2) in five steps.
#[inline(always)]
pub fn peer_bucket(mut us: u64) -> usize {
    if us >= 1 << 32 {
        return PEER_BUCKETS - 1;
    }
    let mut log = 0;
    for shift in [16, 8, 4, 2, 1] {
        if us >= 1 << shift {
            us >>= shift;
            log += shift;
        }
    }
    if log < 7 {
        return 0;
    }
    ((log - 7) / 2 + 1).min(PEER_BUCKETS - 1)
}

/// The upper bound of a peer histogram's bucket in microseconds; none for the last.
pub fn peer_bucket_bound_us(bucket: usize) -> Option<u64> {
    (bucket < PEER_BUCKETS - 1).then(|| 1 << (7 + 2 * bucket))
}

/// A peer slot counts the peer its words name, once its claim is complete. Its namespace has
/// no cookie in the identity (the address takes the words): a namespace is told from an
/// earlier one with its inode by the teardown notices, which free the earlier one's slots.
impl SlotKey for PeerKey {
    const TABLE: &'static SlotTableSpec = &TABLE;
    type Value = PeerCounts;

    fn from_tag(tag: &SlotTag) -> Option<Self> {
        tag.is_complete().then_some(Self {
            netns: (tag.id >> 32) as u32,
            role: (tag.id >> 16) as u8,
            port: tag.id as u16,
            address: [tag.extra, tag.extra2],
        })
    }

    fn netns_cookie(_: &SlotTag) -> u64 {
        0
    }
}

// SAFETY: `#[repr(C)]`, only integers, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PeerCounts {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_slots_round_trip_without_a_cookie() {
        let key = PeerKey {
            netns: 4_026_532_000,
            role: ROLE_SERVER,
            port: 5432,
            address: [0, 0x0000_ffff_0a00_0307],
        };
        let tag = SlotTag {
            id: key.slot_id(),
            extra: key.address[0],
            extra2: key.address[1],
            meta: 0,
        };
        assert_eq!(PeerKey::from_tag(&tag), Some(key));
        assert_eq!(PeerKey::netns_cookie(&tag), 0);
        assert!(key.overflow().is_overflow());
        assert!(!key.is_overflow());
    }

    #[test]
    fn buckets_are_powers_of_four_of_microseconds() {
        for (us, bucket) in [
            (0, 0),
            (127, 0),
            (128, 1),
            (511, 1),
            (512, 2),
            ((1 << 21) - 1, 7),
            (1 << 21, 8),
            ((1 << 23) - 1, 8),
            (1 << 23, 9),
            (u64::MAX, 9),
        ] {
            assert_eq!(peer_bucket(us), bucket, "{us}");
        }
        // Each bucket ends where the next begins.
        for bucket in 0..PEER_BUCKETS - 1 {
            let bound = peer_bucket_bound_us(bucket).unwrap();
            assert_eq!(peer_bucket(bound - 1), bucket);
            assert_eq!(peer_bucket(bound), bucket + 1);
        }
        assert_eq!(peer_bucket_bound_us(PEER_BUCKETS - 1), None);
    }

    #[test]
    fn errors_name_results() {
        assert_eq!(PeerResult::of_error(111), PeerResult::Refused);
        assert_eq!(PeerResult::of_error(110), PeerResult::Timeout);
        assert_eq!(PeerResult::of_error(113), PeerResult::Unreachable);
        assert_eq!(PeerResult::of_error(0), PeerResult::Other);
    }
}
