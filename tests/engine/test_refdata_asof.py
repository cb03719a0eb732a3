"""Reference data with validity (docs/events.md, "Reference data"): rows with ``valid_from``, several per
account, every lookup as of the event's own time, whatever the cut of the input; conflicts and wrong orders
are errors naming both rows."""

import orjson
import pytest
from evtools import T0, S, sell

from surveil.engine.refdata import RefData, RefDataError, diff, parse_valid_from
from surveil.events.schema import VENUE_CODE
from surveil.replay import replay
from surveil.stream.views import broker_views

YI = 100_000_000
#: ACC belongs to O1 (member firm F1) until 10:00, then to O2 (firm F2); A1 is always O1's, B1 always O2's
MOVE = ("venue,account,owner,broker,valid_from\n"
        "SSE,A1,O1,F1,\n"
        "SZSE,B1,O2,F2,2024-01-02\n"
        "SSE,ACC,O1,F1,2024-02-01\n"
        "SSE,ACC,O2,F2,2024-02-19T10:00:00+08:00\n")


def write(path, events):
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def day_events():
    return [sell(T0 + 1770 * S, "A1", "SSE", 6 * YI, order_id="a1"),      # 09:59:30 O1
            sell(T0 + 1780 * S, "ACC", "SSE", 6 * YI, order_id="m1"),     # 09:59:40 ACC: O1's (morning)
            sell(T0 + 1810 * S, "ACC", "SSE", 6 * YI, order_id="p1"),     # 10:00:10 ACC: O2's (afternoon row)
            sell(T0 + 1820 * S, "B1", "SZSE", 6 * YI, order_id="b1")]     # 10:00:20 O2


def bursts(res):
    return [a for a in res.alerts if a["rule"] == "sell_burst_1m"]


def test_an_account_moved_at_ten_is_the_first_owners_before_and_the_seconds_after(tmp_path):
    acc = tmp_path / "acc.csv"
    acc.write_text(MOVE)
    evs = day_events()
    runs = {"one file": replay([write(tmp_path / "one.jsonl", evs)], accounts=acc),
            "two files": replay([write(tmp_path / "a.jsonl", evs[:2]), write(tmp_path / "b.jsonl", evs[2:])],
                                accounts=acc)}
    for size in (1, 2, 3):
        runs[f"batches of {size}"] = replay([tmp_path / "one.jsonl"], accounts=acc, batch_size=size)
    for name, res in runs.items():
        got = bursts(res)
        assert [a["subject"] for a in got] == [{"owner": "O1"}, {"owner": "O2"}], name
        assert [a["value"] for a in got] == [12 * YI * 100, 12 * YI * 100], name
        morning = {a["account"]: a for a in got[0]["evidence"]["accounts"]}
        afternoon = {a["account"]: a for a in got[1]["evidence"]["accounts"]}
        assert morning["ACC"]["owner"] == "O1" and morning["ACC"]["broker"] == "F1"
        assert morning["ACC"]["valid_from"] == "2024-02-01T00:00:00.000000000+08:00"
        assert morning["A1"]["valid_from"] is None  # a row without valid_from holds since always
        assert afternoon["ACC"] == {**afternoon["ACC"], "owner": "O2", "broker": "F2",
                                    "valid_from": "2024-02-19T10:00:00.000000000+08:00"}
        assert {a["account"]: a["broker"] for a in got[1]["evidence"]["by_account"]} == {"ACC": "F2", "B1": "F2"}
    first = runs["one file"]
    for name, res in runs.items():
        assert orjson.dumps(bursts(res)) == orjson.dumps(bursts(first)), name


