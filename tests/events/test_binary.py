import numpy as np
import orjson

from surveil.events import binary, jsonl
from surveil.events.batch import Registry
from surveil.events.io import EventWriter, read_events


def sample_events(n=500, v2=True):
    """Events of every type with every optional field; ``v2``: with the contract's version 2 (indicative events,
    match ids on most trades: string or integer)."""
    out = []
    types = ("order", "cancel", "trade", "index", "indicative") if v2 else ("order", "cancel", "trade", "index")
    for i in range(n):
        t = types[i % len(types)]
        d = {"ts": 1708306200000000000 + i, "venue": ("SSE", "SZSE", "BSE")[i % 3], "type": t}
        if t == "index":
            d.update(symbol="000001", price=round(2886.59 + i / 100, 2))
        elif t == "indicative":
            d.update(symbol=f"60{i % 3 * 3:04d}", price=round(10 + i / 100, 2))  # some of the orders' symbols
            if i % 3:
                d["qty"] = 100 * (i % 7)
        else:
            d.update(account=f"A{i % 17}", symbol=f"60{i % 9:04d}")
            if t != "cancel":
                d.update(side="BS"[i % 2], price=round(10 + i / 100, 2), qty=100 * (i % 5 + 1))
            d["order_id"] = i if i % 2 else f"X{i}"
            if i % 5 == 0:
                d["owner"] = f"M{i % 3}"
            if i % 7 == 0:
                d["broker"] = "B7"
            if t == "trade":
                d["aggressor"] = bool(i % 3)
                if v2 and i % 4 != 1:
                    d["match_id"] = f"M{i // 2}" if i % 3 else i // 2
        if i % 11:
            d["seq"] = i
        out.append({k: d[k] for k in jsonl.FIELDS if k in d})  # the contract's field order
    return out


def test_jsonl_to_binary_to_jsonl_is_lossless(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sample_events()))
    reg, rej = Registry(), []
    with EventWriter(tmp_path / "a.svb", reg, frame_size=64) as w:
        for b in read_events(src, reg, rej):
            w.write(b)
    reg2 = Registry()
    with EventWriter(tmp_path / "b.jsonl", reg2) as w:
        for b in read_events(tmp_path / "a.svb", reg2, rej):
            w.write(b)
    assert not rej
    assert (tmp_path / "b.jsonl").read_bytes() == src.read_bytes()
    # and binary -> jsonl -> binary is byte-identical
    reg3 = Registry()
    with EventWriter(tmp_path / "c.svb", reg3, frame_size=64) as w:
        for b in read_events(tmp_path / "b.jsonl", reg3, rej):
            w.write(b)
    assert (tmp_path / "c.svb").read_bytes() == (tmp_path / "a.svb").read_bytes()


def test_bad_records_are_rejected_and_kept(tmp_path):
    reg, rej = Registry(), []
    b = jsonl.decode_lines([orjson.dumps(e) for e in sample_events(8, v2=False)], 1, reg, "x", rej)
    frame = bytearray(binary.encode_frame(b, reg))
    rec = np.frombuffer(frame, dtype=binary.RECORD, count=len(b), offset=len(frame) - len(b) * 76).copy()
    rec["venue"][2] = 9
    rec["qty"][4] = -1
    frame[len(frame) - len(b) * 76:] = rec.tobytes()
    frame = binary.reseal(frame)  # damage made on purpose behind checksums that agree: the records' own checks
    got = list(binary.decode_frames(bytes(frame), reg, "f.svb", rej))
    assert sum(len(x) for x in got) == 6
    assert sorted((r.location, r.field) for r in rej) == [(2, "venue"), (4, "qty")]
    assert all(r.raw for r in rej) and "record 2" in sorted(rej, key=lambda r: r.location)[0].message


def test_truncated_frame_is_a_reject_not_a_crash(tmp_path):
    reg, rej = Registry(), []
    b = jsonl.decode_lines([orjson.dumps(e) for e in sample_events(8)], 1, reg, "x", rej)
    frame = binary.encode_frame(b, reg)
    data = frame + frame[:-10]
    got = list(binary.decode_frames(data, reg, "t.svb", rej))
    assert sum(len(x) for x in got) == 8
    assert len(rej) == 1 and rej[0].field == "frame" and "truncated" in rej[0].reason


def test_files_use_delta_frames_and_a_delta_frame_alone_is_a_clear_error(tmp_path):
    from surveil.events.errors import EventFormatError

    reg, rej = Registry(), []
    b = jsonl.decode_lines([orjson.dumps(e) for e in sample_events(200)], 1, reg, "x", rej)
    with EventWriter(tmp_path / "d.svb", reg, frame_size=50) as w:
        w.write(b)
    data = (tmp_path / "d.svb").read_bytes()
    v1 = b"".join(binary.encode_frame(b.take(slice(i, i + 50)), reg) for i in range(0, 200, 50))
    assert len(data) < len(v1)  # strings are written once per file, not once per frame
    got = list(read_events(tmp_path / "d.svb", Registry(), rej))
    assert sum(len(x) for x in got) == 200 and not rej
    second = binary.frame_length(data, 0)
    import pytest

    with pytest.raises(EventFormatError, match="delta frame"):
        binary.decode_frame_at(data, second, Registry(), "d.svb", 50, [])
