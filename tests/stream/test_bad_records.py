"""One feed record never stops, loops or exhausts a worker: a tombstone is a reject; a record of many bad events
gives rejects that carry each event's own bytes (bounded), not the record again; a frame's reject stays far
below the broker's message size. The partition goes on with the next record."""

import orjson
from evtools import T0, S, order

from surveil.engine import load_config
from surveil.engine.refdata import RefData
from surveil.events import binary
from surveil.events.batch import Registry
from surveil.stream.partition import REJECT_KEEP, PartitionState

SRC = ("f.sse", 0)


def state():
    return PartitionState(f"{SRC[0]}:{SRC[1]}", load_config(), RefData(), 2)


def good(n, start=0):
    return orjson.dumps([order(T0 + (start + i) * S // 1000, f"A{i % 7}", oid=start + i) for i in range(n)])


def test_a_tombstone_is_a_reject_and_the_partition_goes_on():
    st = state()
    out = st.handle_many([(0, good(10)), (1, None), (2, good(10, 10))], *SRC)
    assert [(r["offset"], r["field"]) for r in out.rejects] == [(1, "record")]
    assert "tombstone" in out.rejects[0]["reason"]
    assert st.offset == 2 and st.engine.events_in == 20
    again = state().handle_many([(0, None)], *SRC)  # alone, as the first record of a restart
    assert len(again.rejects) == 1


def test_a_record_of_bad_events_gives_bounded_rejects_with_each_events_own_bytes():
    bad = [{"ts": T0 + i, "venue": "NYSE", "type": "order", "account": f"X{i}", "order_id": i,
            "pad": "p" * 100} for i in range(2_000)]
    record = orjson.dumps(bad)
    assert len(record) > 300_000
    out = state().handle_many([(5, record)], *SRC)
    assert len(out.rejects) == 2_000
    sizes = [len(orjson.dumps(r)) for r in out.rejects]
    assert max(sizes) < 1_500  # each: its event, the reason and where the record is (was the whole 400 KB)
    assert sum(sizes) < 4 * len(record)  # linear in the record, not events x record
    first = out.rejects[0]
    assert orjson.loads(first["original"])["account"] == "X0"  # the bad event itself
    assert first["record_bytes"] == len(record) and len(first["record_sha256"]) == 64
    assert (first["topic"], first["partition"], first["offset"]) == ("f.sse", 0, 5)


def test_a_large_frame_with_one_bad_byte_gives_a_small_reject():
    reg = Registry()
    from surveil.events import jsonl

    evs = [order(T0 + i, f"ACC{i % 50}", oid=i) for i in range(12_000)]
    b = jsonl.decode_lines([orjson.dumps(e) for e in evs], 1, reg, "t", [])
    frame = bytearray(binary.encode_frame(b, reg))
    assert len(frame) > 300_000
    rec = state()
    out = rec.handle_many([(0, bytes(frame))], *SRC)
    assert out.rejects == []
    # one bad byte: the frame's checksum fails, one small reject of the record (docs/events.md, "Checksums")
    trial = bytearray(frame)
    trial[len(frame) // 2] ^= 0x7F
    got = state().handle_many([(0, bytes(trial))], *SRC)
    assert [r["field"] for r in got.rejects] == ["record"] and "checksum mismatch" in got.rejects[0]["reason"]
    assert len(orjson.dumps(got.rejects[0])) < 2 * REJECT_KEEP + 4096
    # damage one venue byte of a record in the middle (a venue code that does not exist), behind checksums
    # that agree (as a faulty producer would write it)
    damaged = None
    for pos in range(len(frame) // 2, len(frame)):
        trial = bytearray(frame)
        trial[pos] = 0x7F
        got = state().handle_many([(0, binary.reseal(trial))], *SRC)
        if len(got.rejects) == 1 and got.rejects[0]["field"] != "record":
            damaged = got
            break
    assert damaged is not None, "no single byte gave one event reject"
    r = damaged.rejects[0]
    assert len(orjson.dumps(r)) < 2 * REJECT_KEEP + 4096 < 1_000_000  # publishable on a default broker
    assert r["record_bytes"] == len(frame)


def test_an_event_ahead_rejected_in_a_later_call_names_its_record():
    """An event far ahead of event time is decided when later records contradict it, maybe polls later: its
    reject still carries the event and the offset of its record (it was a KeyError that stopped the worker)."""
    st = state()
    st.handle_many([(0, good(5))], *SRC)
    ahead = orjson.dumps([order(T0 + 86_400 * S * 400, "AHEAD", oid="x")])
    assert st.handle_many([(1, ahead)], *SRC).rejects == []  # waits for corroboration
    out = st.handle_many([(2, good(5, 5))], *SRC)  # two later events keep event time: rejected now
    (r,) = out.rejects
    assert (r["field"], r["offset"], r["topic"]) == ("ts", 1, "f.sse")
    assert orjson.loads(r["original"])["account"] == "AHEAD"


def test_a_progress_marker_far_ahead_is_a_reject_and_does_not_make_the_day_late():
    """A damaged progress marker (a year 2099 value, or any time more than a day after now) would make every later
    event late: it is a reject, and the events after it are processed. (A marker days after the partition's own
    last event is fine: a quiet partition gets the feed's end-of-day markers.)"""
    import time

    for bad_ts in (4_000_000_000 * 10**9, time.time_ns() + 3 * 86_400 * S):
        st = state()
        st.handle_many([(0, good(5))], *SRC)
        out = st.handle_many([(1, orjson.dumps({"kind": "progress", "ts": bad_ts})), (2, good(5, 5))], *SRC)
        assert [(r["offset"], r["field"]) for r in out.rejects] == [(1, "record")]
        assert "progress marker" in out.rejects[0]["reason"]
        assert st.engine.events_in == 10 and not [r for r in out.rejects if r["field"] == "ts"]
