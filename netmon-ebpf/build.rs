use which::which;

/// The kernel crate links with `bpf-linker`, which cargo does not know about: rebuild when the
/// linker binary changes.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
}
