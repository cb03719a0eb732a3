"""Damage to a binary file stays local: frames of versions 5 and 6 carry CRC32C checksums, the reader reports a
damaged frame as one reject (its byte offset, the records it covered, how many were not read), resynchronises
at the next frame, and never reads damage as other events (docs/events.md, "Damage")."""

import gzip
import random

import numpy as np
import orjson
import pytest
from events.test_binary import sample_events

from surveil.events import binary, jsonl
from surveil.events.batch import Registry
from surveil.events.errors import EventFormatError, FrameChecksumError
from surveil.events.io import EventWriter, read_events

FRAME = 50  # events per frame
FRAMES = 40


def _write(path, n=FRAME * FRAMES, frame_size=FRAME):
    reg = Registry()
    events = sample_events(n)
    b = jsonl.decode_lines([orjson.dumps(e) for e in events], 1, reg, "x", [])
    with EventWriter(path, reg, frame_size=frame_size) as w:
        w.write(b)
    return events


def _offsets(data: bytes) -> list[int]:
    out, off = [], 0
    while off < len(data):
        out.append(off)
        off += binary.frame_length(data, off)
    return out


def _read(path, fast=True, monkeypatch=None):
    if monkeypatch is not None:
        monkeypatch.setattr(binary, "FAST", fast)
    reg, rej = Registry(), []
    got = {}
    for b in read_events(path, reg, rej):
        for src, d in zip(b.src.tolist(), jsonl.event_dicts(b, reg)):
            got[src] = d
    return got, rej


def _same_as_written(got: dict, events: list) -> None:
    """Every event read is the one written at that record number: damage is never read as another event."""
    for src, d in got.items():
        assert d == events[src], src


def test_the_writer_puts_a_frame_with_the_whole_dictionary_every_16_frames(tmp_path):
    _write(tmp_path / "d.svb")
    data = (tmp_path / "d.svb").read_bytes()
    offs = _offsets(data)
    versions = [binary.HEADER.unpack_from(data, o)[1] for o in offs]
    assert len(offs) == FRAMES
    keys = [i for i, v in enumerate(versions) if v == binary.VERSION]
    assert keys == list(range(0, FRAMES, binary.KEY_FRAME_INTERVAL))
    assert set(versions) == {binary.VERSION, binary.VERSION_DELTA}
    # each header carries the record number of its first record
    assert [binary.HEADER_CRC.unpack_from(data, o)[9] for o in offs] == list(range(0, FRAME * FRAMES, FRAME))
    # a frame with the whole dictionary holds every string so far, so it reads alone (as a self-contained frame)
    k = offs[binary.KEY_FRAME_INTERVAL]
    alone, _ = binary.decode_frame_at(data, k, Registry(), "d.svb", 0, [])
    assert len(alone) == FRAME and binary.HEADER.unpack_from(data, k)[4] == 17  # the 17 accounts of the file


@pytest.mark.parametrize("fast", [True, False])
def test_one_flipped_byte_in_the_first_frame_costs_at_most_16_frames(tmp_path, fast, monkeypatch):
    events = _write(tmp_path / "d.svb")
    data = bytearray((tmp_path / "d.svb").read_bytes())
    offs = _offsets(bytes(data))
    data[offs[1] - 100] ^= 0x10  # a record of frame 0
    (tmp_path / "d.svb").write_bytes(data)
    got, rej = _read(tmp_path / "d.svb", fast, monkeypatch)
    _same_as_written(got, events)
    lost = binary.KEY_FRAME_INTERVAL * FRAME
    assert sorted(got) == list(range(lost, FRAME * FRAMES))  # from the next frame with the whole dictionary on
    assert [r.field for r in rej] == ["frame"] * binary.KEY_FRAME_INTERVAL
    first = rej[0]
    assert first.value == 0 and first.location == 0 and first.extra["records_lost"] == FRAME
    assert "checksum mismatch" in first.reason and "records 0 to 49" in first.reason
    assert all("delta frame after a damaged frame" in r.reason for r in rej[1:])
    assert sum(r.extra["records_lost"] for r in rej) == lost
    assert [r.value for r in rej] == offs[:binary.KEY_FRAME_INTERVAL]  # the byte offset of each frame


@pytest.mark.parametrize("where", ["count", "magic", "version", "first"])
def test_a_damaged_header_is_skipped_to_the_next_frame_and_the_lost_records_are_counted(tmp_path, where):
    events = _write(tmp_path / "d.svb")
    data = bytearray((tmp_path / "d.svb").read_bytes())
    offs = _offsets(bytes(data))
    at = offs[20]  # a delta frame
    data[at + {"count": 9, "magic": 1, "version": 4, "first": 33}[where]] ^= 0x04
    (tmp_path / "d.svb").write_bytes(data)
    got, rej = _read(tmp_path / "d.svb")
    _same_as_written(got, events)
    # frame 20 is lost, and so are the delta frames after it up to frame 32 (which has the whole dictionary)
    assert sorted(got) == list(range(0, 20 * FRAME)) + list(range(32 * FRAME, FRAMES * FRAME))
    assert rej[0].value == at and rej[0].location == 20 * FRAME and rej[0].extra["records_lost"] == FRAME
    assert rej[0].extra["bytes_skipped"] == offs[21] - at
    assert f"reading resumed at byte {offs[21]}" in rej[0].reason and "50 records not read" in rej[0].reason
    assert len(rej) == 12 and sum(r.extra["records_lost"] for r in rej) == 12 * FRAME


