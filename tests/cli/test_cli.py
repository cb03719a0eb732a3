import subprocess
import sys

import orjson
import pytest
from click.testing import CliRunner
from evtools import T0, S, order, sell

from surveil.cli import main

YI = 100_000_000


def write(path, events, extra=b""):
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events) + extra)
    return path


def day(tmp_path):
    evs = [order(T0 + S + i * 1000, "FAST", oid=i) for i in range(300)]
    evs += [sell(T0 + 10 * S + i * S, "X", "SSE", 1 * YI, order_id=i) for i in range(6)]
    evs += [sell(T0 + 10 * S + i * S, "Y", "SZSE", 1 * YI, order_id=100 + i) for i in range(6)]
    return write(tmp_path / "day.jsonl", sorted(evs, key=lambda e: e["ts"]))


def accounts(tmp_path):
    p = tmp_path / "acc.csv"
    p.write_text("venue,account,owner,broker,reported\nSSE,X,MGR,B1,true\nSZSE,Y,MGR,B2,false\nSSE,FAST,,B3,true\n")
    return p


def test_replay_writes_sorted_alerts_and_recommendations(tmp_path):
    out = tmp_path / "alerts.jsonl"
    r = CliRunner().invoke(main, ["replay", str(day(tmp_path)), "--accounts", str(accounts(tmp_path)),
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    recs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    kinds = [x["kind"] for x in recs]
    assert kinds == ["alert", "alert", "recommendation", "recommendation"]
    alerts = recs[:2]
    assert [a["rule"] for a in alerts] == ["order_rate_1s", "sell_burst_1m"]
    assert alerts[1]["subject"] == {"owner": "MGR"} and alerts[1]["value"] == 1_200_000_000 * 100
    reco = {x["measure"]: x for x in recs[2:]}
    assert reco["written_warning"]["subject"] == {"owner": "MGR"}
    assert reco["written_warning"]["reasons"] == [alerts[1]["alert_id"]]
    assert reco["watch"]["subject"] == {"venue": "SSE", "account": "FAST"}
    assert "replay: " in r.stderr and "order_rate_1s=1" in r.stderr


def test_rejects_are_kept_with_line_and_reason_and_strict_stops(tmp_path):
    src = write(tmp_path / "bad.jsonl", [order(T0, "A", oid=1)],
                b'{"ts": 1, "venue": "NYSE"\n' + orjson.dumps(order(T0 + 1, "A", qty=-5)) + b"\n")
    out = tmp_path / "o.jsonl"
    r = CliRunner().invoke(main, ["replay", str(src), "--out", str(out)])
    assert r.exit_code == 0
    rej = [orjson.loads(x) for x in (tmp_path / "o.jsonl.rejects.jsonl").read_bytes().splitlines()]
    assert [(x["line"], x["field"]) for x in rej] == [(2, "line"), (3, "qty")]
    assert rej[1]["value"] == -5 and "negative qty" in rej[1]["reason"]
    assert "2 rejects" in r.stderr
    r = CliRunner().invoke(main, ["replay", str(src), "--out", str(out), "--strict"])
    assert r.exit_code != 0
    assert "bad.jsonl:line 2" in r.output and "bad JSON" in r.output


@pytest.mark.parametrize("args, words", [
    (["replay", "missing.jsonl"], "input file not found: missing.jsonl"),
    (["replay", "{day}", "--rules", "missing.toml"], "rules file not found"),
    (["replay", "{day}", "--rules", "{badrules}"], "unknown key [order_rate_1s] treshold"),
    (["replay", "{day}", "--accounts", "missing.csv"], "accounts file not found"),
    (["replay", "{day}", "--history", "missing.jsonl"], "history file not found"),
    (["replay", "{day}", "--securities", "missing.csv"], "securities file not found"),
    (["replay", "{day}", "--securities", "{badrules}"], "lacks column(s) venue, symbol, prev_close, risk_warning"),
])
def test_bad_configuration_is_a_clear_error_and_non_zero_exit(tmp_path, args, words):
    bad = tmp_path / "bad.toml"
    bad.write_text("[order_rate_1s]\ntreshold = 3\n")
    d = day(tmp_path)
    args = [a.format(day=d, badrules=bad) for a in args]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1
    assert words in r.output


def test_changed_thresholds_change_alerts(tmp_path):
    rules = tmp_path / "r.toml"
    rules.write_text("[sell_burst_1m]\nthreshold_yuan = 2000000000\n[order_rate_1s]\nthreshold = 301\n")
    out = tmp_path / "a.jsonl"
    r = CliRunner().invoke(main, ["replay", str(day(tmp_path)), "--rules", str(rules), "--out", str(out),
                                  "--accounts", str(accounts(tmp_path))])
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == b""


def test_history_escalates_repeat_offenders(tmp_path):
    out1 = tmp_path / "day1.jsonl"
    acc = str(accounts(tmp_path))
    CliRunner().invoke(main, ["replay", str(day(tmp_path)), "--accounts", acc, "--out", str(out1)])
    # the same behaviour a week later
    evs = [orjson.loads(x) for x in (tmp_path / "day.jsonl").read_bytes().splitlines()]
    for e in evs:
        e["ts"] += 7 * 86_400 * S
    later = write(tmp_path / "later.jsonl", evs)
    out2 = tmp_path / "day8.jsonl"
    r = CliRunner().invoke(main, ["replay", str(later), "--accounts", acc, "--history", str(out1), "--out", str(out2)])
    assert r.exit_code == 0, r.output
    reco = [orjson.loads(x) for x in out2.read_bytes().splitlines() if b'"recommendation"' in x]
    mgr = next(x for x in reco if x["subject"] == {"owner": "MGR"})
    assert mgr["measure"] == "supervisory_interview" and mgr["escalated_from"] == "written_warning"
    fast = next(x for x in reco if x["subject"].get("account") == "FAST")
    assert fast["measure"] == "watch"  # classification, not misconduct: no escalation


def test_convert_roundtrip_via_cli(tmp_path):
    src = day(tmp_path)
    r1 = CliRunner().invoke(main, ["convert", str(src), str(tmp_path / "d.svb")])
    r2 = CliRunner().invoke(main, ["convert", str(tmp_path / "d.svb"), str(tmp_path / "back.jsonl")])
    assert r1.exit_code == 0 and r2.exit_code == 0
    assert (tmp_path / "back.jsonl").read_bytes() == src.read_bytes()


def test_replay_with_securities_keeps_the_alerts_and_rejects_bad_rows(tmp_path):
    """``--securities``: the engine gets the securities data (ctx.security); no rule uses it yet, so the alerts
    stay the same; its bad rows are rejects with their line, field and value."""
    sec = tmp_path / "sec.csv"
    sec.write_text("venue,symbol,prev_close,risk_warning,limit_up,limit_down\nSSE,600000,10,false,11,9\n"
                   "SZSE,000001,9.5,yes,,\nSSE,600001,abc,false,,\n")
    base = tmp_path / "base.jsonl"
    out = tmp_path / "sec.jsonl"
    acc = str(accounts(tmp_path))
    r = CliRunner().invoke(main, ["replay", str(day(tmp_path)), "--accounts", acc, "--out", str(base)])
    assert r.exit_code == 0
    r = CliRunner().invoke(main, ["replay", str(day(tmp_path)), "--accounts", acc, "--securities", str(sec),
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == base.read_bytes() and base.read_bytes()
    rej = [orjson.loads(x) for x in (tmp_path / "sec.jsonl.rejects.jsonl").read_bytes().splitlines()]
    assert [(x["line"], x["field"], x["value"]) for x in rej] == [(4, "prev_close", "abc")]
    assert "1 rejects" in r.stderr
    r = CliRunner().invoke(main, ["replay", str(day(tmp_path)), "--securities", str(sec), "--strict",
                                  "--rejects", str(tmp_path / "strict.rejects.jsonl")])
    assert r.exit_code == 1 and "sec.csv:line 4: prev_close='abc'" in r.output


def test_replay_hands_the_securities_to_the_engine(tmp_path, monkeypatch):
    from surveil.engine import engine as engine_mod
    from surveil.replay import run as run_mod

    seen = []
    real = engine_mod.Engine

    def spy(*a, **kw):
        e = real(*a, **kw)
        seen.append(e)
        return e

    monkeypatch.setattr(run_mod, "Engine", spy)
    sec = tmp_path / "sec.csv"
    sec.write_text("venue,symbol,prev_close,risk_warning\nSSE,600000,10.5,true\n")
    evs = [{**order(T0 + i, "A"), "symbol": "600000"} for i in range(3)]
    run_mod.replay([write(tmp_path / "d.jsonl", evs)], securities=sec)
    e = seen[0]
    sym = e.reg.symbols.ids["600000"]  # every symbol is read when there is securities data
    assert e.ctx.security(0, sym).prev_close == 105_000 and e.ctx.security(0, sym).risk_warning is True


def test_convert_of_contract_v2_and_of_old_frames_via_cli(tmp_path):
    """Match ids and indicative events round-trip both ways; files of frame versions 1 and 2 convert to the
    same JSON Lines they were written from; an order id too long for a binary frame is a clear error."""
    from pathlib import Path

    data = Path(__file__).parent.parent / "events" / "data"
    evs = [{"ts": T0, "venue": "SSE", "type": "indicative", "symbol": "600000", "price": 10.5, "qty": 300},
           {**sell(T0 + 1, "X", "SSE", 1_000_000, order_id=7), "match_id": "E1"},
           {**order(T0 + 2, "Y", venue="SZSE", type_="trade", side="B", oid="o9"), "match_id": 77}]
    src = write(tmp_path / "v2.jsonl", evs)
    for a, b in ((src, tmp_path / "v2.svb"), (tmp_path / "v2.svb", tmp_path / "back.jsonl"),
                 (tmp_path / "back.jsonl", tmp_path / "again.svb"), (data / "contract-v1.svb", tmp_path / "v1.jsonl"),
                 (data / "contract-v1-frames.svb", tmp_path / "v1f.jsonl")):
        r = CliRunner().invoke(main, ["convert", str(a), str(b)])
        assert r.exit_code == 0 and "0 rejects" in r.stderr, r.output
    assert (tmp_path / "back.jsonl").read_bytes() == src.read_bytes()
    assert (tmp_path / "again.svb").read_bytes() == (tmp_path / "v2.svb").read_bytes()
    # version 5 (the first frame of a file holds the whole dictionary), records of 104 bytes
    assert (tmp_path / "v2.svb").read_bytes()[4:8] == b"\x05\x00\x68\x00"
    want = (data / "contract-v1.jsonl").read_bytes()
    assert (tmp_path / "v1.jsonl").read_bytes() == want and (tmp_path / "v1f.jsonl").read_bytes() == want
    long = write(tmp_path / "long.jsonl", [order(T0, "A", oid="x" * 25)])
    r = CliRunner().invoke(main, ["convert", str(long), str(tmp_path / "long.svb")])  # a reject, as in replay
    assert r.exit_code == 0 and "convert: 0 events -> " in r.output and "1 rejects" in r.output
    (rej,) = [orjson.loads(x) for x in (tmp_path / "long.svb.rejects.jsonl").read_bytes().splitlines()]
    assert rej["field"] == "order_id" and rej["value"] == "x" * 25 and "longer than 24 bytes" in rej["reason"]


def test_console_script_is_installed():
    r = subprocess.run([sys.executable, "-m", "surveil.cli", "--help"], capture_output=True, text=True, check=True)
    assert "replay" in r.stdout and "simulate" in r.stdout and "demo" in r.stdout


def test_worker_securities_option_is_checked_before_start():
    r = CliRunner().invoke(main, ["worker", "--securities", "missing.csv"])
    assert r.exit_code == 1 and "SURVEIL_SECURITIES_CSV='missing.csv': file not found" in r.output
