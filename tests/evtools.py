"""Helpers for tests: build events and batches, run the engine."""

from __future__ import annotations

import orjson

from surveil.engine import Engine, load_config
from surveil.events import jsonl
from surveil.events.batch import Batch, Registry

#: 2024-02-19 09:30:00 Asia/Shanghai
T0 = 1_708_306_200_000_000_000
S = 1_000_000_000


def order(ts, account="A1", venue="SSE", type_="order", oid=None, **kw):
    d = {"ts": ts, "venue": venue, "type": type_, "account": account}
    if type_ in ("order", "trade"):
        d.update(side=kw.pop("side", "B"), price=kw.pop("price", 10.0), qty=kw.pop("qty", 100))
    if oid is not None:
        d["order_id"] = oid
    d.update(kw)
    return d


def cancel(ts, account="A1", venue="SSE", **kw):
    return order(ts, account, venue, "cancel", **kw)


def sell(ts, account, venue, value_yuan, owner=None, price=10.0, **kw):
    qty = int(round(value_yuan / price))
    d = order(ts, account, venue, "trade", side="S", price=price, qty=qty, **kw)
    if owner:
        d["owner"] = owner
    return d


def batch_of(events, reg=None):
    reg = reg or Registry()
    rej = []
    b = jsonl.decode_lines([orjson.dumps(e) for e in events], 1, reg, "test", rej)
    assert not rej, [r.message for r in rej]
    return b, reg


def run(events, chunk=None, sort=True, **overrides):
    """Final alerts of the engine over ``events`` (fed in chunks of ``chunk`` events)."""
    if sort:
        events = sorted(events, key=lambda e: e["ts"])
    b, reg = batch_of(events)
    eng = Engine(load_config(overrides=overrides or None), registry=reg)
    step = chunk or max(1, len(b))
    for s in range(0, len(b), step):
        eng.process(b.take(slice(s, s + step)))
    eng.close()
    return sorted(eng.final_alerts(), key=lambda a: (a["window_start"], a["rule"], str(a["subject"]))), eng


def by_rule(alerts, rule):
    return [a for a in alerts if a["rule"] == rule]


__all__ = ["T0", "S", "order", "cancel", "sell", "batch_of", "run", "by_rule", "Batch"]


def replay_rule_alerts(day, rule: str, threshold: int) -> list[dict]:
    """``rule``'s alerts from replaying a simulated ``day`` with another threshold, in large batches (40,000
    events: the size of a stream worker's poll, where the rules take their large-segment paths)."""
    from surveil.actions import RECO_PARAMS
    from surveil.replay import replay

    cfg = load_config(extra={"recommendations": RECO_PARAMS})
    cfg[rule]["threshold"] = threshold
    r = replay([day.events_path], accounts=day.accounts_path, params=cfg, batch_size=40_000)
    return [a for a in r.alerts if a["rule"] == rule]


def records_in_cuts(b, reg, rule: str, overrides: dict, sizes, seed) -> list[dict]:
    """Every record (raised and final) of one ``rule`` over batch ``b``, fed to a fresh engine in cuts of
    sizes drawn from ``sizes`` (random with ``seed``), in emission order."""
    import copy
    import random

    from surveil.engine import Engine, load_config

    eng = Engine(load_config(overrides={rule: overrides}), registry=copy.deepcopy(reg), rules=[rule])
    cuts, pos, out = random.Random(seed), 0, []
    while pos < len(b):
        n = cuts.choice(sizes)
        eng.process(b.take(slice(pos, pos + n)))
        pos += n
        out += eng.drain()
    eng.close()
    return out + eng.drain()
