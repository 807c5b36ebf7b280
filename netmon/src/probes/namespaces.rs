//! The agent's side of namespace teardown (`netmon-ebpf/src/namespaces.rs`): the watch on
//! `__put_net`, and the inodes of the namespaces it saw go.
use std::collections::BTreeSet;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
    programs::{FEntry, KProbe},
};

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
        let ring = ebpf
            .take_map("GONE_NAMESPACES")
            .ok_or_else(|| anyhow!("map GONE_NAMESPACES missing from the object"))?;
        Ok(Self {
            ring: RingBuf::try_from(ring)?,
            method,
        })
    }

    pub(super) fn method(&self) -> &'static str {
        self.method
    }

    /// The namespaces torn down since the last call.
    pub(super) fn drain(&mut self) -> BTreeSet<u32> {
        let mut gone = BTreeSet::new();
        while let Some(item) = self.ring.next() {
            if let Some(inode) = item.get(..4) {
                gone.insert(u32::from_ne_bytes([inode[0], inode[1], inode[2], inode[3]]));
            }
        }
        gone
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
    let program: &mut KProbe = ebpf
        .program_mut("nm_netns_kprobe")
        .ok_or_else(|| anyhow!("program nm_netns_kprobe missing from the object"))?
        .try_into()?;
    program.load()?;
    if let Err(err) = program.attach(TEARDOWN, 0) {
        let _ = program.unload();
        return Err(anyhow::Error::new(err).context(format!("kprobe on {TEARDOWN}")));
    }
    Ok(())
}
