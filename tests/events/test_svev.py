"""The compiled frame decoder (surveil/events/_svev.c) against the numpy reference decoder: the same
columns, the same rejects with the same reasons, the same errors, and the same ids in the registry."""

import pickle
import random

import numpy as np
import orjson
import pytest
from events.test_binary import sample_events

from surveil.events import binary, jsonl
from surveil.events.batch import Registry
from surveil.events.errors import EventFormatError
from surveil.events.io import EventWriter, read_events


def test_the_compiled_decoder_is_built():
    # setup.py builds it in `pip install -e .`; without it every binary frame goes through numpy (slower)
    assert binary.FAST, "surveil.events._svev is not built: run `pip install -e .` (needs a C compiler)"


def _decode(frames, fast, monkeypatch, reg=None, restore_after=None, index_symbols_only=False):
    monkeypatch.setattr(binary, "FAST", fast)
    reg = reg or Registry()
    out = []
    for i, f in enumerate(frames):
        if restore_after is not None and i == restore_after:  # a restart: the bytes caches start empty
            reg = pickle.loads(pickle.dumps(reg))
        rej = []
        try:
            b, end = binary.decode_frame_at(f, 0, reg, f"t:0@{i}", 0, rej, index_symbols_only=index_symbols_only)
            cols = {k: v.tolist() for k, v in b.columns().items()}
            out.append(("ok", end, cols, [(r.location, r.field, r.value, r.reason, r.raw) for r in rej]))
        except EventFormatError as e:
            out.append(("error", str(e)))
    names = {k: list(getattr(reg, k).names) for k in ("accounts", "symbols", "owners", "brokers")}
    return out, names


def _frames(seed, n_frames=40):
    rng = random.Random(seed)
    reg = Registry()
    events = sample_events(600)
    for e in events:  # more distinct strings, some of them not ASCII
        if "account" in e and rng.random() < 0.3:
            e["account"] = f"账户{rng.randrange(50)}"
    b = jsonl.decode_lines([orjson.dumps(e) for e in events], 1, reg, "x", [])
    frames = []
    for _ in range(n_frames):
        lo = rng.randrange(0, len(b) - 1)
        frame = bytearray(binary.encode_frame(b.take(slice(lo, lo + rng.randrange(1, 80))), reg))
        _, version, size, n, *_ = binary.HEADER.unpack_from(frame, 0)
        if size == 76 and rng.random() < 0.2:  # a frame of contract version 1, as written before
            frame = bytearray(binary.reseal(frame, 1))
            version = 1
        elif rng.random() < 0.2:  # a frame of version 3 (contract version 2 before checksums)
            frame = bytearray(binary.reseal(frame, 3))
            version = 3
        dt = binary.record_dtype(version, size)
        rec = np.frombuffer(frame, dtype=dt, count=n, offset=len(frame) - n * size).copy()
        damage = [("venue", 7), ("etype", 9), ("etype", 5), ("side", 3), ("side", 0), ("qty", -5), ("price", 0),
                  ("price", -1), ("ts", 5), ("ts", 2**62), ("account", 0xFFFFFFFF),
                  ("account", 10**6), ("symbol", 0xFFFFFFFF), ("symbol", 10**5),
                  ("owner", 4000), ("broker", 77), ("flags", 0), ("etype", 4)]
        if size == 104:  # a match id on another type than trade, or none on a trade
            damage += [("mflags", 1), ("mflags", 0), ("etype", 0)]
        for _ in range(rng.randrange(0, 4)):  # damage some records
            i = rng.randrange(n)
            f, v = rng.choice(damage)
            rec[f][i] = v
        frame[len(frame) - n * size:] = rec.tobytes()
        kind = rng.random()
        if kind < 0.05:  # a string table that is not UTF-8
            p = binary.header_size(version)
            if binary.HEADER.unpack_from(frame, 0)[-1]:
                frame[p] = 0xFF
        elif kind < 0.1:  # a string table with another count than the header's
            head = list(binary.HEADER.unpack_from(frame, 0))
            head[4] += 1
            frame[:binary.HEADER.size] = binary.HEADER.pack(*head)
        if kind >= 0.16:  # the damage above made on purpose, behind checksums that agree (the records' checks)
            frame = bytearray(binary.reseal(frame))
        elif kind >= 0.13:  # a flipped bit: a checksum mismatch (versions 5 and 6)
            frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
        elif kind >= 0.1:
            frame = binary.reseal(frame)[:-7]  # truncated
        else:
            frame = bytearray(binary.reseal(frame))
        frames.append(bytes(frame))
    return frames


