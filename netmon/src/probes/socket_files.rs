//! The socket file iterator (`netmon-ebpf/src/socket_files.rs`): loaded when the kernel has
//! BTF and the agent sees the host's process ids, run when the owners of sockets are looked
//! for. It finds them in one walk of the kernel's file tables, where the fallback reads every
//! `/proc/<pid>/fd` link.
use std::{collections::BTreeSet, os::unix::fs::MetadataExt as _};

use anyhow::Context as _;
use aya::{Btf, Ebpf};
use netmon_common::iterators::SocketFileRecord;

use crate::{
    model::SocketHolders,
    probes::{Probes, iterators},
};

const PROGRAM: &str = "nm_socket_files_iter";

/// Loads the iterator; an error says why `/proc` stays the way.
pub(super) fn load(ebpf: &mut Ebpf, btf: Option<&Btf>) -> anyhow::Result<()> {
    // The iterator gives the kernel's process ids, which are those of `/proc` only in the
    // host's PID namespace.
    anyhow::ensure!(
        in_initial_pid_namespace()?,
        "the agent runs in a PID namespace of its own"
    );
    iterators::load(ebpf, PROGRAM, "task_file", btf)
}

/// The inode of the host's PID namespace, fixed by the kernel (`PROC_PID_INIT_INO`).
const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// Whether this process sees the kernel's process ids: it is in the host's PID namespace.
/// (`NSpid` in its status cannot tell: a `/proc` mounted in a PID namespace shows the ids of
/// that namespace and those under it only.)
fn in_initial_pid_namespace() -> anyhow::Result<bool> {
    let namespace = std::fs::metadata("/proc/self/ns/pid").context("our PID namespace")?;
    Ok(namespace.ino() == INITIAL_PID_NAMESPACE)
}

impl Probes {
    /// The processes holding each of the `wanted` sockets; `None` when the iterator is not
    /// loaded. A walk that fails retires the iterator: `/proc` is the way from then on, and
    /// the status says why.
    pub fn socket_holders(
        &mut self,
        wanted: &BTreeSet<u32>,
    ) -> Option<anyhow::Result<SocketHolders>> {
        let ebpf = self.ebpf.as_mut().map(|(ebpf, _)| ebpf);
        let walked = iterators::walk(ebpf, &mut self.file_iterator, PROGRAM)?;
        Some(walked.map(|records| holders(&records, wanted)))
    }

    /// Why the socket file iterator is not used, if it is not.
    pub fn file_iterator_error(&self) -> Option<&str> {
        self.file_iterator.as_ref().err().map(String::as_str)
    }
}

/// The holders of the `wanted` sockets among the walk's records.
fn holders(records: &[u8], wanted: &BTreeSet<u32>) -> SocketHolders {
    let mut found = SocketHolders::new();
    for record in records.chunks_exact(size_of::<SocketFileRecord>()) {
        let inode = u64::from_ne_bytes(record[..8].try_into().unwrap_or_default());
        let tgid = u32::from_ne_bytes(record[8..12].try_into().unwrap_or_default());
        if let Ok(inode) = u32::try_from(inode)
            && wanted.contains(&inode)
        {
            found.entry(inode).or_default().insert(tgid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_wanted_sockets_and_every_holder() {
        let record = |inode: u64, tgid: u32| {
            let mut bytes = inode.to_ne_bytes().to_vec();
            bytes.extend(tgid.to_ne_bytes());
            bytes.extend(0u32.to_ne_bytes());
            bytes
        };
        let records: Vec<u8> = [
            record(7, 100),
            record(8, 100),
            record(7, 200),
            record(9, 300),
        ]
        .concat();
        let found = holders(&records, &BTreeSet::from([7, 9, 10]));
        assert_eq!(found.len(), 2);
        assert_eq!(found[&7], BTreeSet::from([100, 200]));
        assert_eq!(found[&9], BTreeSet::from([300]));
    }
}
