//! The BPF iterators the agent runs while it polls (TCP sockets, processes' socket files):
//! each is loaded once and walked through a link made for the walk; a walk that fails retires
//! its iterator, and the agent's fallback is the way from then on.
use std::io::{ErrorKind, Read as _};

use anyhow::Context as _;
use aya::{Btf, Ebpf, programs::Iter};

/// Loads the iterator program `name` over the kernel's `target` objects (`tcp`, `task_file`).
pub(super) fn load(
    ebpf: &mut Ebpf,
    name: &str,
    target: &str,
    btf: Option<&Btf>,
) -> anyhow::Result<()> {
    let btf = btf.context("the kernel has no BTF")?;
    program(ebpf, name)?.load(target, btf)?;
    Ok(())
}

/// The output of one walk of the iterator `name`, whole; `None` when the object or the
/// iterator is not loaded (`loaded` says why not). A walk that fails retires the iterator:
/// `loaded` then says why.
pub(super) fn walk<T>(
    ebpf: Option<&mut Ebpf>,
    loaded: &mut Result<T, String>,
    name: &str,
) -> Option<anyhow::Result<Vec<u8>>> {
    let ebpf = ebpf?;
    if loaded.is_err() {
        return None;
    }
    let walked = walk_once(ebpf, name);
    if let Err(err) = &walked {
        *loaded = Err(format!("a walk failed: {err:#}"));
    }
    Some(walked)
}

fn walk_once(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<Vec<u8>> {
    let program = program(ebpf, name)?;
    let link = program
        .attach()
        .with_context(|| format!("attaching the iterator {name}"))?;
    let mut file = program
        .take_link(link)?
        .into_file()
        .with_context(|| format!("starting a walk of {name}"))?;
    let mut bytes = Vec::new();
    loop {
        match file.read_to_end(&mut bytes) {
            Ok(_) => return Ok(bytes),
            // A million objects that wrote nothing end one read; the next goes on from there.
            Err(err) if err.kind() == ErrorKind::WouldBlock => continue,
            Err(err) => return Err(err).with_context(|| format!("reading the walk of {name}")),
        }
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Iter> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()?)
}
