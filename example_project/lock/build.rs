use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Builds `lock-ebpf` for bpf{el,eb}-unknown-none (matching the endianness of the
/// target being built) and copies the `lock` object to `$OUT_DIR/lock`.
fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "lock-ebpf")
        .ok_or_else(|| anyhow!("lock-ebpf package not found"))?;
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

    // Build the eBPF crate with the toolchain rustup picked for this build (set by the
    // rustup proxy, e.g. from rust-toolchain.toml or `cargo +debian`), falling back
    // to the Debian toolchain, whose prebuilt BPF `core` avoids `-Z build-std`.
    println!("cargo:rerun-if-env-changed=RUSTUP_TOOLCHAIN");
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "debian".to_owned());

    // aya-ebpf uses `#![feature(asm_experimental_arch)]` on the BPF target, which a
    // stable toolchain (like Debian's) rejects. Allow unstable features for that
    // crate only, as lock-ebpf/.cargo/config.toml does for direct builds (that file
    // is not read here: the nested cargo runs from this crate's directory). Not "1":
    // aya-build would take "1" (or the package name) to mean nightly and pass
    // `-Z build-std=core`, while the Debian toolchain ships a prebuilt BPF `core`.
    println!("cargo:rerun-if-env-changed=RUSTC_BOOTSTRAP");
    if std::env::var_os("RUSTC_BOOTSTRAP").is_none() {
        // SAFETY: the build script is single-threaded at this point.
        unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf") };
    }

    aya_build::build_ebpf([ebpf_package], Toolchain::Custom(&toolchain))
}
