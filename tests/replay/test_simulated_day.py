"""End to end on a simulated day: the Lingjun reconstruction, every labelled scenario, determinism."""

import orjson
import pytest
from click.testing import CliRunner

from surveil.cli import main
from surveil.engine.alerts import dumps
from surveil.events.batch import Registry
from surveil.events.io import EventWriter, read_events
from surveil.replay import replay
from surveil.sim import simulate


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = tmp_path_factory.mktemp("day")
    return simulate(d / "day.svb", events=300_000, accounts=5_000, seed=3)


@pytest.fixture(scope="module")
def result(day):
    return replay([day.events_path], accounts=day.accounts_path)


def _key(rule, subject):
    return rule, orjson.dumps(subject, option=orjson.OPT_SORT_KEYS)


def test_lingjun_one_alert_both_venues_and_restrict_trading(result):
    bursts = [a for a in result.alerts if a["rule"] == "sell_burst_1m" and a["subject"] == {"owner": "LINGJUN"}]
    assert len(bursts) == 1
    a = bursts[0]
    assert a["unit"] == "fen" and type(a["value"]) is int  # money as integer fen
    assert a["value"] == pytest.approx(2_567_000_000 * 100, rel=0.01)
    ev = a["evidence"]
    assert set(ev["by_venue_fen"]) == {"SSE", "SZSE"}
    assert ev["by_venue_fen"]["SZSE"] == pytest.approx(1_372_000_000 * 100, rel=0.01)
    assert ev["by_venue_fen"]["SSE"] == pytest.approx(1_195_000_000 * 100, rel=0.01)
    assert sum(x["value_fen"] for x in ev["by_account"]) == a["value"]
    assert len({x["account"] for x in ev["by_account"]}) >= 4
    idx = {x["index"]: x for x in ev["indexes"]}
    assert idx["SSE:000001"]["level_at_start"] == pytest.approx(2886.59, abs=1)
    assert idx["SSE:000001"]["max_drop_pct"] >= 0.5
    assert ev["market_sell_value_fen"] >= a["value"]
    reco = [r for r in result.recommendations if r["subject"] == {"owner": "LINGJUN"}]
    assert len(reco) == 1 and reco[0]["measure"] == "restrict_trading" and reco[0]["duration_days"] == 3
    assert reco[0]["reasons"] == [a["alert_id"]]


def test_labels_are_the_ground_truth(day, result):
    labels = [orjson.loads(x) for x in day.labels_path.read_bytes().splitlines() if x.strip()]
    found = {_key(a["rule"], a["subject"]): a for a in result.alerts}
    expected = [x for x in labels if x["expected"] == "alert"]
    assert len(expected) >= 4
    for x in expected:
        a = found.get(_key(x["rule"], x["subject"]))
        assert a is not None, x
        assert a["value"] == pytest.approx(x["expected_value"], rel=1e-6), x
    for x in labels:
        if x["expected"] == "none":
            assert _key(x["rule"], x["subject"]) not in found, x
    # the background market raises nothing
    assert len(result.alerts) == len(expected)


def test_sliding_mode_also_flags_the_straddling_account(day):
    from surveil.actions import RECO_PARAMS
    from surveil.engine import load_config

    cfg = load_config(extra={"recommendations": RECO_PARAMS}, overrides={"order_rate_1s": {"mode": "sliding"}})
    res = replay([day.events_path], accounts=day.accounts_path, params=cfg)
    flagged = {a["subject"]["account"] for a in res.alerts if a["rule"] == "order_rate_1s"}
    assert {"HFT_ABOVE", "HFT_STRADDLE"} <= flagged and "HFT_BELOW" not in flagged


def test_same_day_as_jsonl_other_batches_and_per_venue_files_is_byte_identical(day, result, tmp_path):
    reg, rej = Registry(), []
    jl = tmp_path / "day.jsonl"
    per_venue = {v: tmp_path / f"{v}.jsonl.gz" for v in ("SSE", "SZSE", "BSE")}
    writers = {v: EventWriter(p, reg) for v, p in per_venue.items()}
    with EventWriter(jl, reg) as w:
        for b in read_events(day.events_path, reg, rej):
            w.write(b)
            for code, v in enumerate(("SSE", "SZSE", "BSE")):
                writers[v].write(b.take(b.venue == code))
    for w in writers.values():
        w.close()
    ref = b"".join(dumps(r) + b"\n" for r in result.records)
    for inputs, bs in (([jl], 1000), ([jl], 77_777), (list(per_venue.values()), 5000)):
        got = replay(inputs, accounts=day.accounts_path, batch_size=bs)
        assert b"".join(dumps(r) + b"\n" for r in got.records) == ref


def test_indicative_events_and_match_ids_change_no_alert(day, result, tmp_path):
    """Contract version 2 on the same day: indicative prices every second of both call auctions for the busiest
    symbols of each venue, and a match id on every trade. No rule counts them (orders and cancels are counted
    by type): the same alerts, from binary frames and JSON Lines alike."""
    import numpy as np

    from surveil.events import jsonl
    from surveil.events.batch import Batch
    from surveil.events.schema import INDICATIVE, MF_HAS_MATCH_ID, TRADE, day_start_ns, trading_day_index
    from surveil.events.schema import NS_PER_SECOND as S

    reg, rej = Registry(), []
    b = Batch.concat(list(read_events(day.events_path, reg, rej)))
    trades = b.etype == TRADE
    b.match_id = np.where(trades, np.arange(len(b)) // 2, 0).astype(np.int64)  # the two sides share one
    b.mflags = np.where(trades, MF_HAS_MATCH_ID | 2, 0).astype(np.uint8)
    d0 = day_start_ns(int(trading_day_index(int(b.ts[0]))))
    ind = []
    for venue, code in ((0, "SSE"), (1, "SZSE")):
        syms = [reg.symbols.names[i] for i in np.unique(b.symbol[(b.venue == venue) & trades])[:20]]
        for sec in [*range(9 * 3600 + 15 * 60, 9 * 3600 + 25 * 60), *range(14 * 3600 + 57 * 60, 15 * 3600)]:
            for k, sym in enumerate(syms):
                ind.append({"ts": d0 + sec * S + k, "venue": code, "type": "indicative", "symbol": sym,
                            "price": 10 + k / 100, **({"qty": 100 * sec % 7} if k % 2 else {})})
    extra = jsonl.decode_lines([orjson.dumps(e) for e in ind], 1, reg, "ind", rej)
    both = Batch.concat([b, extra])
    both = both.take(np.argsort(both.ts, kind="stable"))
    assert not rej and int((both.etype == INDICATIVE).sum()) == len(ind) > 20_000
    ref = b"".join(dumps(r) + b"\n" for r in result.records)
    for name in ("v2.svb", "v2.jsonl"):
        with EventWriter(tmp_path / name, reg) as w:
            w.write(both)
        got = replay([tmp_path / name], accounts=day.accounts_path)
        assert got.events == result.events + len(ind) and not got.rejects
        assert b"".join(dumps(r) + b"\n" for r in got.records) == ref


def test_demo_command_runs_and_finds_every_expected_alert(tmp_path):
    r = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "demo"), "--events", "50000"])
    assert r.exit_code == 0, r.output
    import re

    m = re.search(r"ground truth: (\d+)/(\d+) expected alerts found, 0 other alerts", r.output)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) >= 4, r.output
    assert "restrict_trading" in r.output and "LINGJUN" in r.output
    assert (tmp_path / "demo" / "alerts.jsonl").exists()
