"""An inline owner applies to its own event only (docs/events.md), whatever the cut of the input: one file, two
files, any batch size, or one unrelated event more give the same answer."""

import orjson
from evtools import T0, S, sell

from surveil.replay import replay

YI = 100_000_000


def write(path, events):
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def test_an_inline_owner_does_not_reach_back_to_earlier_events(tmp_path):
    acc = tmp_path / "acc.csv"
    acc.write_text("venue,account,owner,broker\nSSE,LATEOWN,R_REF,B1\n")
    first = sell(T0 + 1800 * S, "LATEOWN", "SSE", 6 * YI, order_id="a")  # 10:00:00, owner from the file
    second = sell(T0 + 1810 * S, "LATEOWN", "SSE", 6 * YI, owner="E_EVT", order_id="b")  # names its owner
    other = sell(T0 + 3600 * S, "SOMEONE", "SZSE", 1 * YI, order_id="c")
    runs = {
        "one file": replay([write(tmp_path / "one.jsonl", [first, second])], accounts=acc),
        "two files": replay([write(tmp_path / "a.jsonl", [first]), write(tmp_path / "b.jsonl", [second])],
                            accounts=acc),
        "one more event": replay([write(tmp_path / "three.jsonl", [first, second, other])], accounts=acc),
        "batches of one": replay([tmp_path / "one.jsonl"], accounts=acc, batch_size=1),
    }
    for name, res in runs.items():
        # 600 M yuan for R_REF and 600 M for E_EVT: neither reaches 1 bn (before, one file raised 1.2 bn for E_EVT)
        assert [a for a in res.alerts if a["rule"] == "sell_burst_1m"] == [], name


def test_an_inline_owner_counts_for_its_own_event(tmp_path):
    acc = tmp_path / "acc.csv"
    acc.write_text("venue,account,owner,broker\nSSE,X1,R_REF,B1\nSZSE,X2,R_REF,B2\n")
    evs = [sell(T0 + 1800 * S, "X1", "SSE", 6 * YI, owner="E_EVT", order_id="a"),
           sell(T0 + 1805 * S, "X2", "SZSE", 6 * YI, owner="E_EVT", order_id="b")]
    for size in (1, 2, 4096):
        res = replay([write(tmp_path / "e.jsonl", evs)], accounts=acc, batch_size=size)
        assert [a["subject"] for a in res.alerts if a["rule"] == "sell_burst_1m"] == [{"owner": "E_EVT"}]
