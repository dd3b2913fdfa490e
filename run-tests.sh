#!/usr/bin/env bash
# Set up (idempotent) and run every check: ruff, mypy, the plugin's tests and the example's tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup.sh" test
export PATH="$HOME/.cargo/bin:$PATH"
cd "$ROOT"
echo "==> ruff";  .venv/bin/ruff check pytest_ebpf tests benchmarks
echo "==> mypy";  .venv/bin/mypy
echo "==> import-linter (the layer contract in pyproject.toml)"; .venv/bin/lint-imports
echo "==> pytest"
exec .venv/bin/pytest -n 2 "$@"
