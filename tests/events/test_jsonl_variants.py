"""Every shape of the contract a JSON Lines file may have (integer or decimal-string order ids, ISO-8601
timestamps, no seq, owner and broker inline or from reference data, match ids, indicative events) stays on the
fast path, the compiled pass over the block's bytes (``jsonl.decode_block``), and gives the same batch and the
same rejects as every other path: polars, the validating orjson path, and its numpy reference."""

import orjson
import pytest
from events.test_binary import sample_events

from surveil.events import jsonl
from surveil.events.batch import Registry
from surveil.events.schema import ns_to_iso

pytestmark = pytest.mark.skipif(jsonl._svev is None, reason="the compiled module is not built (setup.py)")


def _base(n=400):
    out = []
    for e in sample_events(n, v2=False):  # contract version 1: integer and string order ids mixed there
        if "order_id" in e:
            e["order_id"] = 100_000_000_000 + e["ts"] % 10**6
        out.append(e)
    return out


def _set(e, **kw):
    """``e`` with fields replaced (None: removed), in the contract's field order."""
    d = {**e, **kw}
    return {k: d[k] for k in jsonl.FIELDS if d.get(k) is not None}


VARIANTS = {
    "int_ids": lambda e: e,
    "str_ids": lambda e: _set(e, order_id=str(e["order_id"])) if "order_id" in e else e,
    "iso_ts": lambda e: _set(e, ts=ns_to_iso(e["ts"])),
    "iso_ts_utc": lambda e: _set(e, ts=ns_to_iso(e["ts"] - 8 * 3600 * 10**9)[:-6].replace("T", " ") + "Z"),
    "no_seq": lambda e: _set(e, seq=None),
    "owner_broker_inline": lambda e: _set(e, owner=f"M{len(e['account']) % 3}", broker="B1") if "account" in e
    else e,
    "from_refdata": lambda e: _set(e, owner=None, broker=None),
    "match_ids": lambda e: _set(e, match_id=e["ts"] % 1000 if e["ts"] % 2 else f"E{e['ts'] % 1000}")
    if e["type"] == "trade" else e,
    "indicative": lambda e: _set(e, type="indicative", price=10.5, account=None, side=None, order_id=None)
    if e["type"] == "cancel" else e,
    "contract_v2": lambda e: e,  # sample_events of contract version 2 (below)
}


def _events(variant):
    base = sample_events(400) if variant == "contract_v2" else _base()
    return [VARIANTS[variant](dict(e)) for e in base]


@pytest.fixture(params=["compiled", "polars", "validating", "reference"])
def path(request, monkeypatch):
    if request.param != "compiled":
        monkeypatch.setattr(jsonl, "_frame_columns_compiled", lambda *a, **k: None)
    monkeypatch.setattr(jsonl, "_POLARS_MIN_ROWS", 1 if request.param == "polars" else 10**9)
    if request.param == "reference":
        monkeypatch.setattr(jsonl, "_svev", None)
    return request.param


def _decode(block: bytes):
    reg, rej = Registry(), []
    b = jsonl.decode_block(block, 1, reg, "v.jsonl", rej)
    return (jsonl.encode_lines(b, reg), b.src.tolist(), [(r.location, r.field, repr(r.value), r.reason, r.raw)
                                                         for r in rej])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_is_read_from_its_bytes(variant, monkeypatch):
    lines = [orjson.dumps(e) for e in _events(variant)]
    block = b"\n".join(lines) + b"\n"
    taken = []
    compiled = jsonl._frame_columns_compiled

    def spy(payload, reg, lines=0):
        r = compiled(payload, reg, lines)
        taken.append(r is not None)
        return r

    monkeypatch.setattr(jsonl, "_frame_columns_compiled", spy)
    out, src, rej = _decode(block)
    assert taken == [True] and not rej and src == list(range(1, len(lines) + 1))
    want = [orjson.loads(x) for x in lines]
    if variant.startswith("iso_ts"):  # written back as integer nanoseconds
        for w, x in zip(want, _events("int_ids")):
            w["ts"] = x["ts"]
    assert [orjson.loads(x) for x in out.splitlines()] == want


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_path_gives_the_same_batch_and_rejects(variant, path):
    events = _events(variant)
    lines = [orjson.dumps(e) for e in events]
    got = _decode(b"\n".join(lines) + b"\n")
    ref_lines = [orjson.dumps(e) for e in _events(variant)]
    assert got == _reference(b"\n".join(ref_lines) + b"\n")
    # a bad line among them: the compiled pass leaves the block to the other paths, which keep the reject
    bad = [*lines[:7], orjson.dumps({**events[7], "venue": "NYSE"}), *lines[8:],
           b'{"ts": 1, "venue": "SSE", "type": "order"}', b"{oops"]
    got = _decode(b"\n".join(bad))  # no newline after the last line
    assert got == _reference(b"\n".join(bad))
    assert sorted(r[:2] for r in got[2]) == [(8, "venue"), (len(bad) - 1, "ts"), (len(bad), "line")]


