//! Drop samples: one record a sampled drop, through a ring, within a per-CPU budget.

/// Bytes of the ring buffer that carries drop samples to the agent: about 740 samples. At
/// the default budget a CPU sends at most 400 between two reads (a burst of 200 and 2 s of
/// 100 a second); when many CPUs drop at once, what does not fit is counted as suppressed.
pub const DROP_SAMPLE_RING_BYTES: u32 = 64 * 1024;
/// Entries of the `DROP_SAMPLE_BUDGET` per-CPU array of [`SampleTally`]: what this CPU sent
/// and suppressed (written by the programs only), and how many samples it may have sent by
/// now (written by the agent only, which adds to it at every poll as a token bucket
/// refills). With one writer an entry, neither side's update can undo the other's.
pub const SAMPLE_BUDGET_SLOTS: u32 = 2;
pub const SAMPLE_USED: u32 = 0;
pub const SAMPLE_ALLOWED: u32 = 1;

/// An entry of `DROP_SAMPLE_BUDGET`. At [`SAMPLE_USED`]: samples sent, and real drops not
/// sampled (the budget was spent, or the ring full). At [`SAMPLE_ALLOWED`]: in `samples`,
/// the samples allowed by now; `suppressed` is unused.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleTally {
    pub samples: u64,
    pub suppressed: u64,
}

/// The maps: the ring of samples, and the per-CPU budget.
pub const RING: &str = "DROP_SAMPLES";
pub const BUDGET: &str = "DROP_SAMPLE_BUDGET";
pub const MAPS: [&str; 2] = [RING, BUDGET];

/// One dropped packet as the drop hook samples it. Addresses are in network order, IPv4 in
/// the first four bytes; ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropSample {
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`).
    pub time_ns: u64,
    /// Where in the kernel the packet was freed (the tracepoint's `location`); 0 if unknown.
    pub location: u64,
    /// Inode number of the packet's socket, when it has a full one; 0 otherwise.
    pub socket_inode: u64,
    /// [`InterfaceKey::to_meta`] of the device.
    pub interface: u64,
    pub reason: u32,
    /// `skb->protocol` in host order (0x0800 IPv4, 0x86dd IPv6).
    pub ethertype: u16,
    /// 4 or 6 when the packet's IP header was read; 0 otherwise.
    pub family: u8,
    /// IP protocol (6 TCP, 17 UDP, ...), when `family` is set.
    pub ip_protocol: u8,
    pub source_port: u16,
    pub destination_port: u16,
    /// TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ...).
    pub tcp_flags: u8,
    pub _pad: [u8; 3],
    pub source: [u8; 16],
    pub destination: [u8; 16],
}
// SAFETY: `#[repr(C)]`, only integers, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for DropSample {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for SampleTally {}
