"""JSON-array frames read from their bytes (``_svev.json_frame_columns``) against the orjson path, their
reference (``orjson.loads``, then ``json_columns`` or ``_columns_py``, and the validating path)."""
import json
import random

import numpy as np
import orjson
import pytest

from surveil.events import jsonl
from surveil.events.batch import Registry, match_id_values, order_id_values

pytestmark = pytest.mark.skipif(jsonl._svev is None, reason="the compiled module is not built (setup.py)")

TS = 1708306200000000000
GOOD = {"ts": TS, "venue": "SSE", "type": "order", "account": "A1", "side": "B", "price": 10.01, "qty": 100,
        "order_id": 7, "seq": 3}


def _events(rnd: random.Random, n: int) -> list[dict]:
    out = []
    for i in range(n):
        t = rnd.choice(["order", "cancel", "trade", "index", "indicative"])
        e = {"ts": TS + i * 1000, "venue": rnd.choice(["SSE", "SZSE", "BSE"]), "type": t}
        if rnd.random() < 0.1:  # an ISO-8601 timestamp, as parse_ts reads it
            e["ts"] = rnd.choice(["2024-02-19T09:30:00.000001234+08:00", "2024-02-19 01:30:00Z",
                                  "2024-02-29T09:30:00,5+0800", "2024-02-19T09:30:00-01:30"])
        if t == "index":
            e.update(symbol=rnd.choice(["000001", "399001"]), price=round(rnd.uniform(1000, 4000), 2))
        elif t == "indicative":
            e.update(symbol=rnd.choice(["600000", "000001"]), price=round(rnd.uniform(1, 200), 2))
            if rnd.random() < 0.5:
                e["qty"] = rnd.randrange(0, 10**6)
        else:
            e["account"] = rnd.choice(["A1", "A2", "0100000727", "账户九", "B\u00e9"])
            if rnd.random() < 0.7:
                e["broker"] = rnd.choice(["B007", "B011"])
            if rnd.random() < 0.2:
                e["owner"] = "LINGJUN"
            e["symbol"] = rnd.choice(["600000", "000001", "688981"])
            if t != "cancel" or rnd.random() < 0.5:
                e["side"] = rnd.choice(["B", "S"])
            e["price"] = rnd.choice([round(rnd.uniform(1, 200), rnd.randrange(5)), rnd.randrange(1, 500), 0.0001,
                                     123456.7891, 1e-4])
            e["qty"] = rnd.randrange(1, 10**6)
            if t == "trade":
                e["aggressor"] = rnd.choice([True, False, None])
                e["match_id"] = rnd.choice([None, rnd.randrange(10**12), f"E{i}", "成交" * 4, "x" * 24, 2**63 - 1])
            e["order_id"] = rnd.choice([rnd.randrange(10**12), 2**63 - 1, 0, f"S{i}", "订单1", None])
        if rnd.random() < 0.9:
            e["seq"] = rnd.choice([i, -(2**63), 2**63 - 1])
        out.append(e)
    return out


def _decode(payload: bytes, fast: bool, monkeypatch, reg: Registry | None = None):
    """(columns as lists, rejects, registry names) of one frame through decode_json_frame."""
    reg = reg if reg is not None else Registry()
    rejects = []
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(jsonl, "_frame_columns_compiled", lambda p, r: None)
        b = jsonl.decode_json_frame(payload, reg, "t", rejects)
    cols = {k: getattr(b, k).tolist() for k in b.columns() if k not in ("order_id", "match_id")}
    cols["order_id"] = order_id_values(b.order_id, b.flags)
    cols["match_id"] = match_id_values(b.match_id, b.mflags, len(b))
    rej = [(r.location, r.field, repr(r.value), r.reason, r.raw) for r in rejects]
    names = [list(i.names) for i in (reg.accounts, reg.symbols, reg.owners, reg.brokers)]
    return cols, rej, names


