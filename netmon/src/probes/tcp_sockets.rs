//! The TCP socket iterator (`netmon-ebpf/src/sockets.rs`): loaded when the kernel has BTF,
//! run once a poll for the connections by state and the ephemeral ports in use, which it
//! counts in its map.
use anyhow::{Context as _, anyhow};
use aya::{
    Btf, Ebpf,
    maps::{Array, MapData},
};
use netmon_common::iterators::{SOCKET_TALLY, TcpSocketTally};

use crate::probes::{Probes, iterators, slots::take_map};

const PROGRAM: &str = "nm_sockets_iter";

/// The map the iterator counts in.
pub(super) type Tally = Array<MapData, TcpSocketTally>;

/// Loads the iterator and takes its map; an error says why the socket dump stays the way.
pub(super) fn load(ebpf: &mut Ebpf, btf: Option<&Btf>) -> anyhow::Result<Tally> {
    iterators::load(ebpf, PROGRAM, "tcp", btf)?;
    Ok(Array::try_from(take_map(ebpf, SOCKET_TALLY)?)?)
}

impl Probes {
    /// The TCP sockets of the calling thread's namespace, counted; `None` when the iterator
    /// is not loaded. A walk that fails retires the iterator: the socket dump is the way from
    /// then on, and the status says why.
    pub fn tcp_sockets(&mut self) -> Option<anyhow::Result<TcpSocketTally>> {
        let ebpf = self.ebpf.as_mut().map(|(ebpf, _)| ebpf);
        if let Ok(tally) = &mut self.socket_iterator
            && let Err(err) = next_walk(tally)
        {
            let err = format!("clearing SOCKET_TALLY: {err}");
            self.socket_iterator = Err(err.clone());
            return Some(Err(anyhow!(err)));
        }
        let walked = iterators::walk(ebpf, &mut self.socket_iterator, PROGRAM)?;
        Some(walked.and_then(|_| {
            let tally = self.socket_iterator.as_ref().map_err(|e| anyhow!("{e}"))?;
            tally.get(&0, 0).context("reading SOCKET_TALLY")
        }))
    }

    /// Why the socket iterator is not used, if it is not.
    pub fn socket_iterator_error(&self) -> Option<&str> {
        self.socket_iterator.as_ref().err().map(String::as_str)
    }
}

/// Zeroes the tally for the next walk, numbered one past the last.
fn next_walk(tally: &mut Tally) -> Result<(), aya::maps::MapError> {
    let walk = tally.get(&0, 0)?.walk + 1;
    tally.set(
        0,
        TcpSocketTally {
            walk,
            ..TcpSocketTally::ZERO
        },
        0,
    )
}
