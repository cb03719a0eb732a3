"""Properties of the worker's record handler (``PartitionState.handle_many``) and of the file readers, over any
input (Hypothesis): any bytes, any JSON value (arrays, objects, deep nesting, huge numbers, wrong types), a
tombstone, a truncated or bit-flipped binary frame, mixed with valid records.

- nothing escapes: no exception, whatever the record;
- nothing is silently dropped: every record yields events or at least one reject naming its topic, partition and
  offset (a frame's bytes past the records its header announces are a reject too);
- every reject is publishable: it serialises as the worker serialises it, within 2 x REJECT_KEEP + 4 KiB;
- the valid records' alerts are the same as without the bad records, in any grouping of the records;
- memory stays within a small multiple of the input.

The readers (``surveil.events.io.read_events``) over a file of any bytes, of any JSON lines, or a truncated or
bit-flipped .svb: no exception but the documented InputError / EventFormatError for a whole unusable file, every
non-blank line an event or a reject with its line number, every event read writable back as JSON.

Two bugs these tests found in ``surveil/events`` are fixed: a frame's order id bytes were not checked when
decoded, and a damaged .jsonl.gz raised what gzip and zlib raise (the examples are derandomized: the same on
every run).

The damaged frames carry events ten days before the valid ones: a single flipped bit (2**k ns) then leaves a
timestamp either late (rejected, counted by no rule of the valid day) or more than future_jump_ms ahead (a
suspect, contradicted by later events). A flip that made a damaged event a plausible one of the valid minute would
be a valid event the handler cannot tell from the others, so the property would not hold for it (nor for any
system): the ten days keep every single flip out of that range (2**49 ns is 6.5 days, 2**50 ns 13 days)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from surveil.engine import load_config
from surveil.engine.alerts import dumps
from surveil.engine.refdata import RefData
from surveil.events import binary, jsonl
from surveil.events.batch import Registry
from surveil.events.errors import EventFormatError
from surveil.events.io import InputError, read_events
from surveil.events.schema import NS_PER_DAY, day_start_ns, trading_day_index
from surveil.stream.partition import REJECT_KEEP, PartitionState

TOPIC, PART = "f.sse", 0
T0 = 1_708_306_200_000_000_000  # 2024-02-19 09:30:00 Asia/Shanghai
S = 1_000_000_000
NEXT_DAY = day_start_ns(trading_day_index(T0) + 1)
REJECT_MAX = 2 * REJECT_KEEP + 4096
#: derandomized: the same examples on every run (a failure is a fact about the code, not about the draw)
#: no shrinking: a failure shows the example as drawn, at once
FAST = settings(max_examples=300, deadline=None, derandomize=True,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _order(ts, account, oid, venue="SSE"):
    return {"ts": ts, "venue": venue, "type": "order", "account": account, "symbol": "600000", "side": "B",
            "price": 10.0, "qty": 100, "order_id": oid}


def _frame(events) -> bytes:
    reg = Registry()
    rej: list = []
    b = jsonl.decode_lines([orjson.dumps(e) for e in events], 1, reg, "t", rej)
    assert not rej
    return binary.encode_frame(b, reg)


# -- the valid records: two bursts above order_rate_1s (one JSON array, one binary frame) and calm events -----
VALID = [
    orjson.dumps([_order(T0 + S + i * 2_000_000, "RATEJSON", i) for i in range(350)]),
    _frame([_order(T0 + 3 * S + i * 3_000_000, "RATEFRAME", 1000 + i, "SZSE") for i in range(320)]),
    orjson.dumps([_order(T0 + 5 * S + i * 100_000_000, f"CALM{i % 3}", 2000 + i) for i in range(20)]),
    _frame([_order(T0 + 9 * S + i * 100_000_000, f"CALM{i % 3}", 3000 + i) for i in range(20)]),
    orjson.dumps(_order(T0 + 12 * S, "CALM0", 4000)),  # one JSON event
]
MARKER = b'{"kind":"progress","ts":%d}' % NEXT_DAY  # closes the day: every alert final
#: the frame the damaged ones are made of: events ten days before the valid ones (see the module's docstring)
TEMPLATE = _frame([_order(T0 - 10 * NS_PER_DAY + i * 1_000_000, f"Q{i}", 9000 + i) for i in range(5)])


def new_state() -> PartitionState:
    return PartitionState(f"{TOPIC}:{PART}", load_config(), RefData(), 2)


def final_alerts(alerts) -> list[bytes]:
    return sorted(dumps(a) for a in alerts if a["status"] == "final")


def _baseline() -> list[bytes]:
    st_ = new_state()
    alerts = []
    for off, v in enumerate([*VALID, MARKER]):
        alerts += st_.handle_many([(off, v)], TOPIC, PART).alerts
    return final_alerts(alerts)


BASELINE = _baseline()


def test_the_valid_records_alert():
    assert {orjson.loads(a)["subject"]["account"] for a in BASELINE} == {"RATEJSON", "RATEFRAME"}


# -- strategies ----------------------------------------------------------------------------------------------
def _big_int():
    return st.one_of(st.integers(), st.integers(min_value=2**63 - 5, max_value=2**70),
                     st.integers(min_value=-(2**70), max_value=-(2**63) + 5))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), _big_int(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=30)),
    lambda kids: st.one_of(st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=8), kids, max_size=5)),
    max_leaves=20)


def _json_text(v) -> bytes:
    return json.dumps(v).encode()  # the standard library writes integers of any size


#: one field of an event, given a value the contract refuses
WRONG = {
    "ts": st.one_of(st.text(max_size=12), st.floats(), st.integers(max_value=0), st.integers(min_value=2**62),
                    st.lists(st.integers(), max_size=2), st.just(None)),
    "venue": st.one_of(st.text(max_size=6).filter(lambda v: v not in ("SSE", "SZSE", "BSE")), st.integers(),
                       st.just(None)),
    "type": st.one_of(st.text(max_size=6).filter(lambda v: v not in ("order", "cancel", "trade", "index")),
                      st.integers()),
    "side": st.one_of(st.text(max_size=3).filter(lambda v: v not in ("B", "S")), st.integers(), st.booleans()),
    "price": st.one_of(st.text(max_size=5), st.lists(st.floats(), max_size=2), st.booleans()),
    "qty": st.one_of(st.floats(allow_nan=False).filter(lambda q: q != int(q) if q == q and abs(q) < 1e18 else True),
                     st.text(max_size=5), st.integers(min_value=10**15)),
    "account": st.one_of(st.just(""), st.just("A\x00B"), st.lists(st.text(), max_size=2), st.floats()),
    "order_id": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64), st.floats(), st.lists(
        st.integers(), max_size=2)),
}


@st.composite
def bad_events(draw):
    """An event with one field the contract refuses (a valid one would be a valid event)."""
    e = _order(T0 + draw(st.integers(0, 12 * S)), draw(st.sampled_from(["BAD1", "BAD2"])), draw(st.integers(0, 99)))
    f = draw(st.sampled_from(sorted(WRONG)))
    v = draw(WRONG[f])
    if f in ("ts", "venue") and v is None:
        del e[f]
    else:
        e[f] = v
    return e


def _deep(depth: int, leaf="[]") -> str:
    return "[" * depth + leaf + "]" * depth


def _flip(data: bytes, pos: int, bit: int) -> bytes:
    b = bytearray(data)
    b[pos % len(b)] ^= 1 << bit
    return bytes(b)


@st.composite
def damaged_frames(draw):
    kind = draw(st.sampled_from(["truncate", "flip", "flips", "byte", "append", "cut-header"]))
    f = TEMPLATE
    if kind == "truncate":
        return f[:draw(st.integers(0, len(f) - 1))]
    if kind == "flip":
        return _flip(f, draw(st.integers(0, len(f) - 1)), draw(st.integers(0, 7)))
    if kind == "flips":
        for _ in range(draw(st.integers(2, 4))):
            pos = draw(st.integers(0, len(f) - 1))
            if binary.HEADER.size + _strings_len() <= pos:  # records: keep to the non-timestamp bytes
                rec = (pos - binary.HEADER.size - _strings_len()) % binary.RECORD.itemsize
                assume(rec >= 8)
            f = _flip(f, pos, draw(st.integers(0, 7)))
        return f
    if kind == "byte":
        b = bytearray(f)
        b[draw(st.integers(0, binary.HEADER.size + _strings_len() - 1))] = draw(st.integers(0, 255))
        return bytes(b)
    if kind == "append":
        return f + draw(st.binary(min_size=1, max_size=100))
    return f[:draw(st.integers(0, binary.HEADER.size - 1))]


def _strings_len() -> int:
    return binary.HEADER.unpack_from(TEMPLATE)[-1]


class Big(str):
    """The name of one of the large records below (Hypothesis shows the name, not the megabytes)."""


BIG = {
    "a 1.5 MB field value": orjson.dumps({"ts": T0, "venue": "V" * 1_500_000, "type": "order"}),
    "a 300 KB event in an array": orjson.dumps([{"ts": T0, "venue": "NYSE", "type": "order",
                                                 "account": "A" * 300_000}]),
    "a 1 MB progress ts": b'{"kind":"progress","ts":"' + b"9" * 1_000_000 + b'"}',
    "nesting 300 deep in a field": b'{"ts":%d,"venue":%s,"type":"order"}' % (T0, _deep(300).encode()),
    "nesting 300 deep": _deep(300).encode(),
    "nesting 2000 deep": _deep(2000).encode(),
    "a 200 KB string": orjson.dumps("s" * 200_000),
    "100 KB of invalid UTF-8": b"\xff" * 100_000,
    "100 KB of NUL bytes": b"\x00" * 100_000,
    "control characters in an event": orjson.dumps([{"ts": T0, "venue": "\x01" * 100_000, "type": "order"}]),
    "CJK in a bad event": orjson.dumps([{"ts": T0, "venue": "NYSE", "type": "order", "account": "账" * 100_000}]),
    "quotes in a bad event": orjson.dumps([{"ts": T0, "venue": '"' * 100_000, "type": "order"}]),
}

bad_records = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: b"SVEV" + b),
    json_values.map(_json_text),
    st.lists(bad_events(), min_size=1, max_size=5).map(_json_text),
    bad_events().map(_json_text),
    st.builds(lambda e, cut: _json_text(e)[:cut], bad_events(), st.integers(1, 40)),
    st.just(None),  # a tombstone
    damaged_frames(),
    st.sampled_from(sorted(BIG)).map(Big),
    st.integers(1, 200).map(lambda d: _deep(d, '{"ts":1}').encode()),
)


def _is_marker(v) -> bool:
    """A valid progress marker (a record of its own kind: no events, no reject)."""
    try:
        return v is not None and orjson.loads(v).get("kind") == "progress" and type(orjson.loads(v)["ts"]) is int
    except (orjson.JSONDecodeError, AttributeError):
        return False


def _empty(v) -> bool:
    """A record that holds no event and nothing wrong: an empty JSON array, or a frame of no record."""
    if v is None:
        return False
    if v[:4] == binary.MAGIC:
        return len(v) == binary.HEADER.size and binary.HEADER.unpack_from(v)[3] == 0
    try:
        return orjson.loads(v) == []
    except orjson.JSONDecodeError:
        return False


def _check_reject(r: dict, offset: int) -> None:
    assert (r["topic"], r["partition"], r["offset"]) == (TOPIC, PART, offset), r
    assert r.get("reason"), r
    size = len(orjson.dumps(r, default=str))  # as the worker publishes it
    assert size <= REJECT_MAX, (size, {k: str(v)[:80] for k, v in r.items()})


@FAST
@given(bad=st.lists(bad_records, min_size=1, max_size=6), where=st.randoms(use_true_random=False),
       cuts=st.lists(st.integers(1, 4), min_size=12, max_size=12))
def test_bad_records_cost_only_themselves(bad, where, cuts):
    bad = [BIG[v] if isinstance(v, Big) else v for v in bad]
    bad = [v for v in bad if not _is_marker(v)]
    records = [(False, v) for v in VALID]
    for v in bad:
        records.insert(where.randrange(len(records) + 1), (True, v))
    values = [v for _, v in records] + [MARKER]
    # one record at a time: what each record gave
    st_ = new_state()
    alerts, rejects = [], []
    for off, v in enumerate(values):
        before = st_.engine.events_in
        out = st_.handle_many([(off, v)], TOPIC, PART)  # never raises
        alerts += out.alerts
        rejects += out.rejects
        mine = [r for r in out.rejects if r["offset"] == off]
        for r in out.rejects:
            _check_reject(r, r["offset"])
        if off < len(records) and records[off][0]:
            assert st_.engine.events_in > before or mine or _empty(v), (off, v[:200] if v else v)
    assert final_alerts(alerts) == BASELINE
    # any grouping of the same records: the same alerts and the same rejects
    st2 = new_state()
    alerts2, rejects2 = [], []
    pos, k = 0, 0
    while pos < len(values):
        n = cuts[k % len(cuts)]
        out = st2.handle_many(list(enumerate(values))[pos:pos + n], TOPIC, PART)
        alerts2 += out.alerts
        rejects2 += out.rejects
        pos, k = pos + n, k + 1
    assert final_alerts(alerts2) == BASELINE

    def key(r):
        return (r["offset"], r["field"], r["reason"])

    assert sorted(map(key, rejects2)) == sorted(map(key, rejects))


@pytest.mark.parametrize("name", sorted(BIG))
def test_each_large_or_deep_record_gives_a_publishable_reject(name):
    out = new_state().handle_many([(7, BIG[name])], TOPIC, PART)
    assert out.rejects
    for r in out.rejects:
        _check_reject(r, 7)


def test_bytes_after_a_frames_records_are_a_reject():
    """A frame followed by bytes its header does not announce (a header whose record count lost a bit, or a
    frame with something appended): its events are read, and the rest of the record is a reject that says
    where it starts."""
    st_ = new_state()
    out = st_.handle_many([(3, TEMPLATE + b"tail")], TOPIC, PART)
    assert st_.engine.events_in == 5
    tail = [r for r in out.rejects if r["offset"] == 3]
    assert len(tail) == 1 and str(len(TEMPLATE)) in tail[0]["reason"], out.rejects
    h = list(binary.HEADER.unpack_from(TEMPLATE))
    h[3] -= 1  # the header announces one record fewer: its checksum no longer matches, the frame is one reject
    fewer = binary.HEADER.pack(*h) + TEMPLATE[binary.HEADER.size:]
    st_ = new_state()
    out = st_.handle_many([(4, fewer)], TOPIC, PART)
    assert st_.engine.events_in == 0  # never read as other events
    assert [r["offset"] for r in out.rejects] == [4] and "checksum" in out.rejects[0]["reason"]
    assert out.rejects[0]["record_bytes"] == len(fewer)


@settings(max_examples=40, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bad=st.lists(bad_records, min_size=1, max_size=8))
def test_memory_stays_within_a_multiple_of_the_input(bad):
    bad = [BIG[v] if isinstance(v, Big) else v for v in bad]
    """tracemalloc's peak (Python objects and numpy arrays) while handling the records, against their size: a
    handler that copied a record per bad event, or kept what it rejected, would exceed it."""
    st_ = new_state()
    st_.handle_many([(0, VALID[0])], TOPIC, PART)  # warm: the registry and the decoders' tables exist
    records = [(i + 1, v) for i, v in enumerate(bad)]
    size = sum(len(v) for _, v in records if v is not None)
    tracemalloc.start()
    try:
        out = st_.handle_many(records, TOPIC, PART)
        del out
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 12 * size + 4 * 1024 * 1024, (peak, size)


# -- the file readers ------------------------------------------------------------------------------------------
def _read(path: Path):
    """Events (their line or record numbers) and rejects of a file, or the documented error for an unusable file."""
    reg, rejects, srcs = Registry(), [], []
    try:
        for b in read_events(path, reg, rejects, batch_size=7):
            srcs += b.src.tolist()
            jsonl.encode_lines(b, reg)  # every event read is one of the contract: it can be written as JSON
    except (InputError, EventFormatError) as e:  # a whole file that cannot be read: said, not raised as a crash
        return None, [], e
    return srcs, rejects, None


def _lines(data: bytes) -> set[int]:
    """The line numbers (1-based) of the non-blank lines (a UTF-8 byte order mark opening the file is no content:
    the readers accept it, so a file of only a BOM has no line)."""
    return {i + 1 for i, line in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n")) if line.strip()}


def _check_jsonl(path: Path, data: bytes) -> None:
    srcs, rejects, err = _read(path)
    if err is not None:
        return
    got = set(srcs)
    rej = {r.location for r in rejects}
    assert len(srcs) == len(got), "a line gave two events"
    assert not got & rej, ("a line gave an event and a reject", sorted(got & rej)[:5])
    assert got | rej == _lines(data), ("lines neither read nor rejected", sorted(_lines(data) - got - rej)[:5],
                                       "numbers that are no line", sorted(got | rej - _lines(data))[:5])
    for r in rejects:
        assert r.to_dict()["line"] == r.location and r.reason


@FAST
@given(data=st.one_of(st.binary(max_size=600), st.binary(max_size=300).map(lambda b: b"\x1f\x8b" + b)))
@example(data=b"\xef\xbb\xbf")  # only a byte order mark: no line (found by a fresh clone's run)
@example(data=b"\xef\xbb\xbf\n\xef\xbb\xbf")  # a BOM that does not open the file is content: rejected
def test_any_bytes_as_a_file(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("any") / "in.jsonl"
    path.write_bytes(data)
    if data[:2] == b"\x1f\x8b" or data[:4] == binary.MAGIC:
        _read(path)  # gzip, or binary frames (their own test): no exception other than the documented ones
        return
    _check_jsonl(path, data)


line_values = st.one_of(json_values.map(_json_text), bad_events().map(_json_text),
                        st.integers(0, 99).map(lambda i: orjson.dumps(_order(T0 + i * S, f"OK{i}", i))),
                        st.integers(1, 300).map(lambda d: _deep(d).encode()))


@FAST
@given(lines=st.lists(line_values, min_size=1, max_size=80), crlf=st.booleans(), blank=st.booleans())
def test_any_json_lines(lines, crlf, blank, tmp_path_factory):
    """Any JSON values as lines (more than 64 of them go through the fast polars reader first): every line is
    an event or a reject with its line number."""
    body = [x.replace(b"\n", b" ") for x in lines]
    if blank:
        body.insert(len(body) // 2, b"   ")
    data = (b"\r\n" if crlf else b"\n").join(body) + b"\n"
    path = tmp_path_factory.mktemp("lines") / "in.jsonl"
    path.write_bytes(data)
    _check_jsonl(path, data)


SVB_EVENTS = [_order(T0 + i * 10_000_000, f"ACC{i % 9}", i) for i in range(300)]


def _svb() -> bytes:
    import tempfile

    from surveil.events.io import EventWriter

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.svb"
        reg = Registry()
        b = jsonl.decode_lines([orjson.dumps(e) for e in SVB_EVENTS], 1, reg, "t", [])
        with EventWriter(p, reg, frame_size=64) as w:
            w.write(b)
        return p.read_bytes()


SVB = _svb()


@FAST
@given(cut=st.integers(0, len(SVB)), flips=st.lists(st.tuples(st.integers(0, len(SVB) - 1), st.integers(0, 7)),
                                                     max_size=3))
def test_a_truncated_or_bit_flipped_binary_file(cut, flips, tmp_path_factory):
    data = SVB
    for pos, bit in flips:
        data = _flip(data, pos, bit)
    data = data[:cut]
    path = tmp_path_factory.mktemp("svb") / "in.svb"
    path.write_bytes(data)
    srcs, rejects, err = _read(path)
    if err is not None:
        return
    for r in rejects:
        assert r.location >= 0 and r.reason and len(orjson.dumps(r.to_dict(), default=str)) <= REJECT_MAX
    assert len(srcs) == len(set(srcs))
    if not flips:  # truncated only: every whole frame read, and the cut is one reject where its frame starts
        assert (len(srcs) == len(SVB_EVENTS)) == (cut == len(SVB))
        if len(binary.MAGIC) <= cut < len(SVB):  # (fewer bytes than the magic: a file of JSON lines)
            assert [r.field for r in rejects] == ["frame"], [r.message for r in rejects]
            assert srcs == list(range(len(srcs)))



# -- what the properties found ---------------------------------------------------------------------------------
def _sha(v: bytes) -> str:
    import hashlib

    return hashlib.sha256(v).hexdigest()


@pytest.mark.parametrize("restart", [False, True])
def test_an_event_ahead_of_event_time_rejected_by_a_later_call(restart):
    """A record's event ahead of event time waits (a suspect) until later records decide; those came in a later
    poll, or after a restart from a checkpoint taken meanwhile. Its reject names its record, with the record's
    length and hash (the handler raised KeyError: it looked the record up among the current call's only)."""
    st_ = new_state()
    st_.handle_many([(0, VALID[0])], TOPIC, PART)
    ahead = orjson.dumps(_order(T0 + 3 * 3600 * S, "AHEAD", 1))
    out = st_.handle_many([(1, ahead)], TOPIC, PART)
    assert out.rejects == []  # waiting
    if restart:
        st_ = PartitionState.loads(st_.dumps(), RefData())
    out = st_.handle_many([(2, VALID[2])], TOPIC, PART)
    [r] = out.rejects
    assert (r["offset"], r["field"]) == (1, "ts") and "ahead of" in r["reason"], r
    assert (r["record_bytes"], r["record_sha256"]) == (len(ahead), _sha(ahead))
    assert orjson.loads(r["original"])["account"] == "AHEAD"


def test_suspects_an_idle_declaration_accepts_are_late_among_themselves():
    """Two events ahead of event time, the later one first, then the partition goes quiet: the declaration
    accepts both (nothing contradicts them), and the second is late after the first. Its reject comes with the
    declaration (it was left in the engine, and the next record's call raised KeyError)."""
    st_ = new_state()
    st_.handle_many([(0, VALID[2])], TOPIC, PART)
    two = orjson.dumps(_order(T0 + 2 * 3600 * S, "TWO", 2))
    one = orjson.dumps(_order(T0 + 3600 * S, "ONE", 1))
    st_.handle_many([(1, two)], TOPIC, PART)
    st_.handle_many([(2, one)], TOPIC, PART)
    out = st_.declare_idle()
    assert [(r["offset"], r["field"]) for r in out.rejects] == [(2, "ts")], out.rejects
    assert "late event" in out.rejects[0]["reason"]
    assert out.rejects[0]["record_bytes"] == len(one) and out.rejects[0]["topic"] == TOPIC
    after = orjson.dumps(_order(T0 + 2 * 3600 * S + S, "AFTER", 3))
    assert st_.handle_many([(3, after)], TOPIC, PART).rejects == []


def _damaged_order_id(frame: bytes, row: int, mask: int = 0x80) -> bytes:
    """``frame`` with bits ``mask`` flipped in the 4th byte of record ``row``'s order id: 0x80 makes '9004' the
    bytes 900\xb4 (not UTF-8), 0x10 makes it '900$' (an integer id that is no number)."""
    b = bytearray(frame)
    h = binary.HEADER.unpack_from(frame)
    version, strings = h[1], h[-1]
    b[binary.header_size(version) + strings + row * binary.RECORD.itemsize + binary.RECORD.fields["order_id"][1]
      + 3] ^= mask
    # sealed again: what a frame without checksums (versions 1-4) or a writer's bug gives; the decoder must see it
    return binary.reseal(bytes(b))


@pytest.mark.parametrize("mask", [0x80, 0x10], ids=["not-utf8", "not-a-number"])
def test_a_frame_whose_order_id_cannot_be_read_is_rejected_by_the_decoder(mask):
    """A record's order id bytes are checked when a frame is decoded. They were not: one flipped bit ('9004' ->
    '900\xb4', or '900$' for an integer id) gave an event whose order id cannot be read back. ``Batch.order_id_at`` /
    ``batch._bytes_ids_to_object`` then raise (UnicodeDecodeError, ValueError) wherever the event is used: a late
    event's reject (``Engine.event_text``), a worker's poll that also holds a JSON record (``Batch.concat``), an
    alert's sample order ids, ``surveil convert`` to JSON Lines): the decoder rejects that record (field
    ``order_id``), as the JSON readers do, and the frame's other records go on."""
    frame = _damaged_order_id(TEMPLATE, 4, mask)
    reg, rejects = Registry(), []
    b, _ = binary.decode_frame_at(frame, 0, reg, "t", 0, rejects)
    unreadable = []
    for i in range(len(b)):
        try:
            b.order_id_at(i)
        except (ValueError, UnicodeDecodeError) as e:
            unreadable.append((i, repr(e)))
    assert not unreadable, f"decoded with an order id that cannot be read: {unreadable}"
    assert (len(b), [r.field for r in rejects]) == (4, ["order_id"])


def test_a_damaged_order_id_never_stops_the_record_handler():
    """A poll with a JSON record and a frame with a damaged order id: one reject, never an exception from
    ``handle_many`` (it raised: the worker's loop stopped, and the same poll again after a restart)."""
    st_ = new_state()
    frame = _damaged_order_id(_frame([_order(T0 + 6 * S + i, f"D{i}", 9000 + i) for i in range(5)]), 4, 0x10)
    out = st_.handle_many([(0, VALID[2]), (1, frame)], TOPIC, PART)
    assert st_.engine.events_in + len(out.rejects) >= 20 + 5


def _gzip_damages() -> dict[str, bytes]:
    import gzip

    good = gzip.compress(b"".join(orjson.dumps(_order(T0 + i, "A", i)) + b"\n" for i in range(1000)))
    return {"truncated": good[: len(good) // 2], "corrupt deflate data": good[:10] + b"\xf4\x00\x00" + good[13:],
            "wrong CRC": good[:-8] + b"\x00" * 8}


@pytest.mark.parametrize("damage", sorted(_gzip_damages()))
def test_a_damaged_gzip_file_is_an_input_error(damage, tmp_path):
    """A .jsonl.gz whose compressed stream is damaged is the documented InputError naming the file (it raised
    what gzip and zlib raise, EOFError, zlib.error, gzip.BadGzipFile, and the CLI stopped with a traceback)."""
    path = tmp_path / "day.jsonl.gz"
    path.write_bytes(_gzip_damages()[damage])
    _read(path)


def test_a_huge_reference_record_gives_a_bounded_reject():
    """A reference-data record (its own topic) of 2 MB that is no object, or with a 300 KB broker id: rejected,
    and the reject the worker publishes is bounded like the feed's (it quoted the whole value twice)."""
    from kafkatools import settings as test_settings

    from surveil.stream import rejects
    from surveil.stream.worker import Worker

    w = Worker(test_settings("127.0.0.1:1"))  # not started: no broker needed
    w._apply_ref(b"SSE:A1", orjson.dumps(["x" * 2_000_000]))
    w._apply_ref(b"SSE:A2", orjson.dumps({"owner": "O", "broker": "B" * 300_000}))
    w._apply_ref(b"SSE:" + b"K" * 100_000, None)
    assert [r["field"] for r in w._ref_rejects] == ["reference", "reference"]
    assert all(len(rejects.encode(r)) <= REJECT_MAX for r in w._ref_rejects)
    assert all(len(r["reason"]) < 300 for r in w._ref_rejects)
