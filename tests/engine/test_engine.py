import random

import numpy as np
import orjson
import pytest
from evtools import T0, S, by_rule, cancel, order, run, sell

from surveil.engine import Engine, load_config
from surveil.engine.alerts import dumps, sort_key
from surveil.events import jsonl
from surveil.events.batch import Registry
from surveil.replay import replay
from surveil.rules.config import ConfigError

YI = 100_000_000


def mixed_day(seed=7):
    rnd = random.Random(seed)
    evs = []
    for i in range(3000):  # background
        t = T0 + rnd.randrange(0, 3600 * S)
        acc = f"BG{rnd.randrange(50)}"
        evs.append(rnd.choice([order, cancel])(t, acc, rnd.choice(["SSE", "SZSE"]), oid=i))
    for i in range(320):  # rate
        evs.append(order(T0 + 100 * S + i * 1000, "FAST", oid=f"f{i}"))
    for i in range(120):  # cross-venue burst
        evs.append(sell(T0 + 200 * S + i * (S // 4), "SH", "SSE" if i % 2 else "SZSE", 0.11 * YI, owner="O",
                        order_id=f"s{i}"))
    for i in range(61):
        evs.append({"ts": T0 + 199 * S + i * S, "venue": "SSE", "type": "index", "symbol": "000001",
                    "price": round(2886.59 - i * 0.3, 2)})
    evs.sort(key=lambda e: e["ts"])
    return evs


def canonical(alerts):
    return b"".join(dumps(a) + b"\n" for a in sorted(alerts, key=sort_key))


@pytest.mark.parametrize("chunk", [1, 7, 100, 1001])
def test_output_is_byte_identical_for_any_batch_size(chunk):
    evs = mixed_day()
    ref, _ = run(evs)
    got, _ = run(evs, chunk=chunk)
    assert len(ref) >= 2
    assert canonical(got) == canonical(ref)


def test_same_input_split_into_files_gives_identical_output(tmp_path):
    evs = mixed_day()
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in evs))
    parts = [evs[:1000], evs[1000:2222], evs[2222:]]
    paths = []
    for i, p in enumerate(parts):
        paths.append(tmp_path / f"part{i}.jsonl")
        paths[-1].write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in p))
    by_venue = []
    for v in ("SSE", "SZSE"):
        by_venue.append(tmp_path / f"{v}.jsonl")
        by_venue[-1].write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in evs if e["venue"] == v))
    a = replay([whole], batch_size=333)
    b = replay(paths, batch_size=50)
    c = replay(by_venue, batch_size=128)
    assert canonical(a.records) == canonical(b.records) == canonical(c.records)
    assert {r["rule"] for r in a.alerts} == {"order_rate_1s", "sell_burst_1m"}


def test_late_event_is_rejected_and_counted_not_dropped_silently():
    evs = [order(T0 + i * S, "A", oid=i) for i in range(10)]
    evs.insert(5, order(T0, "LATE", oid="late"))
    b, reg = _batch(evs)
    eng = Engine(registry=reg)
    eng.process(b, "feed.jsonl")
    eng.close()
    assert len(eng.rejects) == 1
    r = eng.rejects[0]
    assert r.field == "ts" and "late event" in r.reason and r.location == 6
    assert eng.events_processed == 10


