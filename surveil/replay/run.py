"""Replay: read event files, run the engine, produce final alerts and recommendations.

Several input files are merged by event time (each file is expected in event-time
order, as an exchange feed is), so one file per venue works as well as one combined
file; the same events split into other files or batch sizes give byte-identical output.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from surveil.actions import RECO_PARAMS, load_history, recommend
from surveil.engine import Engine, load_config
from surveil.engine.alerts import dumps, sort_key
from surveil.engine.refdata import RefData
from surveil.engine.securities import Securities
from surveil.events.batch import Batch, Registry
from surveil.events.errors import Reject, damage_summary
from surveil.events.io import DEFAULT_BATCH, check_inputs, read_events
from surveil.replay.exceptions import StrictError  # noqa: F401 - importable from here too


@dataclass
class ReplayResult:
    records: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    recommendations: list[dict[str, Any]]
    events: int
    rejects: list[Reject]
    seconds: float
    by_rule: Counter = field(default_factory=Counter)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        rules = ", ".join(f"{r}={n}" for r, n in sorted(self.by_rule.items())) or "none"
        measures = Counter(r["measure"] for r in self.recommendations)
        recos = ", ".join(f"{m}={n}" for m, n in sorted(measures.items())) or "none"
        damage = damage_summary(self.rejects)
        damage = f" ({damage})" if damage else ""
        return (f"replay: {self.events:,} events, {len(self.rejects):,} rejects{damage}, alerts: {rules}; "
                f"recommendations: {recos}; {self.seconds:.2f} s, {self.events_per_second:,.0f} events/s")


def merged_batches(iters: list[Iterator[Batch]]) -> Iterator[Batch]:
    """Merge per-file batch streams by event time (stable: file order breaks ties)."""
    if len(iters) == 1:
        yield from iters[0]
        return
    heads: list[Batch | None] = [next(it, None) for it in iters]
    while True:
        active = [i for i, h in enumerate(heads) if h is not None]
        if not active:
            return
        if len(active) == 1:
            i = active[0]
            yield heads[i]  # type: ignore[misc]
            yield from iters[i]
            return
        bound = min(int(heads[i].ts.max()) if len(heads[i]) else -1 for i in active)  # type: ignore[union-attr]
        parts = []
        for i in active:
            h = heads[i]
            assert h is not None
            m = h.ts <= bound
            if m.all():
                parts.append(h)
                heads[i] = next(iters[i], None)
            elif m.any():
                parts.append(h.take(m))
                heads[i] = h.take(~m)
        merged = Batch.concat(parts)
        if len(merged):
            yield merged.take(np.argsort(merged.ts, kind="stable"))


def replay(inputs: list[str | os.PathLike], accounts: str | os.PathLike | None = None,
           rules: str | os.PathLike | None = None, history: str | os.PathLike | None = None,
           strict: bool = False, batch_size: int = DEFAULT_BATCH,
           on_batch: Callable[[int], None] | None = None, params: dict | None = None,
           securities: str | os.PathLike | None = None) -> ReplayResult:
    """Run the engine over ``inputs``. Raises InputError/ConfigError/RefDataError/HistoryError up front.
    ``securities``: the securities reference CSV (surveil/engine/securities.py), passed to the engine."""
    paths = check_inputs(inputs)
    cfg = params or load_config(rules, extra={"recommendations": RECO_PARAMS})
    hist = load_history(history) if history else None
    rejects: list[Reject] = []
    ref = RefData.load_csv(accounts, rejects) if accounts else RefData()
    sec = Securities.load_csv(securities, rejects) if securities else Securities()
    if strict and rejects:
        raise StrictError(rejects[0])
    reg = Registry()
    engine = Engine(cfg, refdata=ref, registry=reg, securities=sec)
    engine.rejects = rejects
    t0 = time.perf_counter()
    # the engine needs the symbols of market data (index, indicative), of the events of a rule that reads them,
    # and, with securities data, every symbol (for the engine's ctx.security()); the readers may leave the others
    # out (-1)
    symbols = "all" if len(sec) or any("symbol" in r.meta.inputs.fields for r in engine.rules) else "index"
    streams = [read_events(p, reg, rejects, batch_size, symbols=symbols) for p in paths]
    source = str(paths[0]) if len(paths) == 1 else "+".join(str(p) for p in paths)
    for batch in merged_batches(streams):
        if strict and rejects:
            raise StrictError(rejects[0])
        engine.process(batch, source)
        if strict and rejects:
            raise StrictError(rejects[0])
        if on_batch:
            on_batch(len(batch))
    engine.close()
    if strict and rejects:
        raise StrictError(rejects[0])
    seconds = time.perf_counter() - t0
    alerts = sorted(engine.final_alerts(), key=sort_key)
    recos = recommend(alerts, cfg["recommendations"], hist)
    records = alerts + sorted(recos, key=sort_key)
    return ReplayResult(records=records, alerts=alerts, recommendations=recos,
                        events=engine.events_in, rejects=rejects, seconds=seconds,
                        by_rule=Counter(a["rule"] for a in alerts))


def write_records(records: list[dict[str, Any]], out: str | os.PathLike | None) -> None:
    data = b"".join(dumps(r) + b"\n" for r in records)
    if out is None or str(out) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(out).write_bytes(data)


def write_rejects(rejects: list[Reject], path: str | os.PathLike) -> None:
    rows = sorted(rejects, key=lambda r: (r.source, r.location))
    Path(path).write_bytes(b"".join(orjson.dumps(r.to_dict()) + b"\n" for r in rows))
