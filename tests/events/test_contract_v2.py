"""Contract version 2 (docs/events.md): match ids on trades, indicative events, frame versions 3 and 4 (and the
versions 1 and 2 of contract version 1 still read), session phases."""

from pathlib import Path

import numpy as np
import orjson
import pytest
from events.test_binary import sample_events

from surveil.events import binary, jsonl, schema
from surveil.events.batch import Batch, Registry, match_id_values, order_id_values
from surveil.events.io import EventWriter, read_events
from surveil.events.schema import (
    INDICATIVE,
    PHASE_AFTER_CLOSE,
    PHASE_CLOSED,
    PHASE_CLOSING_CALL,
    PHASE_CONTINUOUS,
    PHASE_LUNCH,
    PHASE_OPENING_CALL,
    PHASE_PRE_OPEN,
    day_start_ns,
    session_phase,
    trading_day_index,
)

DATA = Path(__file__).parent / "data"
T0 = 1_708_306_200_000_000_000  # 2024-02-19 09:30:00 Asia/Shanghai
TRADE = {"ts": T0, "venue": "SSE", "type": "trade", "account": "A1", "side": "B", "price": 10.5, "qty": 100,
         "order_id": "o1", "match_id": "E1"}
IND = {"ts": T0, "venue": "SZSE", "type": "indicative", "symbol": "000001", "price": 9.87, "qty": 5000}


def _lines(events) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


def _values(b: Batch, reg: Registry) -> list[dict]:
    return [dict(d) for d in jsonl.event_dicts(b, reg)]


# -- session phases -------------------------------------------------------------------------------------------

def _at(h, m, s=0, ns=0, day="2024-02-19"):
    import datetime as dt

    d = (dt.date.fromisoformat(day) - dt.date(1970, 1, 1)).days
    return day_start_ns(d) + ((h * 60 + m) * 60 + s) * 1_000_000_000 + ns


BOUNDARIES = [
    (_at(0, 0), PHASE_CLOSED),
    (_at(9, 14, 59, 999_999_999), PHASE_CLOSED),
    (_at(9, 15), PHASE_OPENING_CALL),
    (_at(9, 19, 59, 999_999_999), PHASE_OPENING_CALL),  # cancels accepted until 09:20
    (_at(9, 20), PHASE_OPENING_CALL),  # ... and not from 09:20: the same phase
    (_at(9, 24, 59, 999_999_999), PHASE_OPENING_CALL),
    (_at(9, 25), PHASE_PRE_OPEN),
    (_at(9, 29, 59, 999_999_999), PHASE_PRE_OPEN),
    (_at(9, 30), PHASE_CONTINUOUS),
    (_at(11, 29, 59, 999_999_999), PHASE_CONTINUOUS),
    (_at(11, 30), PHASE_LUNCH),
    (_at(12, 59, 59, 999_999_999), PHASE_LUNCH),
    (_at(13, 0), PHASE_CONTINUOUS),
    (_at(14, 56, 59, 999_999_999), PHASE_CONTINUOUS),
    (_at(14, 57), PHASE_CLOSING_CALL),
    (_at(14, 59, 59, 999_999_999), PHASE_CLOSING_CALL),
    (_at(15, 0), PHASE_AFTER_CLOSE),
    (_at(23, 59, 59, 999_999_999), PHASE_AFTER_CLOSE),
]


@pytest.mark.parametrize("venue", [0, 1, 2])
def test_session_phase_at_every_boundary_on_every_venue(venue):
    ts = np.array([t for t, _ in BOUNDARIES], np.int64)
    want = [p for _, p in BOUNDARIES]
    got = session_phase(ts, venue)
    assert got.dtype == np.uint8 and got.tolist() == want
    assert session_phase(ts, np.full(len(ts), venue, np.uint8)).tolist() == want
    for t, p in BOUNDARIES:  # one timestamp at a time, and on another day
        assert int(session_phase(np.array([t]), venue)[0]) == p
        assert int(session_phase(np.array([t + 400 * schema.NS_PER_DAY]), venue)[0]) == p
    assert trading_day_index(_at(23, 59, 59, 999_999_999)) == trading_day_index(_at(0, 0))  # one calendar day


def test_session_phase_of_mixed_venues_and_the_opening_calls_two_parts():
    ts = np.array([_at(9, 15), _at(9, 20), _at(14, 57), _at(9, 14)] * 3, np.int64)
    venue = np.repeat(np.arange(3, dtype=np.uint8), 4)
    assert session_phase(ts, venue).tolist() == [PHASE_OPENING_CALL, PHASE_OPENING_CALL, PHASE_CLOSING_CALL,
                                                 PHASE_CLOSED] * 3
    cancellable = schema.time_of_day_ns(ts) < schema.OPENING_CALL_NO_CANCEL_NS
    assert cancellable[:2].tolist() == [True, False]
    assert session_phase(np.empty(0, np.int64), 0).shape == (0,)
    assert schema.PHASES[PHASE_CLOSING_CALL] == "closing_call" and len(schema.PHASES) == 7