def test_reorder_tolerance_reorders_instead_of_rejecting():
    evs = [order(T0 + i * S // 10, "A", oid=i) for i in range(10)]
    evs[3], evs[4] = evs[4], evs[3]
    b, reg = _batch(evs)
    eng = Engine(load_config(overrides={"engine": {"reorder_tolerance_ms": 500}}), registry=reg)
    eng.process(b)
    eng.close()
    assert eng.rejects == [] and eng.events_processed == 10


def test_rules_file_errors_name_the_key(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text("[order_rate_1s]\nthreshhold = 5\n")
    with pytest.raises(ConfigError, match="unknown key \\[order_rate_1s\\] threshhold"):
        load_config(p)
    p.write_text('[order_rate_1s]\nthreshold = "300"\n')
    with pytest.raises(ConfigError, match="threshold = '300': expected int"):
        load_config(p)
    p.write_text("[nope]\na = 1\n")
    with pytest.raises(ConfigError, match="unknown section \\[nope\\]"):
        load_config(p)
    p.write_text("[order_rate_1s\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)
    p.write_text("[order_rate_1s]\nthreshold = 0\n")
    with pytest.raises(ConfigError, match="must be positive"):
        load_config(p)


def test_rules_file_changes_thresholds(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text("[order_rate_1s]\nthreshold = 100\n[sell_burst_1m]\nthreshold_yuan = 500000000\n")
    cfg = load_config(p)
    assert cfg["order_rate_1s"]["threshold"] == 100 and cfg["sell_burst_1m"]["threshold_yuan"] == 500_000_000
    assert cfg["daily_orders_20k"]["threshold"] == 20_000


def test_owner_from_reference_data_joins_accounts(tmp_path):
    from surveil.engine.refdata import RefData

    evs = [sell(T0 + i * S, "SH1" if i % 2 else "SZ1", "SSE" if i % 2 else "SZSE", 1.2 * YI, order_id=i)
           for i in range(10)]
    alerts, _ = run(evs)
    assert by_rule(alerts, "sell_burst_1m") == []
    ref = RefData()
    ref.set("SSE", "SH1", "MGR", "B1")
    ref.set("SZSE", "SZ1", "MGR", "B2")
    b, reg = _batch(evs)
    eng = Engine(refdata=ref, registry=reg)
    eng.process(b)
    eng.close()
    a = by_rule(eng.final_alerts(), "sell_burst_1m")
    assert len(a) == 1 and a[0]["subject"] == {"owner": "MGR"}
    assert {x["broker"] for x in a[0]["evidence"]["by_account"]} == {"B1", "B2"}


def _batch(evs):
    reg, rej = Registry(), []
    return jsonl.decode_lines([orjson.dumps(e) for e in evs], 1, reg, "t", rej), reg


def test_brokers_from_reference_data_are_resolved_once_per_account_and_follow_updates():
    """Events without a broker take it from reference data: once per account (not per row), and again after
    the reference data changed; a broker carried by the events wins."""
    from surveil.engine import Engine
    from surveil.engine.refdata import RefData
    from surveil.rules.base import Segment

    ref = RefData()
    ref.set("SSE", "A1", None, "B-OLD", None)
    eng = Engine(refdata=ref)
    keys = np.array([eng.reg.accounts.intern(a) * 4 for a in ("A1", "A1", "A2")], np.int64)  # venue 0 = SSE
    names = eng.reg.brokers.names
    zeros = np.zeros(3, np.int64)
    own = np.full(3, -1, np.int32)  # the brokers the events name (-1: none)
    seg = Segment(ts=zeros + T0, venue=zeros, etype=zeros, side=zeros, flags=zeros, price=zeros, qty=zeros, key=keys,
                  symbol=own, day=0, order_id=np.full(3, None, object), owner=np.full(3, -1, np.int32), broker=own)

    def brokers():
        _, ids, _ = eng.ctx.refs_of_rows(seg, np.arange(3))
        return [names[i] if i >= 0 else None for i in ids.tolist()]

    assert brokers() == ["B-OLD", "B-OLD", None]
    lookups = []
    get_many = ref.get_many
    ref.get_many = lambda vs, accs: lookups.extend(accs) or get_many(vs, accs)
    assert brokers() == ["B-OLD", "B-OLD", None] and lookups == []  # resolved once per account
    ref.set("SSE", "A1", None, "B-NEW", None)
    assert brokers() == ["B-NEW", "B-NEW", None] and sorted(lookups) == ["A1", "A2"]
    own[2] = eng.reg.brokers.intern("B-EVT")  # A2's event names its broker
    assert brokers() == ["B-NEW", "B-NEW", "B-EVT"]


def test_reference_data_refuses_names_that_are_not_strings_or_hold_a_nul(tmp_path):
    from surveil.engine.refdata import RefData, RefDataError

    ref = RefData()
    for kw in ({"owner": 123}, {"broker": ["B"]}, {"owner": "M\x001"}, {"reported": "yes"}):
        args = {"owner": None, "broker": None, "reported": None, **kw}
        with pytest.raises(RefDataError, match=next(iter(kw))):
            ref.set("SSE", "A1", args["owner"], args["broker"], args["reported"])
    assert ref.accounts == {}
    csv = tmp_path / "a.csv"
    csv.write_text("venue,account,owner,broker\nSSE,A1,M\x001,B1\nSSE,A2,M2,B2\n")
    rejects = []
    ref = RefData.load_csv(csv, rejects)
    assert list(ref.accounts) == [(0, "A2")] and [(r.field, r.location) for r in rejects] == [("owner", 2)]


def test_held_events_are_copied_not_views_of_the_input():
    """The events the engine holds back (within the reorder tolerance of the newest) are its own copy: a view
    would keep the caller's whole batch alive (a stream worker reuses the block its polls are decoded into)."""
    evs = [order(T0 + i * S // 10, "A", oid=i) for i in range(20)]
    b, reg = _batch(evs)
    eng = Engine(load_config(overrides={"engine": {"reorder_tolerance_ms": 500}}), registry=reg)
    eng.process(b)
    assert eng.held is not None and 0 < len(eng.held) < len(b)
    for name, col in eng.held.columns().items():
        assert not np.shares_memory(col, getattr(b, name)), name
    assert eng.held.ts.tolist() == b.ts[len(b) - len(eng.held):].tolist()
    more, _ = _batch([order(T0 + 2 * S + i * S // 10, "A", oid=100 + i) for i in range(5)])
    eng.process(more)  # held rows and new ones joined (a concatenation of the engine's own)
    assert eng.held is not None and not any(np.shares_memory(col, getattr(more, name))
                                            for name, col in eng.held.columns().items())
