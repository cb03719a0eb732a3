"""One wrong timestamp costs one event: an event far ahead of event time waits for corroboration and is
rejected, whole, when later events keep event time; real gaps (the lunch break, the next trading day) are
followed; mild disorder is absorbed by the default reorder tolerance, and a late event is still counted by the
whole-day rule. Every case gives the same output for any cut of the input."""

import random

import orjson
import pytest
from evtools import T0, S, order, run

from surveil.engine.alerts import dumps, sort_key
from surveil.events.schema import NS_PER_DAY
from surveil.replay import replay
from surveil.sim import simulate


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = tmp_path_factory.mktemp("guard")
    s = simulate(d / "day.svb", events=150_000, accounts=2_000, seed=11)
    lines = []
    from surveil.events.batch import Registry
    from surveil.events.io import read_events

    reg, rej = Registry(), []
    for b in read_events(s.events_path, reg, rej):
        for i in range(len(b)):
            e = {"ts": int(b.ts[i]), "venue": ("SSE", "SZSE", "BSE")[int(b.venue[i])],
                 "type": ("order", "cancel", "trade", "index")[int(b.etype[i])]}
            if b.account[i] >= 0:
                e["account"] = reg.accounts.names[int(b.account[i])]
            if b.symbol[i] >= 0:
                e["symbol"] = reg.symbols.names[int(b.symbol[i])]
            if b.side[i]:
                e["side"] = "BS"[int(b.side[i]) - 1]
            if e["type"] != "cancel":
                e["price"] = int(b.price[i]) / 10_000
            if e["type"] in ("order", "trade"):
                e["qty"] = int(b.qty[i])
            oid = b.order_id_at(i)
            if oid is not None:
                e["order_id"] = oid
            lines.append(orjson.dumps(e))
    return s, lines