@pytest.mark.parametrize("seed", range(8))
def test_compiled_and_numpy_decoders_agree_on_valid_and_damaged_frames(seed, monkeypatch):
    if not binary.FAST:
        pytest.fail("surveil.events._svev is not built")
    frames = _frames(seed)
    fast, fast_names = _decode(frames, True, monkeypatch)
    ref, ref_names = _decode(frames, False, monkeypatch)
    assert fast == ref
    assert fast_names == ref_names  # the same ids, assigned in the same order
    kinds = {x[0] for x in ref}
    assert "ok" in kinds and any(x[0] == "ok" and x[3] for x in ref)  # the damage did reach some records
    # after a restore from a checkpoint the caches start empty and fill again: still the same ids
    restored, restored_names = _decode(frames, True, monkeypatch, restore_after=len(frames) // 2)
    assert restored == ref and restored_names == ref_names


def test_both_decoders_read_a_file_of_delta_frames_alike(tmp_path, monkeypatch):
    reg = Registry()
    b = jsonl.decode_lines([orjson.dumps(e) for e in sample_events(700)], 1, reg, "x", [])
    with EventWriter(tmp_path / "d.svb", reg, frame_size=37) as w:
        w.write(b)
    got = {}
    for fast in (True, False):
        monkeypatch.setattr(binary, "FAST", fast)
        r2, rej = Registry(), []
        batches = list(read_events(tmp_path / "d.svb", r2, rej))
        got[fast] = ([{k: v.tolist() for k, v in x.columns().items()} for x in batches], r2.accounts.names, rej)
    assert got[True] == got[False] and sum(len(x["ts"]) for x in got[True][0]) == 700


def test_a_string_known_before_the_frame_keeps_its_id(monkeypatch):
    """Strings interned elsewhere first (reference data, the engine) are found by the bytes cache's miss
    path, not given a second id."""
    monkeypatch.setattr(binary, "FAST", True)
    reg = Registry()
    b = jsonl.decode_lines([orjson.dumps(e) for e in sample_events(40)], 1, reg, "x", [])
    frame = binary.encode_frame(b, reg)
    reg2 = Registry()
    first = reg2.accounts.intern("A3")
    got, _ = binary.decode_frame_at(frame, 0, reg2, "t", 0, [])
    names = [reg2.accounts.names[i] for i in got.account.tolist() if i >= 0]
    assert reg2.accounts.ids["A3"] == first == 0
    assert names.count("A3") == sum(1 for e in sample_events(40) if e.get("account") == "A3")
    assert len(set(reg2.accounts.names)) == len(reg2.accounts.names)


def test_a_file_of_self_contained_frames_reads_back_with_either_decoder(tmp_path, monkeypatch):
    """Files are read with a frame dictionary (for delta frames), but a version-1 frame in a file (Kafka
    record values saved one after the other) indexes its own tables only."""
    reg = Registry()
    events = sample_events(300)
    b = jsonl.decode_lines([orjson.dumps(e) for e in events], 1, reg, "x", [])
    (tmp_path / "v1.svb").write_bytes(b"".join(binary.encode_frame(b.take(slice(i, i + 40)), reg)
                                              for i in range(0, 300, 40)))
    for fast in (True, False):
        monkeypatch.setattr(binary, "FAST", fast)
        r2, rej = Registry(), []
        got = list(read_events(tmp_path / "v1.svb", r2, rej))
        assert not rej
        accounts = [r2.accounts.names[i] if i >= 0 else None for x in got for i in x.account.tolist()]
        assert accounts == [e.get("account") for e in events]


def test_the_c_functions_refuse_out_of_range_arguments():
    """binary.py checks frames before calling C, but the C side checks its own bounds too (a wrong call is a
    ValueError, not a write past a buffer)."""
    if not binary.FAST:
        pytest.fail("surveil.events._svev is not built")
    from surveil.events import _svev

    tables = tuple(_svev.StrTable() for _ in range(4))
    ids, starts, out = np.empty(4, np.int32), np.empty(5, np.int64), np.empty(64, np.uint8)
    big = 2**62
    with pytest.raises(ValueError):
        _svev.lookup_strings(tables, b"a\x00b", 0, 3, (big, big, big, big), ids, starts)
    with pytest.raises(ValueError):
        _svev.lookup_strings(tables, b"a\x00b", 2, 3, (1, 0, 0, 0), ids, starts)
    luts = tuple(np.empty(0, np.int32) for _ in range(4))
    with pytest.raises(ValueError):
        _svev.decode_records(b"x" * 76, 0, 2**63 // 53 + 1, luts, out, (0, 2, 3, 4, 4, 32, 1, 0, 1))
    with pytest.raises(ValueError):
        tables[0].add_from(b"ab", np.array([0, 2**63 - 1], np.int64), np.array([0], np.int64), np.array([0], np.int32))
    tables[0].add(b"", 7)  # the empty string, with nothing else in the table yet
    assert len(tables[0]) == 1


def test_a_table_holding_only_an_empty_string_reads_back(monkeypatch):
    """An empty blob with a count of one is one empty string (binary frames may carry "" from another
    gateway; the partition stage then exports it to the owner topic in a frame of its own)."""
    reg = Registry()
    b = jsonl.decode_lines([orjson.dumps({"ts": 1708306200000000000, "venue": "SSE", "type": "cancel",
                                          "account": "A1"})], 1, reg, "x", [])
    b.account[:] = reg.accounts.intern("")
    frame = binary.encode_frame(b, reg)
    assert binary.HEADER.unpack_from(frame, 0)[4:] == (1, 0, 0, 0, 0)  # one account string, an empty blob
    for fast in (True, False):
        monkeypatch.setattr(binary, "FAST", fast)
        r2, rej = Registry(), []
        got, _ = binary.decode_frame_at(frame, 0, r2, "t", 0, rej)
        assert len(got) == 1 and not rej and r2.accounts.names[int(got.account[0])] == ""


@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_encoder_gives_frames_with_the_same_events(seed, monkeypatch):
    """encode_frame_fast (tables in first-seen order, built in C) and encode_frame (sorted tables) decode to the
    same events, with either decoder, also for strings the bytes cache has not seen (interned elsewhere)."""
    if not binary.FAST:
        pytest.fail("surveil.events._svev is not built")
    rng = random.Random(seed)
    events = sample_events(400)
    for e in events:
        if "account" in e and rng.random() < 0.3:
            e["account"] = f"账户{rng.randrange(40)}"
        if rng.random() < 0.2:
            e["owner"] = f"M{rng.randrange(5)}"
    reg = Registry()
    reg.owners.intern("only interned, never in a frame")
    b = jsonl.decode_lines([orjson.dumps(e) for e in events], 1, reg, "x", [])
    b.owner[rng.randrange(len(b))] = reg.owners.ids["only interned, never in a frame"]
    b.account[rng.randrange(len(b))] = reg.accounts.intern("")  # an empty string in a table
    for lo in range(0, len(b), 57):
        part = b.take(slice(lo, lo + rng.randrange(1, 90)))
        fast, ref = binary.encode_frame_fast(part, reg), binary.encode_frame(part, reg)
        assert binary.HEADER.unpack_from(fast, 0)[3:8] == binary.HEADER.unpack_from(ref, 0)[3:8]
        for decode_fast in (True, False):
            monkeypatch.setattr(binary, "FAST", decode_fast)
            got = []
            for frame in (fast, ref):
                r2 = Registry()
                x, _ = binary.decode_frame_at(frame, 0, r2, "t", 0, [])
                cols = {k: v.tolist() for k, v in x.columns().items()}
                for c, names in (("account", r2.accounts.names), ("symbol", r2.symbols.names),
                                 ("owner", r2.owners.names), ("broker", r2.brokers.names)):
                    cols[c] = [names[i] if i >= 0 else None for i in cols[c]]
                got.append(cols)
            assert got[0] == got[1]
            monkeypatch.setattr(binary, "FAST", True)
    one = b.take(slice(0, 1))
    one.account[:] = reg.accounts.ids[""]
    one.symbol[:] = one.owner[:] = one.broker[:] = -1
    assert binary.HEADER.unpack_from(binary.encode_frame_fast(one, reg), 0)[4:] == (1, 0, 0, 0, 0)


def test_intern_list_gives_the_ids_of_interning_one_by_one():
    """intern_list interns a list's new strings in bulk; the ids are those of intern() called in list order."""
    from surveil.events.batch import Interner

    rng = random.Random(3)
    for _ in range(200):
        pool = [f"s{i}" for i in range(12)] + [None]
        known = rng.sample(pool[:-1], rng.randrange(0, 5))
        values = [rng.choice(pool) for _ in range(rng.randrange(0, 15))]
        a, b = Interner(), Interner()
        for k in known:
            a.intern(k)
            b.intern(k)
        got = a.intern_list(values).tolist()
        want = [b.intern(v) if v is not None else -1 for v in values]
        assert got == want and a.names == b.names and a.ids == b.ids


@pytest.mark.parametrize("seed", range(6))
def test_frames_decoded_into_one_block_equal_frames_decoded_alone(seed, monkeypatch):
    """The partition stage decodes a poll's frames into one FrameBlock: every frame gives the same batch (and
    rejects) as alone, valid frames are consecutive views of the block, and the registry gets the same ids."""
    if not binary.FAST:
        pytest.fail("surveil.events._svev is not built")
    frames = _frames(seed)
    alone, alone_names = _decode(frames, True, monkeypatch)
    reg = Registry()
    block = binary.FrameBlock(sum(binary.frame_rows(f) for f in frames))
    out, spans = [], []
    for i, f in enumerate(frames):
        rej = []
        lo = block.row
        try:
            b, end = binary.decode_frame_at(f, 0, reg, f"t:0@{i}", 0, rej, into=block)
        except EventFormatError as e:
            out.append(("error", str(e)))
            continue
        out.append(("ok", end, {k: v.tolist() for k, v in b.columns().items()},
                    [(r.location, r.field, r.value, r.reason, r.raw) for r in rej]))
        if not rej:  # every row valid: the batch is the block's rows, no copy
            assert np.shares_memory(b.ts, block.cols["ts"]) and block.row - lo == len(b)
            spans.append((lo, block.row, b))
    names = {k: list(getattr(reg, k).names) for k in ("accounts", "symbols", "owners", "brokers")}
    assert out == alone and names == alone_names
    assert len(spans) > 3
    lo, hi, b = spans[0]
    joined = block.batch(lo, hi)
    assert {k: v.tolist() for k, v in joined.columns().items()} == {k: v.tolist() for k, v in b.columns().items()}


def test_a_block_too_small_for_a_frame_decodes_it_alone():
    if not binary.FAST:
        pytest.fail("surveil.events._svev is not built")
    reg = Registry()
    b = jsonl.decode_lines([orjson.dumps(e) for e in sample_events(30)], 1, reg, "x", [])
    frame = binary.encode_frame(b.take(slice(10, 30)), reg)
    block = binary.FrameBlock(1)
    b, _ = binary.decode_frame_at(frame, 0, Registry(), "t:0@0", 0, [], into=block)
    assert block.row == 0 and len(b) == binary.frame_rows(frame) == 20
    assert binary.frame_rows(b"SVEV") == 0 and binary.frame_rows(frame[:binary.HEADER_CRC.size + 76]) == 1
    assert binary.HEADER.unpack_from(frame, 0)[2] == 104  # a bound: the records may be longer than 76 bytes


def test_key_partitions_is_kafkas_default_partitioner():
    """Owner-topic partitions from the compiled murmur2 equal aiokafka's (the Java client's) partitioner."""
    if not binary.FAST:
        pytest.fail("surveil.events._svev is not built")
    from aiokafka.partitioner import murmur2

    from surveil.events import _svev
    from surveil.stream.partition import owner_partitions_of

    rng = random.Random(5)
    names = ["", "a", "ab", "abc", "abcd", "abcde", "宁波灵均", "SSE:A000123"] + [
        "".join(rng.choice("abcXYZ:09灵均-") for _ in range(rng.randrange(0, 40))) for _ in range(3000)]
    for n in (1, 3, 4, 12):
        want = [(murmur2(s.encode()) & 0x7FFFFFFF) % n for s in names]
        assert owner_partitions_of(names, n).tolist() == want
    with pytest.raises(ValueError):
        _svev.key_partitions(["a"], 0, np.empty(1, np.int32))
    with pytest.raises(ValueError):
        _svev.key_partitions(["a", "b"], 4, np.empty(1, np.int32))


def test_strtable_intern_refuses_bad_arguments():
    if not binary.FAST:
        pytest.fail("surveil.events._svev is not built")
    from surveil.events import _svev

    t = _svev.StrTable()
    starts, which = np.array([0, 2, 4], np.int64), np.array([0, 1], np.int64)
    names, ids, out = [], {None: -1}, np.empty(2, np.int32)
    with pytest.raises(ValueError):  # strs and which differ
        t.intern(["a"], b"a\x00b\x00", starts, which, names, ids, out)
    with pytest.raises(ValueError):  # offsets out of the buffer
        t.intern(["a", "b"], b"a\x00b\x00", np.array([0, 2, 99], np.int64), which, names, ids, out)
    t.intern(["a", "b"], b"a\x00b\x00", starts, which, names, ids, out)
    assert names == ["a", "b"] and ids == {None: -1, "a": 0, "b": 1} and out.tolist() == [0, 1]


def test_the_rule_counting_functions_check_their_arguments():
    if not binary.FAST:
        pytest.fail("surveil.events._svev is not built")
    from surveil.events import _svev

    orders, cancels, crossed = np.zeros(4, np.int64), np.zeros(4, np.int64), np.empty(3, np.int64)
    with pytest.raises(ValueError):  # an order of account key 9 with counts for 4 keys: nothing counted
        _svev.count_day(np.array([1, 9, 2], np.int64), np.array([1, 1, 1], np.uint8), orders, cancels, 2, 1, 2, crossed)
    assert not orders.any()
    # a trade (etype 0) of key 9 is not counted, so not checked; key 1 reaches 2 at its second message (row 2)
    assert _svev.count_day(np.array([1, 9, 1], np.int64), np.array([1, 0, 2], np.uint8), orders, cancels, 2, 1, 2,
                           crossed) == 1
    assert crossed[0] == 2 and orders.tolist() == [0, 1, 0, 0] and cancels.tolist() == [0, 1, 0, 0]
    flags, scratch = np.zeros(4, np.uint8), np.zeros(4, np.int32)
    outs = [np.empty(3, np.int64) for _ in range(4)]
    keys = np.array([1, 1, 2], np.int64)
    assert _svev.second_counts(keys, np.array([5, 4, 6], np.int64), flags, 2, scratch, *outs) == -1  # not in order
    with pytest.raises(ValueError):
        _svev.second_counts(np.array([1, 7, 2], np.int64), np.array([4, 5, 6], np.int64), flags, 2, scratch, *outs)
    flags[2] = 1  # an alerted account: its groups too
    assert _svev.second_counts(keys, np.array([4, 4, 6], np.int64), flags, 2, scratch, *outs) == 2
    assert [o[:2].tolist() for o in outs[1:]] == [[1, 2], [4, 6], [2, 1]] and not scratch.any()


@pytest.mark.parametrize("seed", range(8))
def test_index_symbols_only_gives_the_index_events_symbols_and_checks_the_frame_as_fully(seed, monkeypatch):
    """The partition stage's decoding (its rules use no symbol; it forwards index events): symbol -1 for other
    events, the same symbol as a full decode for index events, the same rejects and the same frame errors
    (a string table that is not UTF-8 anywhere, symbols included); compiled and numpy alike."""
    if not binary.FAST:
        pytest.fail("surveil.events._svev is not built")
    frames = _frames(seed)
    for i in range(0, len(frames), 7):  # a symbol string that is not UTF-8 (the accounts' table comes first)
        f = bytearray(frames[i])
        _, version, _, n, na, ns, _, _, slen = binary.HEADER.unpack_from(f, 0)
        hs = binary.header_size(version)
        blob = bytes(f[hs:hs + slen])
        if ns and slen:
            at = hs + sum(len(x) + 1 for x in blob.split(b"\x00")[:na])
            f[at] = 0xFF
            frames[i] = binary.reseal(f) if len(f) == binary.frame_length(f) else bytes(f)
    full, full_names = _decode(frames, True, monkeypatch)
    fast, fast_names = _decode(frames, True, monkeypatch, index_symbols_only=True)
    ref, ref_names = _decode(frames, False, monkeypatch, index_symbols_only=True)
    assert fast == ref and fast_names == ref_names
    index_rows = 0
    for a, b in zip(full, fast):
        assert a[0] == b[0]
        if a[0] == "error":
            assert a == b
            continue
        assert a[1] == b[1] and a[3] == b[3]  # the same end and rejects
        ca, cb = a[2], b[2]
        assert {k: v for k, v in ca.items() if k != "symbol"} == {k: v for k, v in cb.items() if k != "symbol"}
        for et, sa, sb in zip(ca["etype"], ca["symbol"], cb["symbol"]):
            if et in (binary.INDEX, binary.INDICATIVE):  # market data
                index_rows += sa >= 0
                assert (full_names["symbols"][sa] if sa >= 0 else None) == (fast_names["symbols"][sb] if sb >= 0
                                                                             else None)
            else:  # none, or one a market data event of the frame has too (the table entry is looked up)
                assert sb == -1 or full_names["symbols"][sa] == fast_names["symbols"][sb]
    assert index_rows > 0 and len(fast_names["symbols"]) < len(full_names["symbols"])
    assert sum(x[0] == "error" and "not UTF-8" in x[1] for x in fast) >= 2  # the damaged symbol tables
    # into a block (the partition stage's way): the same as alone
    reg = Registry()
    block = binary.FrameBlock(sum(binary.frame_rows(f) for f in frames))
    out = []
    for i, f in enumerate(frames):
        rej = []
        try:
            b, end = binary.decode_frame_at(f, 0, reg, f"t:0@{i}", 0, rej, into=block, index_symbols_only=True)
        except EventFormatError as e:
            out.append(("error", str(e)))
            continue
        out.append(("ok", end, {k: v.tolist() for k, v in b.columns().items()},
                    [(r.location, r.field, r.value, r.reason, r.raw) for r in rej]))
    assert out == fast
    from surveil.events import _svev

    for f in frames:  # the compiled and the numpy selection of the index events' symbols
        if f[:4] == binary.MAGIC and len(f) >= binary.HEADER.size:
            _, version, size, n, _, ns, _, _, slen = binary.HEADER.unpack_from(f, 0)
            hs = binary.header_size(version)
            n = min(n, (len(f) - hs - slen) // size)
            if n > 0 and binary.record_dtype(version, size) is not None:
                rec = np.frombuffer(f, dtype=binary.record_dtype(version, size), count=n, offset=hs + slen)
                got = _svev.index_symbols(f, hs + slen, n, ns, binary.INDEX, binary.INDICATIVE, size)
                assert got == binary._index_symbols(rec, ns).tolist()
    with pytest.raises(ValueError, match="out of range"):
        _svev.index_symbols(frames[0], 0, len(frames[0]) // 76 + 1, 5, binary.INDEX)
    with pytest.raises(ValueError, match="out of range"):
        _svev.index_symbols(frames[0], 0, 1, 5, binary.INDEX, binary.INDICATIVE, 100)  # not a record size


def test_a_frame_block_is_reused_only_when_nothing_refers_to_its_rows():
    """FrameBlock.reused gives back the thread's last block once no batch, view or slice of its rows is
    left, and a new one while any is (its rows would be overwritten under it)."""
    if not binary.FAST:
        pytest.skip("the compiled decoder is not built (test_the_compiled_decoder_is_built fails)")
    reg = Registry()
    b = jsonl.decode_lines([orjson.dumps(e) for e in sample_events(400)], 1, reg, "x", [])
    frames = [binary.encode_frame(b.take(slice(lo, lo + 100)), reg) for lo in range(0, 400, 100)]
    rows = sum(binary.frame_rows(f) for f in frames)

    def decode_all(block):
        return [binary.decode_frame_at(f, 0, reg, f"t:0@{i}", 0, [], into=block)[0] for i, f in enumerate(frames)]

    first = binary.FrameBlock.reused(rows)
    kept = decode_all(first)
    assert all(np.shares_memory(k.ts, first.block) for k in kept)  # views of the block
    want = [{k: v.tolist() for k, v in x.columns().items()} for x in kept]
    second = binary.FrameBlock.reused(rows)
    assert second is not first  # ``kept`` still refers to the first block's rows
    decode_all(second)  # (its batches are dropped at once)
    assert [{k: v.tolist() for k, v in x.columns().items()} for x in kept] == want  # untouched
    assert binary.FrameBlock.reused(rows) is second and second.row == 0  # nothing refers to it: reused
    one_slice = decode_all(second)[2].ts[1:]  # a slice of a view of its rows
    third = binary.FrameBlock.reused(rows)
    assert third is not second
    del one_slice
    assert binary.FrameBlock.reused(rows) is third  # the thread's last block, free
    assert binary.FrameBlock.reused(rows + 1) is not third  # too small: a new one...
    assert binary.FrameBlock.reused(5).total == rows + 1  # ...which serves a smaller poll too
    big = binary.FrameBlock.reused(1_000_000)
    assert binary.FrameBlock.reused(300_000) is big  # within 4x (and 64 Ki rows)
    assert binary.FrameBlock.reused(rows).total == rows  # much smaller: the large block is not kept
