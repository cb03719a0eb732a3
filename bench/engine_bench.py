"""Engine throughput on a simulated day, each figure against a baseline measured in the same run.

    python bench/engine_bench.py [--events 20000000] [--accounts 200000] [--rounds 2]

- binary frames: full replay (read + decode + all three rules) vs a bare read + decode of the same file;
- JSON Lines: full replay vs a bare ``orjson.loads`` per line of the same file.
Rounds alternate baseline and full run; the best of each is reported (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import orjson
from common import day_file, machine, save

from surveil.events.batch import Registry
from surveil.events.io import EventWriter, read_events
from surveil.replay import replay


def bare_decode(path: Path) -> tuple[int, float]:
    reg, rej = Registry(), []
    t = time.perf_counter()
    n = sum(len(b) for b in read_events(path, reg, rej))
    return n, time.perf_counter() - t


def bare_orjson(path: Path) -> tuple[int, float]:
    loads = orjson.loads
    n = 0
    t = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            loads(line)
            n += 1
    return n, time.perf_counter() - t


def full(path: Path, accounts: Path) -> tuple[int, float, dict]:
    res = replay([path], accounts=accounts)
    return res.events, res.seconds, dict(res.by_rule)


def best(fn, rounds):
    out = None
    for _ in range(rounds):
        gc.collect()
        r = fn()
        if out is None or r[1] < out[1]:
            out = r
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--accounts", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-json", action="store_true")
    a = ap.parse_args()
    svb, acc = day_file(a.events, a.accounts)
    jl = svb.with_suffix(".jsonl")
    if not a.skip_json and not jl.exists():
        reg, rej = Registry(), []
        with EventWriter(jl, reg) as w:
            for b in read_events(svb, reg, rej):
                w.write(b)
    result = {"machine": machine(), "events_file": str(svb), "accounts": a.accounts}
    base = best(lambda: bare_decode(svb), a.rounds)
    run = best(lambda: full(svb, acc), a.rounds)
    result["binary"] = {"events": run[0], "bare_read_decode_eps": base[0] / base[1], "full_eps": run[0] / run[1],
                        "ratio_to_bare": (run[0] / run[1]) / (base[0] / base[1]), "alerts": run[2]}
    print(json.dumps(result["binary"], indent=2), flush=True)
    if not a.skip_json:
        base = best(lambda: bare_orjson(jl), a.rounds)
        run = best(lambda: full(jl, acc), a.rounds)
        result["jsonl"] = {"events": run[0], "bare_orjson_loads_eps": base[0] / base[1], "full_eps": run[0] / run[1],
                           "ratio_to_bare": (run[0] / run[1]) / (base[0] / base[1]), "alerts": run[2],
                           "bytes_per_line": jl.stat().st_size / base[0]}
        print(json.dumps(result["jsonl"], indent=2), flush=True)
    print("saved", save("engine", result))


if __name__ == "__main__":
    main()
