import gzip

import orjson
import pytest

from surveil.events import jsonl
from surveil.events.batch import Registry
from surveil.events.io import read_events

GOOD = {"ts": 1708306200000000000, "venue": "SSE", "type": "order", "account": "A1", "side": "B",
        "price": 10.01, "qty": 100, "order_id": "o1", "seq": 3}


@pytest.fixture(params=["validating", "validating-reference", "polars"], autouse=True)
def path(request, monkeypatch):
    """Run every test through each decoder: the validating orjson path (its columns built by the compiled
    ``json_columns``, or by the numpy reference alone) and the polars fast path."""
    monkeypatch.setattr(jsonl, "_POLARS_MIN_ROWS", 1 if request.param == "polars" else 10**9)
    if request.param == "validating-reference":
        monkeypatch.setattr(jsonl, "_svev", None)
    return request.param


def decode(objs):
    reg, rej = Registry(), []
    lines = [o if isinstance(o, bytes) else orjson.dumps(o) for o in objs]
    b = jsonl.decode_lines(lines, 1, reg, "in.jsonl", rej)
    return b, rej, reg


@pytest.mark.parametrize("bad, field, words", [
    (b"{not json", "line", "bad JSON"),
    ({**GOOD, "venue": "NYSE"}, "venue", "unknown venue"),
    ({**GOOD, "type": "quote"}, "type", "unknown type"),
    ({k: v for k, v in GOOD.items() if k != "account"}, "account", "missing field"),
    ({k: v for k, v in GOOD.items() if k != "ts"}, "ts", "missing field"),
    ({**GOOD, "qty": -100}, "qty", "negative qty"),
    ({**GOOD, "qty": 1.5}, "qty", "integer"),
    ({**GOOD, "ts": "yesterday"}, "ts", "not a timestamp"),
    ({**GOOD, "ts": 1.5e18}, "ts", "not a timestamp"),
    ({**GOOD, "price": "12.5"}, "price", "not a number"),
    ({**GOOD, "price": 10.00001}, "price", "4 decimal places"),
    ({**GOOD, "side": "X"}, "side", '"B" or "S"'),
    ({**GOOD, "account": True}, "account", "string"),
    ({**GOOD, "account": {"a": 1}}, "account", "string"),
    ({**GOOD, "account": 1.5}, "account", "string"),
    ([1, 2], "event", "not a JSON object"),
    # a list or an object where a number belongs (numpy cannot make such a column: it used to raise)
    ({**GOOD, "ts": [1]}, "ts", "not a timestamp"),
    ({**GOOD, "qty": [100, 200]}, "qty", "integer"),
    ({**GOOD, "price": {"a": 1}}, "price", "not a number"),
    # an empty string, or a NUL (the separator of a binary frame's string table), is refused on every path
    ({**GOOD, "account": ""}, "account", "non-empty string"),
    ({**GOOD, "owner": "M\x001"}, "owner", "without NUL"),
    # values numpy or a dict lookup took as others (1 == True, True == 1) and ids out of range
    ({**GOOD, "aggressor": 1}, "aggressor", "true or false"),
    ({**GOOD, "aggressor": 0}, "aggressor", "true or false"),
    ({**GOOD, "qty": True}, "qty", "integer"),
    ({**GOOD, "ts": True}, "ts", "not a timestamp"),
    ({**GOOD, "price": True}, "price", "not a number"),
    ({**GOOD, "seq": False}, "seq", "64-bit integer"),
    ({**GOOD, "order_id": -5}, "order_id", "non-negative"),
    ({**GOOD, "order_id": 2**63}, "order_id", "non-negative"),
    ({**GOOD, "price": 2**64 - 1}, "price", "out of range"),
    ({**GOOD, "qty": 10**15}, "qty", "out of range"),  # numpy made a uint64 column: it raised
])
def test_bad_lines_are_rejected_with_field_and_value(bad, field, words):
    b, rej, _ = decode([GOOD, bad, GOOD])
    assert len(b) == 2
    assert len(rej) == 1
    r = rej[0]
    assert r.field == field and words in r.reason
    assert r.location == 2
    assert field in r.message and "in.jsonl:line 2" in r.message
    assert r.to_dict()["raw"]