def write(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def canonical(res):
    return b"".join(dumps(a) + b"\n" for a in sorted(res.records, key=sort_key))


def test_the_clean_day_has_alerts(day, tmp_path):
    s, lines = day
    res = replay([write(tmp_path / "d.jsonl", lines)], accounts=s.accounts_path)
    assert len(res.alerts) >= 3 and not res.rejects


@pytest.mark.parametrize("where, ts", [("middle", "2024-02-20T11:24:00+08:00"), ("head", "2099-01-01T10:00:00+08:00"),
                                       ("middle", 4_000_000_000 * 10**9)])
def test_one_future_timestamp_costs_one_event(day, tmp_path, where, ts):
    s, lines = day
    clean = replay([write(tmp_path / "d.jsonl", lines)], accounts=s.accounts_path)
    k = len(lines) // 2 if where == "middle" else 0
    bad = orjson.loads(lines[k])
    bad["ts"] = ts
    bad["account"] = "FUTURE_ONE"
    got = replay([write(tmp_path / "f.jsonl", lines[:k] + [orjson.dumps(bad)] + lines[k:])], accounts=s.accounts_path)
    assert canonical(got) == canonical(clean)  # nothing else lost
    assert len(got.rejects) == 1
    r = got.rejects[0]
    assert r.field == "ts" and "ahead of" in r.reason and r.location == k + 1
    assert orjson.loads(r.raw)["account"] == "FUTURE_ONE"  # kept whole
    # the same for any cut of the input
    for size in (1_000, 7_777):
        again = replay([tmp_path / "f.jsonl"], accounts=s.accounts_path, batch_size=size)
        assert canonical(again) == canonical(clean) and len(again.rejects) == 1


def test_a_flipped_bit_in_a_binary_timestamp_costs_one_event(day, tmp_path):
    """A .svb record whose timestamp has one bit flipped (2**50 ns: 13 days ahead) is one reject."""
    import numpy as np

    from surveil.events import binary
    from surveil.events.batch import Registry
    from surveil.events.io import read_events

    s, lines = day
    reg, rej = Registry(), []
    batches = list(read_events(s.events_path, reg, rej))
    k = len(batches) // 2
    row = len(batches[k]) // 2
    without = tmp_path / "without.svb"  # the day without that one event: what the flipped day must give
    with open(without, "wb") as f:
        for i, b in enumerate(batches):
            f.write(binary.encode_frame(b.take(np.arange(len(b)) != row) if i == k else b, reg))
    batches[k].ts[row] ^= 1 << 50
    out = tmp_path / "flip.svb"
    with open(out, "wb") as f:
        for b in batches:
            f.write(binary.encode_frame(b, reg))
    got = replay([out], accounts=s.accounts_path)
    assert canonical(got) == canonical(replay([without], accounts=s.accounts_path))
    assert len(got.rejects) == 1 and got.rejects[0].field == "ts"


def test_real_gaps_are_followed(tmp_path):
    """The lunch break and the next trading day are gaps longer than future_jump_ms: corroborated by the events
    after them, they move event time, and nothing is rejected."""
    evs = []
    for day_ in range(2):
        base = T0 + day_ * NS_PER_DAY
        for i in range(400):
            evs.append(order(base + i * S // 100, "M", oid=f"m{day_}-{i}"))  # morning
            evs.append(order(base + 3 * 3600 * S + i * S // 100, "A", oid=f"a{day_}-{i}"))  # after lunch
    evs.sort(key=lambda e: e["ts"])
    alerts, eng = run(evs, sort=False)
    assert eng.rejects == [] and eng.events_processed == len(evs)
    assert alerts == []  # 100/s is below 300/s
    many = [order(T0 + 3 * 3600 * S + i * 1000, "FAST", oid=i) for i in range(350)]
    alerts, eng = run([order(T0, "EARLY", oid="e")] + many, sort=False)
    assert eng.rejects == [] and [a["subject"]["account"] for a in alerts] == ["FAST"]


def test_mild_disorder_gives_the_sorted_days_alerts(day, tmp_path):
    """Every 50th line swapped with its neighbour (several gateways, several files): the default reorder
    tolerance gives the sorted day's alerts."""
    s, lines = day
    clean = replay([write(tmp_path / "d.jsonl", lines)], accounts=s.accounts_path)
    swapped = list(lines)
    for i in range(49, len(swapped) - 1, 50):
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    got = replay([write(tmp_path / "s.jsonl", swapped)], accounts=s.accounts_path)
    assert canonical(got) == canonical(clean)


def test_a_late_event_is_still_counted_by_the_daily_rule_and_kept_whole():
    """An account's 20,000th message arrives later than the tolerance: the whole-day count still reaches the
    threshold (at the day's close), and the reject keeps the event with the reason."""
    evs = [order(T0 + i * 1_000_000, "DAY", oid=i) for i in range(19_999)]
    late = order(T0 + 5 * S, "DAY", oid="late-one")
    evs.append(order(T0 + 100 * S, "OTHER", oid="x"))
    evs.append(late)
    for chunk in (None, 333):
        alerts, eng = run(evs, sort=False, chunk=chunk)
        rejects = eng.rejects
        finals = [a for a in alerts if a["rule"] == "daily_orders_20k" and a["status"] == "final"]
        assert [a["value"] for a in finals] == [20_000]
        assert len(rejects) == 1 and "still counted by daily_orders_20k" in rejects[0].reason
        assert orjson.loads(rejects[0].raw)["order_id"] == "late-one"


def test_cut_independence_with_suspects_and_late_events(day, tmp_path):
    s, lines = day
    rnd = random.Random(3)
    mixed = list(lines)
    for _ in range(5):  # a few future events and a few late ones
        k = rnd.randrange(len(mixed))
        e = orjson.loads(mixed[k])
        e["ts"] += rnd.choice([3 * 3600 * S, -5 * S])
        mixed[k] = orjson.dumps(e)
    path = write(tmp_path / "m.jsonl", mixed)
    ref = replay([path], accounts=s.accounts_path)
    for size in (997, 4096, 50_000):
        got = replay([path], accounts=s.accounts_path, batch_size=size)
        assert canonical(got) == canonical(ref)
        assert [r.to_dict() for r in got.rejects] == [r.to_dict() for r in ref.rejects]
