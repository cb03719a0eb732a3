"""Synthetic trading day: a background market plus planted scenarios with their expected alerts.

>>> from surveil.sim import simulate
>>> res = simulate(Path("/tmp/day.svb"), events=2_000_000)        # doctest: +SKIP
>>> res.events_path, res.accounts_path, res.labels_path, res.n_events  # doctest: +SKIP

Writes three files next to each other:

* ``out`` — the events, in the format its extension says (``.jsonl``, ``.jsonl.gz``, ``.svb``;
  via :class:`surveil.events.io.EventWriter`), in non-decreasing ``ts`` order;
* ``<stem>.accounts.csv`` — ``venue,account,owner,broker,reported`` for every account
  (``reported``: the account filed a programmatic-trading report; background: 60 % of managers'
  accounts, half of the busiest 2 %, 1 % of the rest; scenario accounts: true, except DUP0001);
* ``<stem>.labels.jsonl`` — one JSON object per expected alert (``"expected": "alert"`` with
  ``expected_value``) and per planted negative case (``"expected": "none"``).

``events`` counts the background orders, cancels and trades; index levels (about 25,000 events)
and scenario events are added on top, so ``SimResult.n_events`` is larger. Same arguments, same
seed -> byte-identical ``.jsonl`` / ``.svb`` / accounts / labels files (a ``.gz`` output also
carries the gzip header's timestamp).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from surveil.events.batch import Batch, Registry
from surveil.events.io import EventWriter, InputError, output_format
from surveil.events.schema import F_HAS_ORDER_ID, VENUES
from surveil.sim.market import (
    Background,
    Calendar,
    EventBuf,
    SymbolTable,
    index_events,
    oid_bytes,
)
from surveil.sim.scenarios import SCENARIOS, Ctx

__all__ = ["simulate", "SimResult", "SCENARIOS", "KNOWN_SCENARIOS", "sidecar_paths"]

KNOWN_SCENARIOS: tuple[str, ...] = tuple(SCENARIOS)
CHUNK_EVENTS = 1_000_000
_EVENT_EXTS = (".jsonl.gz", ".svb.gz", ".jsonl", ".json", ".svb")


@dataclass
class SimResult:
    events_path: Path
    accounts_path: Path
    labels_path: Path
    n_events: int
    scenarios: list[str]


def sidecar_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """The accounts CSV and labels paths that go with an events file."""
    out = Path(out)
    name = out.name
    for ext in _EVENT_EXTS:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return out.with_name(name + ".accounts.csv"), out.with_name(name + ".labels.jsonl")


def _check_scenarios(scenarios: Sequence[str]) -> list[str]:
    if isinstance(scenarios, str):
        scenarios = [s for s in scenarios.split(",") if s.strip()]
    names: list[str] = []
    for s in scenarios:
        s = str(s).strip()
        if s not in SCENARIOS:
            raise ValueError(f"unknown scenario {s!r}; known scenarios: {', '.join(KNOWN_SCENARIOS)}")
        if s not in names:
            names.append(s)
    return names


def simulate(out: str | os.PathLike, scenarios: Sequence[str] = ("lingjun", "hft", "daily"),
             events: int = 2_000_000, seed: int = 1, accounts: int = 20_000, date: str = "2024-02-19",
             progress: bool = False) -> SimResult:
    """Generate one synthetic trading day into ``out`` (see the module docstring)."""
    out = Path(out)
    names = _check_scenarios(scenarios)
    try:
        output_format(out)
    except InputError as e:
        raise ValueError(str(e)) from None
    events, accounts, seed = int(events), int(accounts), int(seed)
    accounts_path, labels_path = sidecar_paths(out)

    ss = np.random.SeedSequence(seed)
    s_setup, s_counts, s_index, s_scen, s_chunks = ss.spawn(5)
    scen_seeds = dict(zip(KNOWN_SCENARIOS, s_scen.spawn(len(KNOWN_SCENARIOS)), strict=True))
    cal = Calendar(date)
    reg = Registry()
    setup_rng = np.random.default_rng(s_setup)
    syms = SymbolTable.build(reg, setup_rng)
    bg = Background(cal, reg, syms, accounts, events, setup_rng, np.random.default_rng(s_counts))

    extras = EventBuf()
    extras.extend(index_events(cal, reg, np.random.default_rng(s_index), lingjun="lingjun" in names))
    ctx = Ctx(cal, reg, syms)
    outs = [SCENARIOS[name](ctx, np.random.default_rng(scen_seeds[name])) for name in names]
    for o in outs:
        extras.extend(o.events)
    ex = extras.arrays()
    total = events + len(ex["ts"])

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="ev", unit_scale=True, desc=f"simulate {out.name}")
    seq_next = np.zeros(len(VENUES), np.int64)
    written = 0
    try:
        with EventWriter(out, reg) as w:
            bounds = bg.chunk_bounds(CHUNK_EVENTS)
            for i, (s0, s1, rng) in enumerate(bg.chunks(s_chunks, bounds)):
                lo = 0 if i == 0 else int(np.searchsorted(ex["ts"], cal.sec_ts[s0], side="left"))
                hi = (len(ex["ts"]) if i == len(bounds) - 1
                      else int(np.searchsorted(ex["ts"], cal.sec_ts[s1], side="left")))
                cols = bg.make_chunk(rng, s0, s1)
                order = np.argsort(np.concatenate([cols["ts"], ex["ts"][lo:hi]]), kind="stable")
                merged = {}
                for name in list(cols):
                    merged[name] = np.concatenate([cols.pop(name), ex[name][lo:hi]])[order]
                del order
                batch = _to_batch(merged, seq_next, written)
                del merged
                w.write(batch)
                written += len(batch)
                del batch
                if bar is not None:
                    bar.update(written - bar.n)
    finally:
        if bar is not None:
            bar.close()

    _write_accounts(accounts_path, bg, outs)
    with open(labels_path, "wb") as f:
        for o in outs:
            for lab in o.labels:
                f.write(orjson.dumps(lab) + b"\n")
    return SimResult(events_path=out, accounts_path=accounts_path, labels_path=labels_path, n_events=written,
                     scenarios=names)


def _to_batch(c: dict[str, np.ndarray], seq_next: np.ndarray, first: int) -> Batch:
    n = len(c["ts"])
    seq = np.empty(n, np.int64)
    venue = c["venue"]
    for v in range(len(VENUES)):
        m = venue == v
        k = int(m.sum())
        seq[m] = seq_next[v] + 1 + np.arange(k)
        seq_next[v] += k
    has_oid = (c["flags"] & F_HAS_ORDER_ID) != 0
    return Batch(ts=c["ts"], venue=venue, etype=c["etype"], side=c["side"], flags=c["flags"], price=c["price"],
                 qty=c["qty"], seq=seq, account=c["account"], symbol=c["symbol"], owner=c["owner"],
                 broker=c["broker"], order_id=oid_bytes(c["oid"], has_oid),
                 src=np.arange(first, first + n, dtype=np.int64))


def _write_accounts(path: Path, bg: Background, outs) -> None:
    seen = set()
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("venue,account,owner,broker,reported\n")
        rows = []
        for a in bg.accounts():
            rows.append(f"{a.venue},{a.account},{a.owner},{a.broker},{'true' if a.reported else 'false'}\n")
        f.write("".join(rows))
        for o in outs:
            for a in o.accounts:
                key = (a.venue, a.account)
                if key in seen:
                    continue
                seen.add(key)
                f.write(f"{a.venue},{a.account},{a.owner},{a.broker},{'true' if a.reported else 'false'}\n")
