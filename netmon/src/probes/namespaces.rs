//! The agent's side of namespace teardown (`netmon-ebpf/src/namespaces.rs`): the watch on
//! `__put_net`, and the inodes of the namespaces it saw go.
use std::collections::BTreeSet;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
    programs::FEntry,
};

use netmon_common::events;

use crate::probes::{attach::attach_kprobe, drain_ring, slots::take_map};

/// The kernel function called once per namespace, when its last reference goes.
const TEARDOWN: &str = "__put_net";

/// The attached watch and the ring it reports on.
pub(super) struct NamespaceWatch {
    ring: RingBuf<MapData>,
    method: &'static str,
}

impl NamespaceWatch {
    /// Attaches the watch by fentry where the kernel has BTF, else by kprobe.
    pub(super) fn attach(ebpf: &mut Ebpf, btf: Option<&aya::Btf>) -> anyhow::Result<Self> {
        let method = match fentry(ebpf, btf) {
            Ok(()) => "fentry",
            Err(fentry_error) => {
                kprobe(ebpf).with_context(|| format!("{fentry_error:#}"))?;
                "kprobe"
            }
        };
        Ok(Self {
            ring: RingBuf::try_from(take_map(ebpf, events::GONE_NAMESPACES)?)?,
            method,
        })
    }

    pub(super) fn method(&self) -> &'static str {
        self.method
    }

    /// The namespaces torn down since the last call.
    pub(super) fn drain(&mut self) -> BTreeSet<u32> {
        drain_ring::<u32>(&mut self.ring).into_iter().collect()
    }
}

fn fentry(ebpf: &mut Ebpf, btf: Option<&aya::Btf>) -> anyhow::Result<()> {
    let btf = btf.ok_or_else(|| anyhow!("the kernel has no BTF (/sys/kernel/btf/vmlinux)"))?;
    let program: &mut FEntry = ebpf
        .program_mut("nm_netns_fentry")
        .ok_or_else(|| anyhow!("program nm_netns_fentry missing from the object"))?
        .try_into()?;
    program
        .load(TEARDOWN, btf)
        .with_context(|| format!("loading fentry on {TEARDOWN}"))?;
    if let Err(err) = program.attach() {
        let _ = program.unload();
        return Err(anyhow::Error::new(err).context(format!("fentry on {TEARDOWN}")));
    }
    Ok(())
}

fn kprobe(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let program = ebpf
        .program_mut("nm_netns_kprobe")
        .ok_or_else(|| anyhow!("program nm_netns_kprobe missing from the object"))?;
    attach_kprobe(program.try_into()?, TEARDOWN)
}