def test_broker_topics_follow_the_broker_as_of_the_event(tmp_path):
    acc = tmp_path / "acc.csv"
    acc.write_text(MOVE)
    morning, afternoon = bursts(replay([write(tmp_path / "e.jsonl", day_events())], accounts=acc))
    assert sorted(broker_views(morning)) == ["F1"]  # ACC's morning trades: reported to F1 only
    assert sorted(broker_views(afternoon)) == ["F2"]  # its afternoon trades: to F2 only, never both
    assert [a["account"] for a in broker_views(afternoon)["F2"]["evidence"]["accounts"]] in (["ACC", "B1"],
                                                                                              ["B1", "ACC"])


def test_a_broker_change_within_one_window_lists_the_account_once_per_row(tmp_path):
    acc = tmp_path / "acc.csv"
    acc.write_text("venue,account,owner,broker,valid_from\nSSE,ACC,O1,F1,\nSSE,ACC,O1,F2,2024-02-19T10:00:00+08:00\n")
    evs = [sell(T0 + 1790 * S, "ACC", "SSE", 6 * YI, order_id="x"), sell(T0 + 1810 * S, "ACC", "SSE", 6 * YI,
                                                                           order_id="y")]
    (alert,) = bursts(replay([write(tmp_path / "e.jsonl", evs)], accounts=acc))
    rows = sorted((a["broker"], a["valid_from"], a["value"]) for a in alert["evidence"]["accounts"])
    assert rows == [("F1", None, 6 * YI * 100), ("F2", "2024-02-19T10:00:00.000000000+08:00", 6 * YI * 100)]
    views = broker_views(alert)
    assert sorted(views) == ["F1", "F2"] and views["F1"]["value"] == 6 * YI * 100


def test_before_an_accounts_first_row_it_has_no_reference_data(tmp_path):
    acc = tmp_path / "acc.csv"
    acc.write_text("venue,account,owner,broker,valid_from\nSSE,NEW1,O9,F9,2024-02-20\nSSE,NEW2,O9,F9,2024-02-20\n")
    evs = [sell(T0 + 1790 * S, "NEW1", "SSE", 6 * YI, order_id="x"), sell(T0 + 1800 * S, "NEW2", "SSE", 6 * YI,
                                                                            order_id="y")]
    # registered for the next day: today each account is its own owner, so no owner reaches 1 bn
    assert bursts(replay([write(tmp_path / "e.jsonl", evs)], accounts=acc)) == []
    acc.write_text("venue,account,owner,broker,valid_from\nSSE,NEW1,O9,F9,2024-02-19\nSSE,NEW2,O9,F9,2024-02-19\n")
    assert [a["subject"] for a in bursts(replay([tmp_path / "e.jsonl"], accounts=acc))] == [{"owner": "O9"}]


def test_valid_from_formats():
    assert parse_valid_from("2024-02-19") == T0 - (9 * 3600 + 1800) * S  # 00:00 Asia/Shanghai
    assert parse_valid_from("2024-02-19T09:30:00+08:00") == T0
    assert parse_valid_from("2024-02-19T01:30:00Z") == T0
    assert parse_valid_from("") is None
    for bad in ("2024-02-19T09:30:00", "19/02/2024", "2024-02-30"):
        with pytest.raises(RefDataError, match="valid_from"):
            parse_valid_from(bad)


def test_conflicting_rows_are_an_error_naming_both(tmp_path):
    f = tmp_path / "acc.csv"
    f.write_text("venue,account,owner,broker,valid_from\nSSE,X,O1,F1,2024-02-01\nSSE,Y,O1,F1,\n"
                 "SSE,X,O2,F1,2024-02-01\n")
    with pytest.raises(RefDataError, match=r"SSE:X: two rows with the same valid_from.*line 2.*line 4"):
        RefData.load_csv(f)
    f.write_text("venue,account,owner,broker,valid_from\nSSE,X,O1,F1,2024-02-05\nSSE,X,O2,F1,2024-02-01\n")
    with pytest.raises(RefDataError, match=r"not in valid_from order.*line 3.*after.*line 2"):
        RefData.load_csv(f)
    f.write_text("venue,account,owner,broker\nSSE,X,O1,F1\nSSE,X,O1,F1\n")  # the same row twice: harmless
    assert len(RefData.load_csv(f).history(VENUE_CODE["SSE"], "X")) == 1
    f.write_text("venue,account,owner,broker\nSSE,X,O1,F1\nSSE,X,O2,F1\n")  # the last row no longer wins silently
    with pytest.raises(RefDataError, match="line 2.*line 3"):
        RefData.load_csv(f)


