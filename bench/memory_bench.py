"""Peak memory of ``surveil replay`` on a simulated day with many accounts.

    python bench/memory_bench.py [--events 20000000] [--accounts 1000000]

Runs the replay in a child process and reports its peak resident set (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from common import day_file, machine, save


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--accounts", type=int, default=1_000_000)
    a = ap.parse_args()
    svb, acc = day_file(a.events, a.accounts)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "surveil.cli", "replay", str(svb), "--accounts", str(acc),
                        "--out", "/dev/null", "--rejects", "/dev/null", "--no-progress"],
                       capture_output=True, text=True)
    secs = time.perf_counter() - t
    if p.returncode:
        sys.exit(p.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    result = {"machine": machine(), "events_file": str(svb), "accounts": a.accounts,
              "peak_rss_bytes": peak, "peak_rss_gib": round(peak / 2**30, 3), "seconds": round(secs, 1),
              "summary": p.stderr.strip().splitlines()[-1]}
    print(json.dumps(result, indent=2))
    print("saved", save("memory", result))


if __name__ == "__main__":
    main()