def test_iso_timestamps_with_offset_are_accepted():
    b, rej, _ = decode([{**GOOD, "ts": "2024-02-19T09:30:00.123456789+08:00"},
                        {**GOOD, "ts": "2024-02-19T01:30:00Z"}])
    assert not rej
    assert b.ts.tolist() == [1708306200123456789, 1708306200000000000]
    b, rej, _ = decode([{**GOOD, "ts": "2024-02-19T09:30:00"}])
    assert rej and rej[0].field == "ts"


def test_roundtrip_encode_decode_is_identity():
    objs = [GOOD, {**GOOD, "type": "trade", "side": "S", "aggressor": True, "order_id": 42, "broker": "B1",
                   "owner": "M1"},
            {"ts": 1708306200000000001, "venue": "SZSE", "type": "index", "symbol": "399001", "price": 8957.0},
            {"ts": 1708306200000000002, "venue": "BSE", "type": "cancel", "account": "Z"}]
    b, rej, reg = decode(objs)
    assert not rej
    out = jsonl.encode_lines(b, reg).splitlines()
    assert [orjson.loads(x) for x in out] == objs


def test_reader_handles_gzip_blank_lines_and_line_numbers(tmp_path):
    p = tmp_path / "d.jsonl.gz"
    with gzip.open(p, "wb") as f:
        f.write(orjson.dumps(GOOD) + b"\n\n" + b"{oops\n" + orjson.dumps(GOOD))
    reg, rej = Registry(), []
    batches = list(read_events(p, reg, rej, batch_size=2))
    assert sum(len(b) for b in batches) == 2
    assert [r.location for r in rej] == [3]


def test_integer_account_numbers_are_their_decimal_text():
    b, rej, reg = decode([{**GOOD, "account": 12345}, {**GOOD, "account": "12345"}])
    assert not rej
    assert b.account[0] == b.account[1] and reg.accounts.names[b.account[0]] == "12345"


def test_both_decoders_build_the_same_batch(monkeypatch):
    objs = [{**GOOD, "ts": GOOD["ts"] + i, "order_id": i if i % 3 else f"S{i}", "account": f"A{i % 7}",
             "owner": "M" if i % 5 == 0 else None, "aggressor": bool(i % 2) if i % 4 == 0 else None}
            for i in range(200)]
    objs = [{k: v for k, v in o.items() if v is not None} for o in objs]
    out = {}
    for name, rows in (("validating", 10**9), ("polars", 1)):
        monkeypatch.setattr(jsonl, "_POLARS_MIN_ROWS", rows)
        b, rej, reg = decode(objs)
        assert not rej
        out[name] = jsonl.encode_lines(b, reg)
    assert out["validating"] == out["polars"]
    assert out["polars"].splitlines()[1] == orjson.dumps(objs[1])


def test_blank_and_whitespace_lines_in_a_large_block_are_skipped_not_rejected(tmp_path):
    p = tmp_path / "blanks.jsonl"
    body = [orjson.dumps({**GOOD, "ts": GOOD["ts"] + i}) for i in range(300)]
    body[10:10] = [b"", b"   "]
    body.insert(0, b"")
    p.write_bytes(b"\n".join(body) + b"\n")
    reg, rej = Registry(), []
    batches = list(read_events(p, reg, rej))
    assert sum(len(b) for b in batches) == 300 and rej == []
    assert batches[0].src[:12].tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15]



def test_a_row_the_columns_cannot_hold_is_a_reject_not_an_exception(monkeypatch):
    """The safety net: a value the row check lets through (here, with the check switched off) and the columns
    cannot hold is a reject naming the event, and the other rows are kept."""
    monkeypatch.setattr(jsonl, "_check_row", lambda o: None)
    b, rej, _ = decode([GOOD, {**GOOD, "qty": "many"}, {**GOOD, "qty": -3}, GOOD])
    assert len(b) == 2 and [(r.location, r.field) for r in rej] == [(2, "event"), (3, "qty")]
    assert "cannot hold" in rej[0].reason and '"many"' in rej[0].raw and b.qty.tolist() == [100, 100]
    # rows that can each be a column but not together (here, only with the columns switched off for lists
    # of more than one row) are made columns one by one
    columns = jsonl._columns
    monkeypatch.setattr(jsonl, "_columns", lambda objs, reg: (_ for _ in ()).throw(jsonl._Slow) if len(objs) > 1
                        else columns(objs, reg))
    b, rej, _ = decode([GOOD, {**GOOD, "qty": -3}, {**GOOD, "seq": 9}])
    assert b.seq.tolist() == [3, 9] and [(r.location, r.field) for r in rej] == [(2, "qty")]
