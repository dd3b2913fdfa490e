"""A minimal Rust eBPF crate (no dependencies: builds in seconds) for tests of the build step.

``make_crate(dest)`` writes it: one XDP program, ``#![no_std]``, BTF flags in its own
``.cargo/config.toml``, the ``debian`` toolchain in ``rust-toolchain.toml`` (read by rustup;
without rustup the ``cargo`` on PATH builds it). ``body`` replaces the program's body, so a test
can plant a warning or an error.
"""

from __future__ import annotations

from pathlib import Path

NAME = "mini-ebpf"
BIN = "mini"
CHECKLIST_FLAGS = ["-C", "panic=abort", "-C", "lto=yes", "-C", "codegen-units=1",
                   "-C", "debuginfo=2", "-C", "link-arg=--btf"]

MANIFEST = f"""\
[package]
name = "{NAME}"
version = "0.1.0"
edition = "2021"

[[bin]]
name = "{BIN}"
path = "src/main.rs"

[profile.release]
panic = "abort"
debug = 2
codegen-units = 1
lto = LTO

[profile.dev]
panic = "abort"
"""

PROGRAM = """\
#![no_std]
#![no_main]

#[no_mangle]
#[link_section = "xdp"]
pub extern "C" fn pass(_ctx: *mut core::ffi::c_void) -> u32 {
    BODY
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
"""


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def make_crate(dest: Path, body: str = "2", config: str | None = None,
               toolchain: str | None = "debian", lto: bool = False) -> Path:
    """Write the crate at ``dest`` and return ``dest``. ``config`` replaces the default
    ``.cargo/config.toml`` (target bpfel, BTF flags)."""
    (dest / "src").mkdir(parents=True, exist_ok=True)
    (dest / ".cargo").mkdir(exist_ok=True)
    (dest / "Cargo.toml").write_text(MANIFEST.replace("LTO", "true" if lto else "false"))
    (dest / "src" / "main.rs").write_text(PROGRAM.replace("BODY", body))
    if config is None:
        config = ('[build]\ntarget = "bpfel-unknown-none"\n'
                  'rustflags = ["-C", "debuginfo=2", "-C", "link-arg=--btf"]\n')
    (dest / ".cargo" / "config.toml").write_text(config)
    if toolchain is not None:
        (dest / "rust-toolchain.toml").write_text(f'[toolchain]\nchannel = "{toolchain}"\n')
    return dest
