"""Shared helpers of the benchmark commands."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"date": dt.date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "python": platform.python_version(),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=ROOT).stdout.strip()}


def day_file(events: int, accounts: int, suffix: str = ".svb", seed: int = 11) -> tuple[Path, Path]:
    """A cached simulated day (events file, accounts CSV)."""
    from surveil.sim import simulate

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"day-{events}-{accounts}-{seed}{suffix}"
    acc = Path(f"{path}.accounts.csv")
    res_acc = path.with_suffix(".accounts.csv")
    if not path.exists():
        res = simulate(path, events=events, accounts=accounts, seed=seed, progress=True)
        acc = Path(res.accounts_path)
    else:
        acc = res_acc if res_acc.exists() else acc
    return path, acc


def save(name: str, result: dict) -> Path:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    p = out / f"{name}-{result['machine']['date']}.json"
    p.write_text(json.dumps(result, indent=2) + "\n")
    return p