def test_refdata_check_and_diff_commands(tmp_path):
    from click.testing import CliRunner

    from surveil.cli import main

    new, old, bad = tmp_path / "new.csv", tmp_path / "old.csv", tmp_path / "bad.csv"
    new.write_text(MOVE)
    old.write_text("venue,account,owner,broker\nSSE,ACC,O1,F1\nSSE,A1,O1,F1\n")
    r = CliRunner().invoke(main, ["refdata", "check", str(new), "--history"])
    assert r.exit_code == 0, r.output
    assert "SSE:ACC\tsince 2024-02-19T10:00:00.000000000+08:00: owner O2, broker F2" in r.output
    assert "SSE:A1\tsince always: owner O1, broker F1" in r.output
    bad.write_text("venue,account,owner,broker,valid_from\nSSE,X,O1,F1,2024-02-05\nSSE,X,O2,F1,2024-02-01\n")
    r = CliRunner().invoke(main, ["refdata", "check", str(bad)])
    assert r.exit_code == 1 and "line 3" in r.output and "line 2" in r.output
    bad.write_text("venue,account,owner,broker,valid_from\nSSE,X,O1,F1,someday\n")
    r = CliRunner().invoke(main, ["refdata", "check", str(bad)])
    assert r.exit_code == 1 and "line 2: valid_from='someday'" in r.output
    r = CliRunner().invoke(main, ["refdata", "diff", str(old), str(new)])
    assert r.exit_code == 0
    assert "SSE:ACC from 2024-02-19T10:00:00.000000000+08:00: owner O1 -> O2, broker F1 -> F2" in r.output


def test_replay_exits_1_on_a_conflict(tmp_path):
    from click.testing import CliRunner

    from surveil.cli import main

    f = tmp_path / "acc.csv"
    f.write_text("venue,account,owner,broker,valid_from\nSSE,X,O1,F1,2024-02-01\nSSE,X,O2,F1,2024-02-01\n")
    ev = write(tmp_path / "e.jsonl", day_events())
    res = CliRunner().invoke(main, ["replay", str(ev), "--accounts", str(f), "--out", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 1, res.output
    assert "line 2" in res.output and "line 3" in res.output


def test_diff_names_the_accounts_that_changed_and_from_when(tmp_path):
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text("venue,account,owner,broker\nSSE,ACC,O1,F1\nSSE,A1,O1,F1\nSSE,GONE,O1,F1\n")
    new.write_text(MOVE.replace("SSE,ACC,O1,F1,2024-02-01", "SSE,ACC,O1,F1,"))
    d = {x["account"]: x for x in diff(RefData.load_csv(old), RefData.load_csv(new))}
    assert sorted(d) == ["ACC", "B1", "GONE"]
    assert d["ACC"]["from"] == "2024-02-19T10:00:00.000000000+08:00"
    assert d["ACC"]["changed"] == ["owner", "broker"]
    assert d["B1"]["from"] == "2024-01-02T00:00:00.000000000+08:00" and d["B1"]["old"] is None  # new
    assert d["GONE"]["new"] is None
    new.write_text(MOVE)  # ACC's first row now starts 2024-02-01: before it, the answers differ too
    acc = [x for x in diff(RefData.load_csv(old), RefData.load_csv(new)) if x["account"] == "ACC"]
    assert [(x["from"], x["new"] and x["new"]["owner"]) for x in acc] == [
        (None, None), ("2024-02-19T10:00:00.000000000+08:00", "O2")]  # 02-01 .. 10:00 both say O1: no entry