def _taken(payload: bytes, reg: Registry | None = None) -> bool:
    """Whether the pass from the bytes takes the frame (False: the orjson path decides)."""
    try:
        return jsonl._frame_columns_compiled(payload, reg if reg is not None else Registry()) is not None
    except jsonl._Slow:  # a new string the registry refuses
        return False


def _same_both_ways(payload: bytes, monkeypatch):
    fast = _decode(payload, True, monkeypatch)
    ref = _decode(payload, False, monkeypatch)
    assert fast == ref
    return fast


def test_clean_frames_are_read_from_their_bytes_and_equal_the_orjson_path(monkeypatch):
    rnd = random.Random(3)
    for k in range(12):
        events = _events(rnd, 300)
        if k % 3 == 1:  # keys in any order
            events = [dict(rnd.sample(list(e.items()), len(e))) for e in events]
        payload = orjson.dumps(events) if k % 3 != 2 else json.dumps(events, indent=1, ensure_ascii=False).encode()
        assert _taken(payload), k
        cols, rej, names = _same_both_ways(payload, monkeypatch)
        assert not rej and len(cols["ts"]) == 300
    # number forms orjson reads as the same values: exponents, -0, integers for prices
    text = (b'[{"ts":1708306200000000000,"venue":"SSE","type":"trade","account":"A1","side":"S",'
            b'"price":1.5E1,"qty":1e0,"order_id":-0,"seq":-0}]').replace(b'"qty":1e0', b'"qty":100')
    for price in (b"1.5E1", b"15", b"150e-1", b"0.15e+2", b"15.000"):
        payload = text.replace(b"1.5E1", price)
        assert _taken(payload), price
        cols, _, _ = _same_both_ways(payload, monkeypatch)
        assert cols["price"] == [150000] and cols["order_id"] == [0] and cols["seq"] == [0]


def test_integer_order_ids_stay_a_number_column_and_mix_with_other_frames(monkeypatch):
    reg = Registry()
    a = jsonl.decode_json_frame(orjson.dumps([GOOD, {**GOOD, "order_id": None}]), reg, "t", [])
    b = jsonl.decode_json_frame(orjson.dumps([{**GOOD, "order_id": "X9"}]), reg, "t", [])
    assert a.order_id.dtype == np.int64 and b.order_id.dtype == object
    both = type(a).concat([a, b])
    assert order_id_values(both.order_id, both.flags) == [7, None, "X9"]


