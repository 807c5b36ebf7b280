use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;
use object::build::elf::SectionData;

/// Builds `netmon-ebpf` for the BPF target so that `netmon` embeds the object.
fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "netmon-ebpf")
        .ok_or_else(|| anyhow!("netmon-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let ebpf_package = aya_build::Package {
        name: name.as_str(),
        root_dir: manifest_path
            .parent()
            .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?
            .as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf_package], Toolchain::default())?;
    strip_debug_info(&std::path::Path::new(&std::env::var("OUT_DIR")?).join("netmon"))
}

/// Drops the DWARF sections from the object: the linker needs them to make BTF, the loader
/// does not, and they were three quarters of the object the agent carries in its binary.
fn strip_debug_info(path: &std::path::Path) -> anyhow::Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut builder = object::build::elf::Builder::read(&*data)
        .with_context(|| format!("parsing {}", path.display()))?;
    for section in builder.sections.iter_mut() {
        let name = section.name.as_slice();
        if name.starts_with(b".debug") || name.starts_with(b".rel.debug") {
            section.delete = true;
        }
    }
    // The linker names sections from the symbol string table; the writer wants a table of
    // their own.
    if !builder
        .sections
        .iter()
        .any(|s| matches!(s.data, SectionData::SectionString))
    {
        let names = builder.sections.add();
        names.name = b".shstrtab"[..].into();
        names.sh_type = object::elf::SHT_STRTAB;
        names.data = SectionData::SectionString;
    }
    let mut stripped = Vec::new();
    builder
        .write(&mut stripped)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::write(path, stripped).with_context(|| format!("writing {}", path.display()))
}
