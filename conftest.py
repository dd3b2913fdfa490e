"""Session-wide environment for the plugin's own tests.

pytester points HOME at a temporary directory; rustup and cargo find their toolchains through
HOME, so pin RUSTUP_HOME and CARGO_HOME to the real ones before any test changes HOME.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("RUSTUP_HOME", str(Path.home() / ".rustup"))
os.environ.setdefault("CARGO_HOME", str(Path.home() / ".cargo"))
