"""Where the Debian prometheus and promtool binaries are (``make test`` installs them, deploy/system-packages.sh)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"


def binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} not found: run `make system-packages` (Debian package prometheus)", pytrace=False)
    return path