def _reference(block: bytes):
    """The validating path with the numpy reference columns, whatever the fixture patched."""
    saved = (jsonl._frame_columns_compiled, jsonl._POLARS_MIN_ROWS, jsonl._svev)
    jsonl._frame_columns_compiled, jsonl._POLARS_MIN_ROWS, jsonl._svev = (lambda *a, **k: None), 10**9, None
    try:
        return _decode(block)
    finally:
        jsonl._frame_columns_compiled, jsonl._POLARS_MIN_ROWS, jsonl._svev = saved


@pytest.mark.parametrize("block, why", [
    (b'{"ts":1708306200000000000,"venue":"SSE","type":"cancel","account":"A"}\n\n'
     b'{"ts":1708306200000000001,"venue":"SSE","type":"cancel","account":"A"}\n', "a blank line"),
    (b'{"ts":1708306200000000000,"venue":"SSE","type":"cancel","account":"A"}\n   \n'
     b'{"ts":1708306200000000001,"venue":"SSE","type":"cancel","account":"A"}\n', "a line of spaces"),
    (b'{"ts":1708306200000000000,"venue":"SSE",\n"type":"cancel","account":"A"}\n', "an event over two lines"),
    (b'{"ts":1708306200000000000,"venue":"SSE","type":"cancel","account":"A"} '
     b'{"ts":1708306200000000001,"venue":"SSE","type":"cancel","account":"A"}\n', "two events on a line"),
    (b'[{"ts":1708306200000000000,"venue":"SSE","type":"cancel","account":"A"}]\n', "an array"),
])
def test_lines_the_compiled_pass_leaves_to_the_others(block, why, monkeypatch):
    """Line numbers must stay right: anything but one event per line goes to the paths that split lines."""
    reg = Registry()
    assert jsonl._frame_columns_compiled(block, reg, lines=block.count(b"\n")) is None, why
    assert _decode(block) == _reference(block)


def test_spaces_and_carriage_returns_around_events_are_taken():
    e = b'{"ts":1708306200000000000,"venue":"SSE","type":"cancel","account":"A"}'
    for block, n in ((b"  " + e + b" \r\n\t" + e + b"\r\n", 2), (e, 1), (e + b"\n" + e, 2)):
        r = jsonl._frame_columns_compiled(block, Registry(), lines=n)
        assert r is not None and r[1] == n, block
        assert _decode(block) == _reference(block)


def test_without_the_compiled_pass_polars_takes_decimal_string_ids():
    """polars reads a JSON number into a string column as its text: decimal-string ids are taken when the block
    holds no order id of another kind (nor any escape, which could hide a key)."""
    lines = [orjson.dumps(e) for e in _events("str_ids")]
    block = b"\n".join(lines) + b"\n"
    assert b'"order_id":"1' in block
    assert jsonl._polars_block(block, len(lines), Registry()) is not None
    for other in (b'"order_id":123', b'"order_id" : true', b'"order_id":"1.5"', b'"order_id":"x\\u0031"'):
        mixed = block.replace(b'"order_id":"' + lines[0].split(b'"order_id":"')[1].split(b'"')[0] + b'"', other, 1)
        assert mixed != block and jsonl._polars_block(mixed, len(lines), Registry()) is None, other
    escaped_key = block.replace(b'"order_id":"', b'"order\\u005fid":"', 1)
    assert jsonl._polars_block(escaped_key, len(lines), Registry()) is None
