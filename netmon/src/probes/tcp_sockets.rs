//! The TCP socket iterator (`netmon-ebpf/src/sockets.rs`): loaded when the kernel has BTF,
//! run once a poll for the connections by state and the ephemeral ports in use.
use aya::{Btf, Ebpf};
use netmon_common::TcpSocketRecord;

use crate::probes::{Probes, iterators};

const PROGRAM: &str = "nm_sockets_iter";

/// Loads the iterator; an error says why the socket dump stays the way.
pub(super) fn load(ebpf: &mut Ebpf, btf: Option<&Btf>) -> anyhow::Result<()> {
    iterators::load(ebpf, PROGRAM, "tcp", btf)
}

impl Probes {
    /// Every TCP socket of the calling thread's namespace, as (state, local port); `None` when
    /// the iterator is not loaded. A walk that fails retires the iterator: the socket dump is
    /// the way from then on, and the status says why.
    pub fn tcp_sockets(&mut self) -> Option<anyhow::Result<Vec<(u8, u16)>>> {
        let ebpf = self.ebpf.as_mut().map(|(ebpf, _)| ebpf);
        let walked = iterators::walk(ebpf, &mut self.socket_iterator, PROGRAM)?;
        Some(walked.map(|bytes| {
            bytes
                .chunks_exact(size_of::<TcpSocketRecord>())
                .map(|record| (record[0], u16::from_ne_bytes([record[2], record[3]])))
                .collect()
        }))
    }

    /// Why the socket iterator is not used, if it is not.
    pub fn socket_iterator_error(&self) -> Option<&str> {
        self.socket_iterator.as_ref().err().map(String::as_str)
    }
}