# -- JSON: match ids and indicative events ------------------------------------------------------------------

@pytest.fixture(params=["compiled-lines", "polars", "validating", "validating-reference", "frame-bytes",
                        "frame-objects"])
def decode(request, monkeypatch):
    """Decode events through one path: a block of JSON lines (the compiled pass from its bytes, polars, the
    validating orjson path with the compiled columns or the numpy reference) or a JSON-array frame (from its
    bytes, or through orjson objects)."""
    kind = request.param
    if kind in ("polars", "validating", "validating-reference", "frame-objects"):
        monkeypatch.setattr(jsonl, "_frame_columns_compiled", lambda *a, **k: None)
    monkeypatch.setattr(jsonl, "_POLARS_MIN_ROWS", 1 if kind == "polars" else 10**9)
    if kind == "validating-reference":
        monkeypatch.setattr(jsonl, "_svev", None)

    def run(events):
        reg, rej = Registry(), []
        if kind.startswith("frame"):
            b = jsonl.decode_json_frame(orjson.dumps(events), reg, "f", rej)
        else:
            b = jsonl.decode_block(b"\n".join(_lines(events)) + b"\n", 1, reg, "in.jsonl", rej)
        return b, rej, reg

    run.kind = kind
    return run


def test_match_ids_and_indicative_events_read_on_every_path(decode):
    events = [TRADE, {**TRADE, "side": "S", "account": "A2", "match_id": 123456789}, IND,
              {**IND, "qty": None, "price": 2.5}, {**TRADE, "match_id": None}, {**TRADE, "match_id": "执行1"}]
    b, rej, reg = decode(events)
    assert not rej
    assert match_id_values(b.match_id, b.mflags) == ["E1", 123456789, None, None, None, "执行1"]
    assert b.etype.tolist() == [2, 2, INDICATIVE, INDICATIVE, 2, 2]
    want = [{k: v for k, v in e.items() if v is not None} for e in events]
    assert _values(b, reg) == want
    b, rej, reg = decode([{**TRADE, "match_id": None}, IND])
    assert b.match_id is None and b.mflags is None and not rej  # no match id in the batch: no column


@pytest.mark.parametrize("event, field, value, words", [
    ({**TRADE, "type": "order"}, "match_id", "E1", "only trade events"),
    ({**TRADE, "type": "cancel"}, "match_id", "E1", "only trade events"),
    ({**IND, "match_id": 5}, "match_id", 5, "only trade events"),
    ({**TRADE, "match_id": ""}, "match_id", "", "non-empty string of at most 24 bytes"),
    ({**TRADE, "match_id": "x" * 25}, "match_id", "x" * 25, "at most 24 bytes"),
    ({**TRADE, "match_id": "成交" * 5}, "match_id", "成交" * 5, "at most 24 bytes"),  # 30 bytes of UTF-8
    ({**TRADE, "match_id": "a\x00b"}, "match_id", "a\x00b", "without NUL"),
    ({**TRADE, "match_id": -1}, "match_id", -1, "non-negative 64-bit integer"),
    ({**TRADE, "match_id": 2**63}, "match_id", 2**63, "non-negative 64-bit integer"),
    ({**TRADE, "match_id": 1.5}, "match_id", 1.5, "non-negative 64-bit integer"),
    ({**TRADE, "match_id": True}, "match_id", True, "non-negative 64-bit integer"),
    ({**TRADE, "match_id": ["E1"]}, "match_id", ["E1"], "non-negative 64-bit integer"),
    ({k: v for k, v in IND.items() if k != "symbol"}, "symbol", None, "required for index and indicative"),
    ({k: v for k, v in IND.items() if k != "price"}, "price", None, "required for trade, index and indicative"),
    ({**IND, "price": 0}, "price", 0, "must be positive for trade, index and indicative"),
    ({**IND, "qty": -1}, "qty", -1, "negative qty"),
    ({**IND, "type": "quote"}, "type", "quote", "indicative"),  # the list of types names the new one
])
def test_a_bad_match_id_or_indicative_event_is_a_reject_naming_field_and_value(decode, event, field, value, words):
    good = [{**TRADE, "ts": T0 + i, "match_id": f"E{i}"} for i in range(3)]
    b, rej, reg = decode([good[0], event, good[1], IND, good[2]])
    assert len(b) == 4 and len(rej) == 1, [r.message for r in rej]
    r = rej[0]
    assert (r.field, r.value) == (field, value) and words in r.reason, r.message
    assert r.location == (1 if decode.kind.startswith("frame") else 2)
    assert match_id_values(b.match_id, b.mflags) == ["E0", "E1", None, "E2"]


