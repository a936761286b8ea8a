"""Unit-tier setup: the tests exercise this checkout's ``src/``, also when the venv
holds a non-editable install of an older state of it (``make venv`` installs a copy)."""

from __future__ import annotations

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