ODD = [  # byte-level changes of a clean frame the pass must leave to the orjson path (which decides)
    (b'"account":"A1"', b'"account":"A\\u0031"'),  # an escape
    (b'"account":"A1"', b'"account":"A\\"1"'),
    (b'"account":"A1"', b'"account":"A\x011"'),  # a raw control character: not JSON
    (b'"account":"A1"', b'"account":"A\xff1"'),  # not UTF-8
    (b'"order_id":7', b'"order_id":"o\xc3"'),
    (b'"account":"A1"', b'"account":""'),  # refused by the registry
    (b'"account":"A1"', b'"account":12345'),  # the validating path makes it a string
    (b'"account":"A1"', b'"account":"A1","note":"x"'),  # a key that is not a field
    (b'"account":"A1"', b'"account":"A1","x\xe9":1'),
    (b'"account":"A1"', b'"account":"A1","x":[1,{"a":2}]'),
    (b'"qty":100', b'"qty":100,"qty":200'),  # a field twice: orjson keeps the last
    (b'"qty":100', b'"qty":0100'),  # numbers that are not JSON
    (b'"qty":100', b'"qty":+100'),
    (b'"qty":100', b'"qty":100.'),
    (b'"price":10.01', b'"price":.5'),
    (b'"price":10.01', b'"price":1e'),
    (b'"price":10.01', b'"price":NaN'),
    (b'"price":10.01', b'"price":Infinity'),
    (b'"price":10.01', b'"price":1e400'),  # orjson: not finite
    (b'"price":10.01', b'"price":-10.01'),  # a reject (negative)
    (b'"price":10.01', b'"price":100000000000000000000'),  # an integer beyond int64
    (b'"price":10.01', b'"price":"10.01"'),
    (b'"price":10.01', b'"price":10.01' + b"0" * 60),  # a number of 64 characters or more
    (b'"price":10.01', b'"price":true'),
    (b'"qty":100', b'"qty":100.0'),  # a float where an integer belongs
    (b'"qty":100', b'"qty":true'),
    (b'"qty":100', b'"qty":-1'),  # a reject
    (b'"qty":100', b'"qty":99999999999999999999'),
    (b'"seq":3', b'"seq":9223372036854775808'),
    (b'"seq":3', b'"seq":-9223372036854775809'),
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00+08:00"'),
    (b'"ts":1708306200000000000', b'"ts":1.7e18'),
    (b'"ts":1708306200000000000', b'"ts":null'),
    (b'"ts":1708306200000000000,', b''),  # no ts
    (b'"ts":1708306200000000000', b'"ts":17'),  # out of range: a reject
    (b'"venue":"SSE"', b'"venue":"NYSE"'),
    (b'"venue":"SSE"', b'"venue":null'),
    (b'"side":"B"', b'"side":"b"'),
    (b'"side":"B"', b'"side":1'),
    (b'"side":"B"', b'"side":"B","aggressor":1'),
    (b'"side":"B"', b'"side":"B","aggressor":"true"'),
    (b'"order_id":7', b'"order_id":-7'),
    (b'"order_id":7', b'"order_id":9223372036854775808'),
    (b'"order_id":7', b'"order_id":7.0'),
    (b'"order_id":7', b'"order_id":false'),
    (b'"order_id":7', b'"order_id":7 '),  # whitespace: JSON, and clean
    (b'"order_id":7', b'"order_id" : 7\r\n\t'),
    (b'"order_id":7', b'"order_id":7,'),  # a trailing comma
    (b'"order_id":7', b'"order_id" 7'),
    (b',"seq":', b' "seq":'),
    # events _finish rejects (every check), and their neighbours it does not
    (b'"type":"order","account":"A1","side":"B","price":10.01,"qty":100',
     b'"type":"trade","account":"A1","side":"B","price":10.01,"qty":0'),
    (b'"qty":100', b'"qty":0'),  # on an order: clean
    (b'"type":"order"', b'"type":"index"'),  # no symbol
    (b'"type":"order","account":"A1"', b'"type":"index","symbol":"000001","account":"A1"'),  # clean
    (b'"type":"order","account":"A1","side":"B","price":10.01',
     b'"type":"index","symbol":"000001","account":"A1","side":"B","price":0'),
    (b'"type":"order","account":"A1","side":"B","price":10.01', b'"type":"trade","account":"A1","side":"B"'),
    (b'"type":"order","account":"A1","side":"B"', b'"type":"cancel","account":"A1"'),  # clean
    (b',"side":"B"', b''),
    (b'"account":"A1",', b''),
    (b',"qty":100', b''),
    (b'"price":10.01', b'"price":10.00001'),
    (b'"price":10.01', b'"price":100000000001'),
    (b'"price":10.01', b'"price":0'),  # on an order: clean
    (b'"qty":100', b'"qty":1000000000000000'),  # 10**15: out of range on every path now
    # contract version 2: match ids (on trades only), indicative events, the forms of an ISO-8601 ts
    (b'"type":"order"', b'"type":"trade","match_id":"E1"'),  # clean
    (b'"type":"order"', b'"type":"trade","match_id":123'),  # clean
    (b'"type":"order"', b'"type":"trade","match_id":null'),  # clean
    (b'"order_id":7', b'"order_id":7,"match_id":"E1"'),  # on an order: a reject
    (b'"type":"order"', b'"type":"trade","match_id":""'),
    (b'"type":"order"', b'"type":"trade","match_id":"' + b"x" * 25 + b'"'),
    (b'"type":"order"', b'"type":"trade","match_id":-1'),
    (b'"type":"order"', b'"type":"trade","match_id":1.0'),
    (b'"type":"order"', b'"type":"trade","match_id":true'),
    (b'"type":"order"', b'"type":"trade","match_id":"E\\u0031"'),  # an escape
    (b'"type":"order","account":"A1"', b'"type":"indicative","symbol":"600000","account":"A1"'),  # clean
    (b'"type":"order","account":"A1","side":"B","price":10.01',
     b'"type":"indicative","account":"A1","side":"B","price":10.01'),  # no symbol
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00.123456789+08:00"'),  # clean
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19 01:30:00Z"'),  # clean
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00,5+0800"'),  # clean
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00.1234567891+08:00"'),  # 10 digits: a reject
    (b'"ts":1708306200000000000', b'"ts":"2024-02-30T09:30:00+08:00"'),  # no such day: a reject
    (b'"ts":1708306200000000000', b'"ts":"2023-02-29T09:30:00+08:00"'),
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T24:00:00+08:00"'),
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:60:00+08:00"'),
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:60+08:00"'),
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00"'),  # no offset: a reject
    (b'"ts":1708306200000000000', b'"ts":" 2024-02-19T09:30:00Z"'),  # spaces: the reference strips them
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19t09:30:00Z"'),
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00z"'),
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00+8:00"'),
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00+99:99"'),  # the offset's digits as they are
    (b'"ts":1708306200000000000', b'"ts":"0000-01-01T00:00:00Z"'),
    (b'"ts":1708306200000000000', b'"ts":"1970-01-01T00:00:00Z"'),  # out of range: a reject
    (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00.+08:00"'),
    (b'"ts":1708306200000000000', b'"ts":"\xd9\xa2024-02-19T09:30:00Z"'),  # a digit that is not ASCII
]
CLEAN = {(b'"order_id":7', b'"order_id":7 '), (b'"order_id":7', b'"order_id" : 7\r\n\t'),  # whitespace only
         (b'"qty":100', b'"qty":0'), (b'"price":10.01', b'"price":0'),
         (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00+08:00"'),  # an ISO ts: read in C since v2
         (b'"type":"order","account":"A1"', b'"type":"index","symbol":"000001","account":"A1"'),
         (b'"type":"order","account":"A1","side":"B"', b'"type":"cancel","account":"A1"'),
         (b'"type":"order"', b'"type":"trade","match_id":"E1"'), (b'"type":"order"', b'"type":"trade","match_id":123'),
         (b'"type":"order"', b'"type":"trade","match_id":null'),
         (b'"type":"order","account":"A1"', b'"type":"indicative","symbol":"600000","account":"A1"'),
         (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00.123456789+08:00"'),
         (b'"ts":1708306200000000000', b'"ts":"2024-02-19 01:30:00Z"'),
         (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00,5+0800"'),
         (b'"ts":1708306200000000000', b'"ts":"2024-02-19T09:30:00+99:99"')}


@pytest.mark.parametrize("old, new", ODD)
def test_anything_odd_is_left_to_the_orjson_path_which_decides(monkeypatch, old, new):
    events = [{**GOOD, "account": f"A{i % 3}"} for i in range(6)]
    clean = orjson.dumps(events)
    assert clean.count(old) >= 2
    payload = clean.replace(old, new, 2)
    assert _taken(payload) == ((old, new) in CLEAN)
    _same_both_ways(payload, monkeypatch)


@pytest.mark.parametrize("compiled", ["bytes", "objects", "reference"])
@pytest.mark.parametrize("field, value, words", [
    ("aggressor", 1, "true or false"), ("aggressor", 0, "true or false"), ("qty", True, "integer"),
    ("ts", True, "not a timestamp"), ("price", False, "not a number"), ("seq", True, "64-bit integer"),
    ("order_id", -5, "non-negative"), ("order_id", 2**63, "non-negative"), ("qty", 2**63, "out of range"),
    ("price", 2**64 - 1, "out of range"),  # a uint64 column in numpy: the reference raised _Slow out of it
    ("qty", 10**15, "out of range"),  # the columns took it, the row check rejected it
])
def test_values_taken_for_others_are_rejects_on_every_path(monkeypatch, compiled, field, value, words):
    if compiled == "objects":  # orjson, then json_columns
        monkeypatch.setattr(jsonl, "_frame_columns_compiled", lambda p, r: None)
    elif compiled == "reference":  # orjson, then the numpy reference
        monkeypatch.setattr(jsonl, "_svev", None)
    rejects = []
    frame = [{**GOOD, "seq": i, "aggressor": True} for i in range(5)]
    frame[2][field] = value
    b = jsonl.decode_json_frame(orjson.dumps(frame), Registry(), "t", rejects)
    assert len(b) == 4 and [(r.location, r.field) for r in rejects] == [(2, field)] and words in rejects[0].reason


@pytest.mark.parametrize("payload", [
    b"", b"[", b"]", b"[]", b" [ ] ", b"[{}]", b"[1]", b"[[]]", b'["x"]', b"[null]", b"{}",
    orjson.dumps(GOOD),  # one event, not an array: the orjson path keeps its raw text
    b"\xef\xbb\xbf" + orjson.dumps([GOOD]),  # a byte-order mark
    orjson.dumps([GOOD]) + b"x",
    orjson.dumps([GOOD]) + b" \n",
    orjson.dumps([GOOD])[:-1] + b",]",
    orjson.dumps([GOOD, GOOD])[:-1].replace(b"},{", b"}{") + b"]",
    orjson.dumps([GOOD])[:-2],
    orjson.dumps([{"ts": 1, "venue": "SSE", "type": "index"}] * 100),  # more events than the bound allows
])
def test_frames_that_are_not_a_clean_array(monkeypatch, payload):
    _same_both_ways(payload, monkeypatch)


def test_a_str_record_goes_the_orjson_way(monkeypatch):
    text = orjson.dumps([GOOD, {**GOOD, "qty": -1}]).decode()
    assert _decode(text, True, monkeypatch)[:2] == _decode(text.encode(), False, monkeypatch)[:2]


def test_strings_known_to_the_interner_but_not_to_its_byte_cache(monkeypatch):
    reg = Registry()
    reg.accounts.intern("A5")  # as the reference data does
    reg.symbols.intern("600000")
    events = [{**GOOD, "ts": TS + i, "account": f"A{i % 7}", "symbol": "600000"} for i in range(20)]
    cols, _, names = _decode(orjson.dumps(events), True, monkeypatch, reg)
    assert names[0] == ["A5", "A0", "A1", "A2", "A3", "A4", "A6"] and names[1] == ["600000"]
    assert cols["account"][:7] == [1, 2, 3, 4, 5, 0, 6]
    for c, interner in enumerate((reg.accounts, reg.symbols)):  # the byte caches learnt every string
        held = interner.bytes_ids.join(np.arange(len(interner.names), dtype=np.int32))
        assert held == b"\x00".join(s.encode() for s in names[c])
    assert _decode(orjson.dumps(events), False, monkeypatch, Registry())[0]["ts"] == cols["ts"]


def test_numbers_are_read_as_python_reads_them():
    rnd = random.Random(11)
    texts = ["0.1", "0.3", "1e-22", "1e22", "123456789012345", "1234567890123456", "9007199254740993",
             "0.000000000000000000001", "2.2250738585072014e-308", "4.9e-324", "1.7976931348623157e308",
             "-0.0", "0e0", "10.0001", "1" * 40 + "." + "9" * 20]
    for _ in range(3000):
        digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randrange(1, 20))).lstrip("0") or "0"
        frac = "".join(rnd.choice("0123456789") for _ in range(rnd.randrange(0, 12)))
        t = digits + ("." + frac if frac else ".5")
        if rnd.random() < 0.3:
            t += rnd.choice(["e", "E"]) + rnd.choice(["", "+", "-"]) + str(rnd.randrange(0, 30))
        texts.append(("-" if rnd.random() < 0.2 else "") + t)
    got = np.array([jsonl._svev.json_double(t.encode()) for t in texts])
    want = np.array([float(t) for t in texts])
    assert np.array_equal(got.view(np.int64), want.view(np.int64))  # bit for bit, -0.0 included
    assert [jsonl._svev.json_double(t) for t in (b"1.", b"01", b"1e", b"-", b"1 ", b"NaN", b'"1"')] == [None] * 7
    # and as prices of a frame: integer units of 1/10000
    texts4 = ["10.01", "0.0001", "2886.59", "123456.7891", "1.5e1", "99999999999.9999", "0.3", "4.35"]
    events = b",".join(b'{"ts":%d,"venue":"SSE","type":"order","account":"A","side":"B","qty":1,"price":%s}'
                       % (TS, t.encode()) for t in texts4)
    fast = jsonl._frame_columns_compiled(b"[" + events + b"]", Registry())
    assert fast is not None and fast[0]["price"].tolist() == [round(float(t) * 10_000) for t in texts4]


def test_bad_arguments_are_errors():
    reg = Registry()
    tables = tuple(i.bytes_ids for i in (reg.accounts, reg.symbols, reg.owners, reg.brokers))
    k, m, c, out = jsonl.FIELDS, jsonl._JSON_MAPS, jsonl._FRAME_CONSTS, np.empty(16, np.int64)
    with pytest.raises(ValueError, match="69 bytes a row"):
        jsonl._svev.json_frame_columns(b"[]", k, m, tables, ({},) * 4, c, bytearray(64), 2)
    with pytest.raises(ValueError, match="17 constants"):
        jsonl._svev.json_frame_columns(b"[]", k, m, tables, ({},) * 4, c[:-1], out, 1)
    with pytest.raises(TypeError, match="StrTable"):
        jsonl._svev.json_frame_columns(b"[]", k, m, (None,) * 4, ({},) * 4, c, out, 1)
    clash = tuple("qeq" if f == "seq" else f for f in k)  # "qeq" and "qty": one length, one letter
    with pytest.raises(ValueError, match="same first letter"):
        jsonl._svev.json_frame_columns(b"[]", clash, m, tables, ({},) * 4, c, out, 1)
    with pytest.raises(TypeError, match="field names must be str"):
        jsonl._svev.json_frame_columns(b"[]", (1,) * 14, m, tables, ({},) * 4, c, out, 1)
    with pytest.raises(ValueError, match="at most 2"):
        jsonl._svev.json_frame_columns(b"[]", k, m, tables, ({},) * 4, (10**12,) + c[1:], out, 1)
    with pytest.raises(ValueError, match="flags must be"):
        jsonl._svev.json_frame_columns(b"[]", k, m, tables, ({},) * 4, c[:-1] + (256,), out, 1)
    for ids in (np.zeros(1, np.int32), b"\0" * 9):
        with pytest.raises(ValueError, match="differ in length"):
            tables[0].add_strs(["a", "b"], ids)
    buf = bytearray(9)
    buf[1:] = np.array([5, 6], np.int32).tobytes()
    tables[0].add_strs(["a", "b"], memoryview(buf)[1:])  # ids at an address that is not 4-byte aligned
    assert tables[0].join(np.array([5, 6], np.int32)) == b"a\0b"
    assert jsonl._svev.json_double(b"9" * 64) is None and jsonl._svev.json_double(b"9" * 63) == float("9" * 63)