def test_damage_anywhere_is_never_read_as_other_events(tmp_path):
    """Random bytes flipped, cut out or added anywhere in a file: every event read is one that was written, at
    its record number; every lost record is counted (or the reject says the count is not known)."""
    events = _write(tmp_path / "d.svb")
    clean = (tmp_path / "d.svb").read_bytes()
    rng = random.Random(5)
    for trial in range(60):
        data = bytearray(clean)
        for _ in range(rng.randrange(1, 4)):
            kind = rng.random()
            i = rng.randrange(len(data))
            if kind < 0.7:
                data[i] ^= 1 << rng.randrange(8)
            elif kind < 0.85:
                del data[i:i + rng.randrange(1, 300)]
            else:
                data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 100)))
        (tmp_path / "x.svb").write_bytes(data)
        got, rej = _read(tmp_path / "x.svb")
        _same_as_written(got, events)
        assert rej, trial
        counted = [r.extra.get("records_lost") for r in rej]
        if None not in counted:
            assert len(got) + sum(counted) == len(events), trial


def test_a_gzipped_file_resynchronises_too(tmp_path):
    events = _write(tmp_path / "d.svb")
    data = bytearray((tmp_path / "d.svb").read_bytes())
    data[_offsets(bytes(data))[3] + 60] ^= 1
    (tmp_path / "d.svb.gz").write_bytes(gzip.compress(bytes(data)))
    got, rej = _read(tmp_path / "d.svb.gz")
    _same_as_written(got, events)
    assert len(got) == len(events) - 13 * FRAME and len(rej) == 13


def test_a_truncated_file_loses_its_last_frame_only(tmp_path):
    events = _write(tmp_path / "d.svb")
    data = (tmp_path / "d.svb").read_bytes()
    (tmp_path / "t.svb").write_bytes(data[:-10])
    got, rej = _read(tmp_path / "t.svb")
    _same_as_written(got, events)
    assert len(got) == len(events) - FRAME
    assert len(rej) == 1 and "truncated frame" in rej[0].reason and rej[0].extra["records_lost"] == FRAME


def test_an_old_version_frame_after_checked_frames_is_damage_not_events(tmp_path):
    """A flipped bit may turn version 5 into 1 or 4 (frames without checksums): after frames with checksums, such a
    frame is not believed."""
    events = _write(tmp_path / "d.svb")
    data = bytearray((tmp_path / "d.svb").read_bytes())
    at = _offsets(bytes(data))[16]  # a frame with the whole dictionary (version 5)
    data[at + 4] ^= 0x01  # version 5 -> 4
    (tmp_path / "d.svb").write_bytes(data)
    got, rej = _read(tmp_path / "d.svb")
    _same_as_written(got, events)
    assert "no checksum" in rej[0].reason and len(got) == len(events) - 16 * FRAME


def test_a_self_contained_frame_with_a_bad_checksum_is_an_error_for_the_stream():
    """The partition stage decodes each feed record with decode_frame_at, which turns an EventFormatError into
    a reject of that record (surveil/stream/partition.py)."""
    reg = Registry()
    b = jsonl.decode_lines([orjson.dumps(e) for e in sample_events(20)], 1, reg, "x", [])
    for frame in (binary.encode_frame(b, reg), binary.encode_frame_fast(b, reg)):
        assert binary.HEADER.unpack_from(frame, 0)[1] == binary.VERSION
        assert len(binary.decode_frame_at(frame, 0, Registry(), "t:0@0", 0, [])[0]) == 20
        for i in (9, 40, 60, len(frame) - 1):  # (a byte of the version: "unsupported frame version")
            bad = bytearray(frame)
            bad[i] ^= 0x80
            with pytest.raises(FrameChecksumError, match="checksum mismatch") as e:
                binary.decode_frame_at(bytes(bad), 0, Registry(), "t:0@7", 0, [],
                                       into=binary.FrameBlock(100) if binary.FAST else None)
            assert isinstance(e.value, EventFormatError) and "t:0@7" in str(e.value)


def test_crc32c_is_castagnoli_on_every_kind_of_buffer():
    assert binary.crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C
    big = np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    want = binary.crc32c(big[7:250_007])
    for buf in (big, bytearray(big), memoryview(big), np.frombuffer(big, np.uint8)):
        assert binary.crc32c(buf, 7, 250_007) == want
        assert binary.crc32c(buf, 7, 107) == binary.crc32c(big[7:107])
    assert binary.CRC_IMPLEMENTATION == "c"  # google-crc32c's compiled code, not its pure-Python fallback
