#!/usr/bin/env bash
# Set up (idempotent) and run pytest-ebpf on the example Aya project: builds lock-ebpf, prints verdicts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup.sh" base
export PATH="$HOME/.cargo/bin:$PATH"
cd "$ROOT/example_project"
exec "$ROOT/.venv/bin/pytest" --ebpf-crate=lock-ebpf "$@"
