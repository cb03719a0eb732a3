"""Engine throughput on a simulated day, each figure against a baseline measured in the same run.

    python bench/engine_bench.py [--events 20000000] [--accounts 200000] [--rounds 2]
                                 [--variants int_ids,str_ids,...] [--skip-binary] [--skip-json]

- binary frames: full replay (read + decode + all three rules) vs a bare read + decode of the same file;
- JSON Lines, for each shape of the contract (``VARIANTS``): full replay vs a bare ``orjson.loads`` per line of
  the same file. The variants are the simulated day's JSON Lines rewritten: integer order ids (as written),
  decimal-string order ids, ISO-8601 timestamps, no seq, owner and broker inline, owner and broker from
  reference data only, match ids on the trades (contract version 2). Every variant must give the same alerts
  and recommendations (compared with order ids as text: "123" and 123 are the same order).
Rounds alternate baseline and full run; the best of each is reported (the machine is shared and noisy). A
variant's file is made next to the day's (in .cache/bench) and removed after its measurement unless
``--keep-variants``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import orjson
from common import day_file, machine, save

from surveil.engine.alerts import dumps
from surveil.events.batch import Registry
from surveil.events.io import EventWriter, read_events
from surveil.replay import replay

VARIANTS = ("int_ids", "str_ids", "iso_ts", "no_seq", "owner_broker_inline", "from_refdata", "match_ids")
CHUNK = 64 << 20


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


def _ids_as_text(v, key=""):
    """A record with its order ids as text (an order id is kept as given: "123" and 123 are the same order)."""
    if isinstance(v, dict):
        return {k: _ids_as_text(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [_ids_as_text(x, key) for x in v]
    return str(v) if "order_id" in key and type(v) is int else v


def full(path: Path, accounts: Path) -> tuple[int, float, dict, str]:
    res = replay([path], accounts=accounts)
    digest = hashlib.sha256(b"".join(dumps(_ids_as_text(r)) + b"\n" for r in res.records)).hexdigest()[:16]
    return res.events, res.seconds, dict(res.by_rule), digest


def best(fn, rounds):
    out = None
    for _ in range(rounds):
        gc.collect()
        r = fn()
        if out is None or r[1] < out[1]:
            out = r
    return out


# -- the variants: the day's JSON Lines (as the simulator and `surveil convert` write them: integer ns ts,
#    integer order ids, seq, broker inline, owner from reference data) rewritten line by line ---------------
_OID = re.compile(rb'"order_id":(\d+)')
_SEQ = re.compile(rb',"seq":-?\d+')
_BROKER_OWNER = re.compile(rb',"(?:broker|owner)":"[^"]*"')
_ACCOUNT = re.compile(rb'"venue":"(\w+)","type":"\w+","account":"([^"]*)"(,"broker":"[^"]*")?+(?!,"owner")')
_TRADE_OID = re.compile(rb'("type":"trade".*?"order_id":[^,}]+)')
_SH = np.timedelta64(8 * 3600 * 10**9, "ns")


def _iso(lines: list[bytes]) -> list[bytes]:
    cut = [line.index(b",", 6) for line in lines]
    ts = np.array([int(line[6:c]) for line, c in zip(lines, cut)], np.int64)
    iso = np.datetime_as_string(ts.astype("datetime64[ns]") + _SH, unit="ns")
    return [b'{"ts":"%s+08:00"%s' % (s.encode(), line[c:]) for s, line, c in zip(iso.tolist(), lines, cut)]


def _owners(accounts: Path) -> dict[tuple[bytes, bytes], bytes]:
    with open(accounts, newline="", encoding="utf-8") as f:
        return {(r["venue"].encode(), r["account"].encode()): r["owner"].encode() for r in csv.DictReader(f)
                if r["owner"]}


def transform(variant: str, owners: dict):
    """A function rewriting a chunk of whole lines (without its last newline) into the variant."""
    if variant == "str_ids":
        return lambda chunk: _OID.sub(rb'"order_id":"\1"', chunk)
    if variant == "no_seq":
        return lambda chunk: _SEQ.sub(b"", chunk)
    if variant == "from_refdata":
        return lambda chunk: _BROKER_OWNER.sub(b"", chunk)
    if variant == "iso_ts":
        return lambda chunk: b"\n".join(_iso(chunk.split(b"\n")))
    if variant == "owner_broker_inline":  # the owner of reference data, else the engine's default (VENUE:account)
        def inline(m):
            owner = owners.get((m[1], m[2])) or m[1] + b":" + m[2]
            return m[0] + b',"owner":"' + owner + b'"'
        return lambda chunk: _ACCOUNT.sub(inline, chunk)
    if variant == "match_ids":  # the two sides of an execution share one (consecutive trades here)
        count = [0]

        def mid(m):
            count[0] += 1
            return m[1] + b',"match_id":"X%d"' % (count[0] // 2) if count[0] % 3 else m[1] + b',"match_id":%d' % (
                count[0] // 2)
        return lambda chunk: _TRADE_OID.sub(mid, chunk)
    raise ValueError(variant)


def variant_file(base: Path, variant: str, accounts: Path) -> Path:
    if variant == "int_ids":
        return base
    out = base.with_suffix(f".{variant}.jsonl")
    if out.exists():
        return out
    fn = transform(variant, _owners(accounts) if variant == "owner_broker_inline" else {})
    tmp = out.with_suffix(".tmp")
    t = time.perf_counter()
    with open(base, "rb") as src, open(tmp, "wb") as dst:
        carry = b""
        while True:
            data = src.read(CHUNK)
            if not data:
                break
            data = carry + data
            cut = data.rfind(b"\n")
            carry = data[cut + 1:]
            dst.write(fn(data[:cut]) + b"\n")
        if carry:
            dst.write(fn(carry) + b"\n")
    tmp.rename(out)
    print(f"  made {out.name} in {time.perf_counter() - t:.1f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--accounts", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-json", action="store_true")
    ap.add_argument("--skip-binary", action="store_true")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"JSON variants (of {', '.join(VARIANTS)})")
    ap.add_argument("--keep-variants", action="store_true", help="keep the variants' files for the next run")
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args()
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    if set(variants) - set(VARIANTS):
        ap.error(f"unknown variant(s) {sorted(set(variants) - set(VARIANTS))}")
    svb, acc = day_file(a.events, a.accounts)
    jl = svb.with_suffix(".jsonl")
    if not a.skip_json and not jl.exists():
        reg, rej = Registry(), []
        with EventWriter(jl, reg) as w:
            for b in read_events(svb, reg, rej):
                w.write(b)
    result = {"machine": machine(), "events_file": str(svb), "accounts": a.accounts}
    if not a.skip_binary:
        base = best(lambda: bare_decode(svb), a.rounds)
        run = best(lambda: full(svb, acc), a.rounds)
        result["binary"] = {"events": run[0], "bare_read_decode_eps": base[0] / base[1], "full_eps": run[0] / run[1],
                            "ratio_to_bare": (run[0] / run[1]) / (base[0] / base[1]), "alerts": run[2],
                            "records_sha256_16": run[3]}
        print(json.dumps(result["binary"], indent=2), flush=True)
    if not a.skip_json:
        result["jsonl_variants"] = {}
        for v in variants:
            path = variant_file(jl, v, acc)
            bases, runs = [], []
            for _ in range(a.rounds):  # alternating, the best of each
                gc.collect()
                bases.append(bare_orjson(path))
                gc.collect()
                runs.append(full(path, acc))
            base, run = min(bases, key=lambda r: r[1]), min(runs, key=lambda r: r[1])
            r = {"events": run[0], "bare_orjson_loads_eps": base[0] / base[1], "full_eps": run[0] / run[1],
                 "ratio_to_bare": (run[0] / run[1]) / (base[0] / base[1]),
                 "rounds_full_eps": [x[0] / x[1] for x in runs], "rounds_bare_eps": [x[0] / x[1] for x in bases],
                 "alerts": run[2], "records_sha256_16": run[3], "bytes_per_line": path.stat().st_size / base[0]}
            result["jsonl_variants"][v] = r
            print(f"{v:>20}: replay {r['full_eps'] / 1e3:7.0f} k/s  bare orjson {r['bare_orjson_loads_eps'] / 1e3:7.0f}"
                  f" k/s  ratio {r['ratio_to_bare']:.2f}  ({r['bytes_per_line']:.0f} B/line, records {run[3]})",
                  flush=True)
            if path != jl and not a.keep_variants:
                path.unlink()
        digests = {r["records_sha256_16"] for r in result["jsonl_variants"].values()}
        if "binary" in result:
            digests.add(result["binary"]["records_sha256_16"])
        result["same_records_every_input"] = len(digests) == 1
        print("same alerts and recommendations from every input:", len(digests) == 1, flush=True)
    if not a.no_save:
        print("saved", save("engine", result))


if __name__ == "__main__":
    main()
