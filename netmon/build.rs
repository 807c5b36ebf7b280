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
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?
        .as_str();
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // Two objects of the same programs: the one for kernels without `bpf_loop` first, moved
    // aside before the build of the newest kernels' object takes its name.
    for (features, object) in [
        (&["bounded-walk"][..], "netmon-bounded-walk"),
        (&[], "netmon"),
    ] {
        let ebpf_package = aya_build::Package {
            name: name.as_str(),
            root_dir,
            features,
            ..Default::default()
        };
        aya_build::build_ebpf([ebpf_package], Toolchain::default())?;
        let built = out_dir.join("netmon");
        strip_debug_info(&built)?;
        if object != "netmon" {
            std::fs::rename(&built, out_dir.join(object))
                .with_context(|| format!("naming the object {object}"))?;
        }
    }
    page_library(&out_dir)
}

/// The files of the live page's charting library (the npm package uPlot, at the version
/// `web/package-lock.json` pins) that the binary embeds.
const PAGE_LIBRARY: &[&str] = &["uPlot.iife.min.js", "uPlot.min.css"];

/// Installs the page's charting library with `npm ci` where it is missing or not the locked
/// version, and copies its files to `OUT_DIR/page/`.
fn page_library(out_dir: &std::path::Path) -> anyhow::Result<()> {
    let web = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("web");
    let lock = web.join("package-lock.json");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!(
        "cargo:rerun-if-changed={}",
        web.join("package.json").display()
    );
    let version = |path: &std::path::Path, pointer: &str| -> Option<String> {
        let text = std::fs::read_to_string(path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json.pointer(pointer)?.as_str().map(str::to_string)
    };
    let locked = version(&lock, "/packages/node_modules~1uplot/version")
        .context("web/package-lock.json names no version of uplot")?;
    let package = web.join("node_modules/uplot");
    if version(&package.join("package.json"), "/version").as_deref() != Some(&*locked) {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&web)
            .status()
            .context(
                "running npm, which installs the live page's charting library: install Node.js \
                 and npm (cargo xtask setup does)",
            )?;
        anyhow::ensure!(status.success(), "npm ci in {} failed", web.display());
    }
    let target = out_dir.join("page");
    std::fs::create_dir_all(&target)?;
    for file in PAGE_LIBRARY {
        let from = package.join("dist").join(file);
        std::fs::copy(&from, target.join(file))
            .with_context(|| format!("copying {}", from.display()))?;
    }
    Ok(())
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