def test_an_indicative_event_needs_no_account_side_or_qty(decode):
    b, rej, reg = decode([{"ts": T0, "venue": "BSE", "type": "indicative", "symbol": "830799", "price": 12.34},
                          {**IND, "qty": 0, "account": "A9"}])
    assert not rej and b.qty.tolist() == [0, 0] and b.account[0] == -1
    assert _values(b, reg)[1]["account"] == "A9"


# -- binary frames ------------------------------------------------------------------------------------------------

def _batch(events, reg=None):
    reg = reg or Registry()
    rej = []
    b = jsonl.decode_lines(_lines(events), 1, reg, "x", rej)
    assert not rej
    return b, reg


def _versions(data: bytes) -> list[tuple[int, int]]:
    """(version, record size) of each frame of a file."""
    out, off = [], 0
    while off < len(data):
        _, v, size, n, *_, slen = binary.HEADER.unpack_from(data, off)
        out.append((v, size))
        off += binary.frame_length(data, off)
    return out


def test_the_writer_writes_versions_5_and_6_with_long_records_only_where_a_match_id_is(tmp_path):
    events = sample_events(300)
    for e in events[150:]:
        e.pop("match_id", None)
    b, reg = _batch(events)
    with EventWriter(tmp_path / "d.svb", reg, frame_size=50) as w:
        w.write(b)
    # the first frame holds the whole dictionary (version 5), the others are delta frames
    assert _versions((tmp_path / "d.svb").read_bytes()) == [(5, 104)] + [(6, 104)] * 2 + [(6, 76)] * 3
    frame = binary.encode_frame(b.take(slice(0, 50)), reg)
    assert binary.HEADER.unpack_from(frame, 0)[1:3] == (5, 104)
    assert binary.HEADER.unpack_from(binary.encode_frame(b.take(slice(150, 200)), reg), 0)[1:3] == (5, 76)
    assert binary.encode_frame_fast(b.take(slice(150, 200)), reg)[:8] == frame[:4] + b"\x05\x00\x4c\x00"
    got = list(read_events(tmp_path / "d.svb", Registry(), []))
    assert sum(len(x) for x in got) == 300


@pytest.mark.parametrize("fast", [True, False])
def test_files_and_frames_of_contract_version_1_still_read(fast, monkeypatch, tmp_path):
    """tests/events/data: written by the writer of contract version 1 (frame versions 1 and 2, before this
    change), with the JSON Lines they came from."""
    monkeypatch.setattr(binary, "FAST", fast)
    want = (DATA / "contract-v1.jsonl").read_bytes()
    assert {v for v, _ in _versions((DATA / "contract-v1.svb").read_bytes())} == {2}
    assert {v for v, _ in _versions((DATA / "contract-v1-frames.svb").read_bytes())} == {1}
    for name in ("contract-v1.svb", "contract-v1-frames.svb"):
        reg, rej = Registry(), []
        out = b"".join(jsonl.encode_lines(x, reg) for x in read_events(DATA / name, reg, rej))
        assert not rej and out == want
    # a self-contained frame of version 1 alone, as a Kafka record of an older feed
    data = (DATA / "contract-v1-frames.svb").read_bytes()
    reg, rej = Registry(), []
    b, end = binary.decode_frame_at(data, 0, reg, "k", 0, rej)
    assert len(b) == 40 and not rej and b.match_id is None
    # and into a frame block (the partition stage's way)
    if fast:
        block = binary.FrameBlock(200)
        b2, _ = binary.decode_frame_at(data, 0, Registry(), "k", 0, [], into=block)
        assert b2.ts.tolist() == b.ts.tolist() and b2.match_id is None
    # rewritten in the new versions, the same events
    reg, rej = Registry(), []
    with EventWriter(tmp_path / "new.svb", reg) as w:
        for x in read_events(DATA / "contract-v1.svb", reg, rej):
            w.write(x)
    assert {v for v, _ in _versions((tmp_path / "new.svb").read_bytes())} == {5, 6}
    reg = Registry()
    assert b"".join(jsonl.encode_lines(x, reg) for x in read_events(tmp_path / "new.svb", reg, [])) == want


