#!/usr/bin/env bash
# Idempotent set-up for pytest-ebpf on Debian 12: every step checks before it acts, so a second
# run takes seconds. Usage: scripts/setup.sh [base|test]   (test = base + what the test suite needs)
# Any step that cannot succeed stops the script with "setup failed at step: <name>".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LEVEL="${1:-base}"
LLVM_MAJOR=22                      # the LLVM of Debian's rustc-web (rustc -vV: LLVM version 22.1.x)
BPF_LINKER_VERSION=0.13.0          # crates.io; feature llvm-22 matches rustc-web
OLD_LINKER_VERSION=0.9.15          # test only: a bpf-linker on LLVM 19, to provoke the mismatch
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

step() { STEP="$1"; echo "==> setup: $1"; }
trap 'echo "setup failed at step: ${STEP:-start}" >&2' ERR

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "setup failed at step: ${STEP}: need root (or sudo) to run: $*" >&2; exit 1; fi; }

step "Debian packages"
PKGS=(rustc-web cargo-web libstd-rust-web-dev-bpf rust-web-src "llvm-${LLVM_MAJOR}-dev"
      "libpolly-${LLVM_MAJOR}-dev" clang-19 bpftool libzstd-dev zlib1g-dev gcc libc6-dev file
      python3-venv iproute2)
if [ "$LEVEL" = test ]; then PKGS+=(llvm-19-dev libpolly-19-dev); fi
# the VMs of --ebpf-kernel=6.1,6.12 (qemu under TCG, a static busybox for the initramfs) and
# modinfo for the tests of the kernel image cache; without recommends (no GUI, no firmware)
VM_PKGS=(qemu-system-x86 busybox-static kmod)
install_missing() {  # $1 = extra apt-get flags, then the packages
  local flags="$1"; shift
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "    installing: ${missing[*]}"
    as_root apt-get update -qq
    # shellcheck disable=SC2086
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $flags "${missing[@]}" >/dev/null
  fi
}
install_missing "" "${PKGS[@]}"
if [ "$LEVEL" = test ]; then install_missing --no-install-recommends "${VM_PKGS[@]}"; fi

step "rustup toolchain 'debian' (Debian's rustc-web, prebuilt core for bpfel/bpfeb)"
if command -v rustup >/dev/null; then
  if ! rustup toolchain list | grep -qx 'debian'; then rustup toolchain link debian /usr; fi
  rustc +debian -vV | grep -q "LLVM version: ${LLVM_MAJOR}\." \
    || { echo "rustc +debian is not on LLVM ${LLVM_MAJOR}" >&2; false; }
else
  echo "    no rustup: cargo on PATH (/usr/bin/cargo, Debian) builds the eBPF crate"
fi

linker_ok() {  # $1 = binary, $2 = LLVM major it must be built on (static or shared libLLVM)
  # `--llvm-args=--version` reaches LLVM's own option parser: "LLVM version 22.1.8".
  [ -x "$1" ] && "$1" --version >/dev/null 2>&1 \
    && "$1" --llvm-args=--version -o /dev/null /dev/null 2>&1 | grep -q "LLVM version $2\."
}

# Build bpf-linker against exactly /usr/lib/llvm-$2, whatever else the machine has. bpf-linker's
# build script (0.13) ignores llvm-sys's LLVM_SYS_<N>_PREFIX: it reads LLVM_PREFIX, else runs the
# first `llvm-config` on PATH and prefers `<prefix>/lib64` when that exists. This image ships
# /usr/bin/llvm-config of LLVM 14 and a /usr/lib64, so every pin is given: LLVM_PREFIX, llvm-sys's
# prefix, and that LLVM's bin/ (with its llvm-config) first on PATH. tests/test_setup.py proves it
# from an empty HOME with a decoy llvm-config first on PATH.
install_linker() {  # $1 = version, $2 = LLVM major, $3 = install root
  local prefix="/usr/lib/llvm-$2"
  [ -x "$prefix/bin/llvm-config" ] || { echo "no $prefix/bin/llvm-config (llvm-$2-dev)" >&2; false; }
  env -u LLVM_CONFIG_PATH PATH="$prefix/bin:$PATH" LLVM_PREFIX="$prefix" \
    "LLVM_SYS_$2""1_PREFIX=$prefix" RUSTC=/usr/bin/rustc \
    /usr/bin/cargo install --quiet --force --locked "bpf-linker@$1" \
    --no-default-features --features "llvm-$2" --root "$3"
  linker_ok "$3/bin/bpf-linker" "$2" \
    || { echo "bpf-linker $1 in $3/bin does not link LLVM $2 ($("$3/bin/bpf-linker" --llvm-args=--version -o /dev/null /dev/null 2>&1 | grep -m1 "LLVM version"))" >&2; false; }
}

CARGO_ROOT="${CARGO_HOME:-$HOME/.cargo}"
step "bpf-linker ${BPF_LINKER_VERSION} on LLVM ${LLVM_MAJOR} (crates.io)"
if ! linker_ok "$CARGO_ROOT/bin/bpf-linker" "$LLVM_MAJOR"; then
  install_linker "$BPF_LINKER_VERSION" "$LLVM_MAJOR" "$CARGO_ROOT"
fi

if [ "$LEVEL" = test ]; then
  step "test tool: bpf-linker ${OLD_LINKER_VERSION} on LLVM 19 (provokes the LLVM mismatch)"
  OLD="${XDG_CACHE_HOME:-$HOME/.cache}/pytest-ebpf/bpf-linker-llvm19"   # shared by every clone
  if ! linker_ok "$OLD/bin/bpf-linker" 19; then
    install_linker "$OLD_LINKER_VERSION" 19 "$OLD"
  fi
fi

step "python virtual environment (.venv) with pytest-ebpf installed"
STAMP="$ROOT/.venv/.pytest-ebpf-stamp"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$ROOT/.venv/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install --quiet --upgrade pip
  "$ROOT/.venv/bin/pip" install --quiet -e "$ROOT[test]"
  echo "$WANT" > "$STAMP"
fi

if [ "$LEVEL" = test ]; then
  step "kernels for the VM tests (Debian's 6.1 and 6.12, cached in ~/.cache/pytest-ebpf/kernels)"
  "$ROOT/.venv/bin/pytest-ebpf" kernels fetch >/dev/null
fi

if [ "$(id -u)" = 0 ] && ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
  step "bpf filesystem at /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
if [ "$(id -u)" = 0 ] && [ -d /sys/kernel/tracing ] && ! grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts; then
  step "tracefs at /sys/kernel/tracing (Aya attaches tracepoints through it)"
  mount -t tracefs tracefs /sys/kernel/tracing
fi
echo "==> setup: done"
