use which::which;

/// Building this crate has an undeclared dependency on the `bpf-linker` binary. This makes
/// cargo rebuild the crate whenever the mtime of `which bpf-linker` changes (as the
/// aya-template does).
fn main() {
    let bpf_linker = which("bpf-linker").unwrap();
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