def test_a_version_1_frame_with_a_record_size_of_version_3_is_refused():
    b, reg = _batch([TRADE])
    frame = bytearray(binary.encode_frame(b, reg))
    assert binary.HEADER.unpack_from(frame, 0)[1:3] == (5, 104)
    from surveil.events.errors import EventFormatError

    with pytest.raises(EventFormatError, match="unsupported frame version 1 / record size 104"):
        binary.decode_frame_at(binary.reseal(frame, 1), 0, Registry(), "k", 0, [])
    with pytest.raises(EventFormatError, match="unsupported frame version 7"):
        binary.decode_frame_at(binary.reseal(frame, 7), 0, Registry(), "k", 0, [])


@pytest.mark.parametrize("fast", [True, False])
def test_a_record_with_a_match_id_on_another_type_is_a_reject_naming_it(fast, monkeypatch):
    monkeypatch.setattr(binary, "FAST", fast)
    b, reg = _batch([TRADE, {**TRADE, "match_id": 42}, IND, {**TRADE, "match_id": "E3"}])
    frame = bytearray(binary.encode_frame(b, reg))
    n = len(b)
    rec = np.frombuffer(frame, dtype=binary.RECORD_MATCH, count=n, offset=len(frame) - n * 104).copy()
    rec["etype"][1] = schema.ORDER  # a match id on an order
    rec["mflags"][2] = schema.MF_HAS_MATCH_ID  # and on an indicative event (an empty one)
    rec["etype"][3] = 7  # an unknown type code
    frame[len(frame) - n * 104:] = rec.tobytes()
    frame = binary.reseal(frame)  # made on purpose, behind checksums that agree
    rej = []
    got, _ = binary.decode_frame_at(bytes(frame), 0, Registry(), "f.svb", 0, rej)
    assert len(got) == 1 and match_id_values(got.match_id, got.mflags) == ["E1"]
    assert [(r.location, r.field, r.value) for r in rej] == [(1, "match_id", 42), (2, "match_id", ""),
                                                             (3, "etype", 7)]
    assert "only trade events have a match id" in rej[0].reason


def test_a_frame_block_holds_frames_with_and_without_match_ids():
    if not binary.FAST:
        pytest.fail("surveil.events._svev is not built")
    events = sample_events(200)
    b, reg = _batch(events)
    cuts = [(3, 7), (7, 53), (53, 57), (57, 123), (123, 127)]  # trades are events 2, 7, 12...: some frames hold none
    frames = [binary.encode_frame(b.take(slice(lo, hi)), reg) for lo, hi in cuts]
    assert [binary.HEADER.unpack_from(f, 0)[2] for f in frames] == [76, 104, 76, 104, 76]
    for first in (0, 1):  # the block starting with a frame without, or with, match ids
        block = binary.FrameBlock(500)
        block.mid[:] = b"garbage"  # left by an earlier use of the block
        reg2 = Registry()
        parts = [binary.decode_frame_at(f, 0, reg2, "k", 0, [], into=block)[0] for f in frames[first:]]
        whole = block.batch(0, block.row)
        want = [e.get("match_id") for e in events[cuts[first][0]:127]]
        assert match_id_values(whole.match_id, whole.mflags) == want
        assert match_id_values(Batch.concat(parts).match_id, Batch.concat(parts).mflags) == want
        assert b"garbage" not in whole.match_ids_bytes().tolist()
        assert order_id_values(whole.order_id, whole.flags) == [e.get("order_id") for e in events[cuts[first][0]:127]]
        # the frame without match ids before the first with: no column; rewritten, the same frames
        if first == 0:
            assert parts[0].match_id is None and block.batch(0, 4).match_id is None
        again = [binary.encode_frame(block.batch(lo - cuts[first][0], hi - cuts[first][0]), reg2)
                 for lo, hi in cuts[first:]]
        assert [binary.HEADER.unpack_from(f, 0)[2] for f in again] == [76, 104, 76, 104, 76][first:]


def test_batches_with_and_without_match_ids_concatenate_and_take():
    a, reg = _batch([TRADE, {**TRADE, "match_id": 7}])
    b, _ = _batch([{**TRADE, "match_id": None}, IND], reg)
    c = Batch.concat([b, a, b])
    assert match_id_values(c.match_id, c.mflags) == [None, None, "E1", 7, None, None]
    assert c.take(np.array([2, 3])).match_id.tolist() == ["E1", 7]
    assert c.take(slice(0, 2)).match_id_at(1) is None and c.match_id_at(3) == 7
    assert Batch.concat([b, b]).match_id is None and set(b.columns()) == set(a.columns()) - {"match_id", "mflags"}
    frame = binary.encode_frame(a, reg)
    fb, _ = binary.decode_frame_at(frame, 0, Registry(), "k", 0, [])
    mixed = Batch.concat([fb, b])  # bytes from a frame and values from JSON
    assert match_id_values(mixed.match_id, mixed.mflags) == ["E1", 7, None, None]
    assert mixed.copy().match_id_at(1) == 7
