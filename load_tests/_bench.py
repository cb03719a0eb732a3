"""The pieces of ``bench/worker_bench.py`` the load tests reuse (``bench/`` is a folder of scripts, not a
package: its modules import each other by name, so the folder goes on ``sys.path``)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import worker_bench  # noqa: E402

__all__ = ["common", "worker_bench"]
