//! The TCP socket iterator (`netmon-ebpf/src/sockets.rs`): loaded when the kernel has BTF,
//! run once a poll for the connections by state and the ephemeral ports in use.
use std::io::Read as _;

use anyhow::Context as _;
use aya::{Btf, Ebpf, programs::Iter};
use netmon_common::TcpSocketRecord;

use crate::probes::Probes;

const PROGRAM: &str = "nm_sockets_iter";

/// Loads the iterator; an error says why the socket dump stays the way.
pub(super) fn load(ebpf: &mut Ebpf, btf: Option<&Btf>) -> anyhow::Result<()> {
    let btf = btf.context("the kernel has no BTF")?;
    program(ebpf)?.load("tcp", btf)?;
    Ok(())
}

fn program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Iter> {
    Ok(ebpf
        .program_mut(PROGRAM)
        .context("the object has no socket iterator")?
        .try_into()?)
}

impl Probes {
    /// Every TCP socket of the calling thread's namespace, as (state, local port); `None` when
    /// the iterator is not loaded. A walk that fails retires the iterator: the socket dump is
    /// the way from then on, and the status says why.
    pub fn tcp_sockets(&mut self) -> Option<anyhow::Result<Vec<(u8, u16)>>> {
        let (ebpf, _) = self.ebpf.as_mut()?;
        if self.socket_iterator.is_err() {
            return None;
        }
        let walked = walk(ebpf);
        if let Err(err) = &walked {
            self.socket_iterator = Err(format!("a walk failed: {err:#}"));
        }
        Some(walked)
    }

    /// Why the socket iterator is not used, if it is not.
    pub fn socket_iterator_error(&self) -> Option<&str> {
        self.socket_iterator.as_ref().err().map(String::as_str)
    }
}

/// One walk: a link made for it, and the records read from the iterator it gives.
fn walk(ebpf: &mut Ebpf) -> anyhow::Result<Vec<(u8, u16)>> {
    let program = program(ebpf)?;
    let link = program.attach().context("attaching the socket iterator")?;
    let mut file = program
        .take_link(link)?
        .into_file()
        .context("starting a socket walk")?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .context("reading the socket walk")?;
    Ok(bytes
        .chunks_exact(size_of::<TcpSocketRecord>())
        .map(|record| (record[0], u16::from_ne_bytes([record[2], record[3]])))
        .collect())
}
