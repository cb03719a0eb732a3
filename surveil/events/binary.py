"""Binary frame format ``SVEV``, versions 1 to 4 (docs/events.md).

Odd versions are self-contained (one Kafka record). Even versions (*delta*) are for files: their
string tables hold only the strings new since the previous frames of the same file, and records index
the file's growing dictionary, so a reader interns each account once per file instead of once per frame.
Versions 3 and 4 (contract version 2, written since) are versions 1 and 2 with the ``indicative`` event type
and, in a frame where an event has a match id, records of 104 bytes that carry it (``RECORD_MATCH``); a frame
without match ids keeps the records of 76 bytes. Versions 1 and 2 are still read. Layout::

    header  32 bytes, little-endian:
            magic      4s   b"SVEV"
            version    u16  3 (self-contained) or 4 (delta); 1 and 2: contract version 1
            rec_size   u16  76, or 104 (versions 3 and 4 only: records with match ids)
            n_records  u32
            n_accounts u32  \
            n_symbols  u32   | sizes of the frame's four string tables
            n_owners   u32   |
            n_brokers  u32  /
            str_len    u32  bytes of the string blob
    strings str_len bytes: the four tables' UTF-8 strings, in that order, joined by NUL
    records n_records x rec_size bytes, fixed width (``RECORD``, ``RECORD_MATCH`` below)

String columns hold an index into their table, 0xFFFFFFFF when absent. Prices are
integers in 1/10000 yuan, timestamps integer nanoseconds. Flags say which optional
fields are present, so JSON -> binary -> JSON is lossless.
"""

from __future__ import annotations

import struct
import sys
import threading
from collections.abc import Iterator

import numpy as np

from surveil.events.batch import Batch, Registry, _svev
from surveil.events.errors import EventFormatError, Reject
from surveil.events.schema import (
    F_HAS_QTY,
    INDEX,
    INDICATIVE,
    MATCH_ID_MAX_BYTES,
    MF_HAS_MATCH_ID,
    ORDER,
    ORDER_ID_MAX_BYTES,
    TRADE,
    TS_MAX,
    TS_MIN,
    TYPES,
)

MAGIC = b"SVEV"
VERSION = 3  # self-contained
VERSION_DELTA = 4  # string tables extend the dictionary of the earlier frames of the same file
VERSION_1 = 1  # contract version 1, read only: self-contained
VERSION_1_DELTA = 2  # contract version 1, read only: delta
_DELTA = {VERSION_DELTA, VERSION_1_DELTA}
HEADER = struct.Struct("<4sHHIIIIII")
ABSENT = 0xFFFFFFFF
RECORD = np.dtype([
    ("ts", "<i8"), ("price", "<i8"), ("qty", "<i8"), ("seq", "<i8"),
    ("order_id", f"S{ORDER_ID_MAX_BYTES}"),
    ("account", "<u4"), ("symbol", "<u4"), ("owner", "<u4"), ("broker", "<u4"),
    ("venue", "u1"), ("etype", "u1"), ("side", "u1"), ("flags", "u1"),
])
assert RECORD.itemsize == 76
#: a record of a frame (versions 3 and 4) where an event has a match id: RECORD, then the match id and its flags
#: (``MF_*``: has one, is an integer), then 3 bytes of zeros
RECORD_MATCH = np.dtype({
    "names": [*RECORD.names, "match_id", "mflags"],
    "formats": [RECORD.fields[f][0] for f in RECORD.names] + [f"S{MATCH_ID_MAX_BYTES}", "u1"],
    "offsets": [RECORD.fields[f][1] for f in RECORD.names] + [76, 100],
    "itemsize": 104,
})
_RECORDS = {RECORD.itemsize: RECORD, RECORD_MATCH.itemsize: RECORD_MATCH}
RECORD_SIZES = tuple(_RECORDS)
_STR_COLS = ("account", "symbol", "owner", "broker")
_MAX_TYPE = len(TYPES) - 1

#: decode with the compiled ``_svev`` module (built by setup.py) when it is there; the numpy code below is
#: the reference it is tested against, and the fallback without a C compiler
FAST = _svev is not None
if FAST:
    _layout = _svev.record_layout()
    assert _layout.pop("itemsize") == RECORD.itemsize and _layout.pop("itemsize_match") == RECORD_MATCH.itemsize
    assert _layout == {f: RECORD_MATCH.fields[f][1] for f in _layout}, "_svev.c and RECORD_MATCH disagree"
    _CONSTS = (ORDER, TRADE, INDEX, INDICATIVE, _MAX_TYPE, F_HAS_QTY, MF_HAS_MATCH_ID, TS_MIN, TS_MAX)


def record_dtype(version: int, rec_size: int) -> np.dtype | None:
    """The record layout of a frame of ``version`` whose header says ``rec_size``; None when that is not one."""
    if version in (VERSION, VERSION_DELTA):
        return _RECORDS.get(rec_size)
    if version in (VERSION_1, VERSION_1_DELTA):
        return RECORD if rec_size == RECORD.itemsize else None
    return None


def _has_match_ids(batch: Batch) -> bool:
    return batch.mflags is not None and bool((batch.mflags & MF_HAS_MATCH_ID).any())


def _interners(reg: Registry):
    return (reg.accounts, reg.symbols, reg.owners, reg.brokers)


class FrameDict:
    """The string dictionary of a file of delta frames, on the writing or the reading side."""

    def __init__(self) -> None:
        self.enc = [np.full(0, -1, np.int64) for _ in _STR_COLS]  # registry id -> file index
        self.enc_n = [0] * len(_STR_COLS)
        self.dec = [np.empty(0, np.int32) for _ in _STR_COLS]  # file index -> registry id


def encode_frame(batch: Batch, reg: Registry, dictionary: FrameDict | None = None) -> bytes:
    """One frame holding every event of ``batch``: self-contained, or a delta frame of a file whose
    ``dictionary`` is given."""
    n = len(batch)
    rec = _records(batch)
    tables: list[list[str]] = []
    for c, (col, interner) in enumerate(zip(_STR_COLS, _interners(reg))):
        ids = getattr(batch, col)
        present = ids >= 0
        local = np.full(n, ABSENT, dtype=np.uint32)
        if dictionary is None:
            uniq, inv = np.unique(ids[present], return_inverse=True)
            local[present] = inv.reshape(-1)
            tables.append([interner.names[i] for i in uniq.tolist()])
        else:
            lut = dictionary.enc[c]
            if len(lut) < len(interner):
                lut = dictionary.enc[c] = np.concatenate([lut, np.full(len(interner) - len(lut), -1, np.int64)])
            p_ids = ids[present]
            new = np.unique(p_ids[lut[p_ids] < 0])
            start = dictionary.enc_n[c]
            lut[new] = np.arange(start, start + len(new))
            dictionary.enc_n[c] = start + len(new)
            local[present] = lut[p_ids]
            tables.append([interner.names[i] for i in new.tolist()])
        rec[col] = local
    blob = "\x00".join(s for t in tables for s in t).encode("utf-8")
    version = VERSION if dictionary is None else VERSION_DELTA
    head = HEADER.pack(MAGIC, version, rec.itemsize, n, *(len(t) for t in tables), len(blob))
    return head + blob + rec.tobytes()


def _records(batch: Batch) -> np.ndarray:
    """The record array of a batch (``RECORD_MATCH`` when an event has a match id), string columns not filled
    yet."""
    mids = _has_match_ids(batch)
    rec = np.zeros(len(batch), dtype=RECORD_MATCH if mids else RECORD)
    for f in ("ts", "price", "qty", "seq", "venue", "etype", "side", "flags"):
        rec[f] = getattr(batch, f)
    rec["order_id"] = batch.order_ids_bytes()
    if mids:
        rec["match_id"] = batch.match_ids_bytes()
        rec["mflags"] = batch.mflags
    return rec


def encode_frame_fast(batch: Batch, reg: Registry) -> bytes:
    """A self-contained frame of ``batch`` like :func:`encode_frame`, with each string table in order of first
    appearance instead of sorted (the same events when decoded), built by the compiled module: for the
    partition stage's exports, where sorting and joining the names of the tables cost ≈ 0.5 µs per row.
    Falls back to :func:`encode_frame` without the compiled module."""
    if not FAST:
        return encode_frame(batch, reg)
    n = len(batch)
    rec = _records(batch)
    blobs: list[bytes] = []
    counts: list[int] = []
    local = np.empty(n, np.uint32)
    uniq = np.empty(n, np.int32)
    for col, interner in zip(_STR_COLS, _interners(reg)):
        ids = np.ascontiguousarray(getattr(batch, col), dtype=np.int32)
        top = len(interner.names)
        if interner.scratch is None or len(interner.scratch) < top:
            interner.scratch = np.full(max(1024, 2 * top), -1, np.int32)
        m = _svev.remap(ids, interner.scratch, local, uniq)
        table = interner.bytes_ids
        blob = table.join(uniq[:m])
        if type(blob) is list:  # strings this cache does not hold yet (interned from reference data, say)
            for i in blob:
                table.add(interner.names[i].encode("utf-8"), i)
            blob = table.join(uniq[:m])
        rec[col] = local
        counts.append(m)
        if m:
            blobs.append(blob)
    data = b"\x00".join(blobs)
    return HEADER.pack(MAGIC, VERSION, rec.itemsize, n, *counts, len(data)) + data + rec.tobytes()


class FrameBlock:
    """Columns for the rows of several frames (one partition's records of a poll): the compiled decoder
    writes each frame's rows in place, after the previous frame's, so that consecutive frames are one batch
    without a copy (:meth:`batch`). ``total`` bounds the rows; a frame that does not fit is decoded alone."""

    __slots__ = ("total", "block", "oid", "src", "cols", "row", "_refs", "mid", "mfl", "mid_rows")

    def __init__(self, total: int):
        self.total = total
        self.block = np.empty(53 * total, np.uint8)  # the layout of _svev.decode_records
        self.oid = np.empty(total, RECORD.fields["order_id"][0])
        self.src = np.empty(total, np.int64)
        self.cols = _columns(self.block, total)
        self.row = 0  # rows written so far
        # match ids (and their flags) of the rows; mid_rows: the rows from the first frame with match ids on
        # (from there on every frame's rows get theirs, zeros without), ``total`` while there is none
        self.mid = np.empty(total, RECORD_MATCH.fields["match_id"][0])
        self.mfl = np.empty(total, np.uint8)
        self.mid_rows = total
        self._refs = self._ref_counts()  # the block's own references to its arrays (``cols`` are views)

    def _ref_counts(self) -> tuple[int, ...]:
        return (sys.getrefcount(self.block), sys.getrefcount(self.oid), sys.getrefcount(self.src),
                sys.getrefcount(self.mid), sys.getrefcount(self.mfl))

    @classmethod
    def reused(cls, total: int) -> FrameBlock:
        """A block of at least ``total`` rows, empty: this thread's last one when nothing but the block refers
        to its arrays any more (no batch, view or slice of its rows is left: a numpy view refers to the array
        it is a view of) and it is not much larger than needed, else a new one, which becomes the thread's.
        Reusing it spares the fresh pages of a new block on every poll (≈ 77 bytes a row: 23 MB for a
        300,000-event poll, ≈ 30 ns per event)."""
        b = getattr(_reuse, "block", None)
        # not one much larger than needed either: a catch-up poll's block is not kept for a paced feed's polls
        if b is not None and total <= b.total <= 4 * total + 65536 and b._ref_counts() == b._refs:
            b.row = 0
            b.mid_rows = b.total
            return b
        b = _reuse.block = cls(total)
        return b

    def batch(self, lo: int, hi: int) -> Batch:
        """Rows ``lo:hi`` as a batch (views, no copy)."""
        b = Batch(src=self.src[lo:hi], order_id=self.oid[lo:hi],
                  **{k: v[lo:hi] for k, v in self.cols.items() if k != "bad"})
        if hi > self.mid_rows:  # rows of frames with match ids (and maybe, before them, rows without)
            if lo < self.mid_rows:
                self.mfl[lo:self.mid_rows] = 0
                self.mid[lo:self.mid_rows] = b""
            b.match_id, b.mflags = self.mid[lo:hi], self.mfl[lo:hi]
        return b


_reuse = threading.local()  # FrameBlock.reused: each thread's last block


def frame_rows(value) -> int:
    """How many records a frame's header announces, at most what its bytes can hold (0: not a frame)."""
    if len(value) < HEADER.size or value[:4] != MAGIC:
        return 0
    return max(0, min(HEADER.unpack_from(value, 0)[3], (len(value) - HEADER.size) // RECORD.itemsize))


def decode_frame_at(buf, offset: int, reg: Registry, source: str, first_record: int,
                    rejects: list[Reject], dictionary: FrameDict | None = None,
                    into: FrameBlock | None = None, index_symbols_only: bool = False) -> tuple[Batch, int]:
    """Decode the frame starting at ``offset``; returns the batch and the offset after it.

    With ``into`` (and the compiled decoder), a self-contained frame that fits is decoded into that block,
    at its next free rows: the batch is then a view of them (unless the frame had invalid records, which
    are left out of a copy), and ``into.row`` moves past them.

    ``index_symbols_only`` (a self-contained frame, for a reader whose rules use symbols of index events
    only: the partition stage): other events get symbol -1, and only the index events' symbols are looked
    up and interned. The frame is checked as fully as without it (a string table that is not UTF-8 is an
    error about the whole frame, an index out of the table an invalid record).

    Raises EventFormatError when the frame header itself is unusable (the rest of the
    buffer cannot be resynchronised)."""
    if len(buf) - offset < HEADER.size:
        raise EventFormatError(f"{source}: truncated frame header at byte {offset}")
    magic, version, rec_size, n, na, ns, no, nb, slen = HEADER.unpack_from(buf, offset)
    if magic != MAGIC:
        raise EventFormatError(f"{source}: bad frame magic {magic!r} at byte {offset} (expected {MAGIC!r})")
    dtype = record_dtype(version, rec_size)
    if dtype is None:
        raise EventFormatError(
            f"{source}: unsupported frame version {version} / record size {rec_size} at byte {offset}")
    if version in _DELTA and dictionary is None:
        raise EventFormatError(f"{source}: a delta frame (version {version}) at byte {offset} can only be read with "
                               "the frames before it (a file read from its start)")
    p = offset + HEADER.size
    end = p + slen + n * rec_size
    if end > len(buf):
        raise EventFormatError(f"{source}: truncated frame at byte {offset} ({n} records announced)")
    counts = (na, ns, no, nb)
    rec = np.frombuffer(buf, dtype=dtype, count=n, offset=p + slen)
    delta = dictionary if version in _DELTA else None  # a self-contained frame is self-contained in any file
    skip = index_symbols_only and delta is None
    with_mid = dtype is RECORD_MATCH
    if FAST and into is not None and delta is None and n <= into.total - into.row:
        lo = into.row
        if with_mid and into.mid_rows == into.total:
            into.mid_rows = lo  # the first frame with match ids: from here on every frame's rows get theirs
        cols, bad = _decode_fast(buf, offset, p, slen, n, counts, reg, source, delta, into, skip, rec_size)
        into.row = lo + n
        cols["order_id"] = into.oid[lo:lo + n]
        if with_mid:
            cols["match_id"], cols["mflags"] = into.mid[lo:lo + n], into.mfl[lo:lo + n]
        src = into.src[lo:lo + n]
        src[:] = np.arange(first_record, first_record + n, dtype=np.int64)
    else:
        if FAST:
            cols, bad = _decode_fast(buf, offset, p, slen, n, counts, reg, source, delta, skip_symbols=skip,
                                     rec_size=rec_size)
        else:
            cols, bad = _decode_numpy(buf, offset, p, slen, rec, counts, reg, source, delta, skip)
        cols["order_id"] = rec["order_id"]
        if with_mid:
            cols["match_id"], cols["mflags"] = rec["match_id"], np.ascontiguousarray(rec["mflags"])
        src = np.arange(first_record, first_record + n, dtype=np.int64)
    if bad.any():
        for i in np.flatnonzero(bad):
            field, reason = _BIN_CHECKS[int(bad[i])]
            if field == "match_id":
                value = Batch(**{**cols, "src": src}).match_id_at(int(i))
            else:
                value = cols[field][i].item() if field in cols else None
            rejects.append(Reject(source=source, location=first_record + int(i), field=field, value=value,
                                  reason=reason, raw=rec[i].tobytes().hex(),
                                  extra={"kind": "binary", "frame_offset": offset}))
        keep = bad == 0
        cols = {c: v[keep] for c, v in cols.items()}
        src = src[keep]
    return Batch(src=src, **cols), end


def _table_error(source: str, offset: int, found: int, counts) -> EventFormatError:
    return EventFormatError(f"{source}: string table of frame at byte {offset} has {found} "
                            f"entries, header says {sum(counts)}")


def _table_text(buf, p: int, slen: int, source: str, offset: int) -> str:
    """A frame's string blob as text; a blob that is not UTF-8 is an error about the whole table (the same
    message from both decoders, however they found it)."""
    try:
        return bytes(memoryview(buf)[p:p + slen]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise EventFormatError(f"{source}: string table of frame at byte {offset} is not UTF-8: {e}") from None


def _decode_fast(buf, offset: int, p: int, slen: int, n: int, counts, reg: Registry, source: str,
                 dictionary: FrameDict | None, into: FrameBlock | None = None,
                 skip_symbols: bool = False, rec_size: int = 76) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The compiled decoder: the string tables through each interner's bytes cache, the records in C (into
    ``into``'s free rows when given; the order and match ids too). ``skip_symbols``: see
    ``index_symbols_only``."""
    total = sum(counts)
    found = _svev.count_strings(buf, p, slen) or min(total, 1)  # an empty blob: no string, or one empty one
    if found != total:
        _table_text(buf, p, slen, source, offset)  # a table that is not UTF-8 is reported as such first
        raise _table_error(source, offset, found, counts)
    interners = _interners(reg)
    ids = np.empty(total, np.int32)
    if total:
        starts = np.empty(total + 1, np.int64)
        tables = tuple(i.bytes_ids for i in interners)
        if skip_symbols:
            tables = (tables[0], None, *tables[2:])  # -1 each (-2: not UTF-8, raised by _intern_misses)
        if _svev.lookup_strings(tables, buf, p, slen, counts, ids, starts):
            _intern_misses(buf, p, slen, counts, ids, starts, interners, tables, source, offset)
        if skip_symbols and counts[1]:
            used = _svev.index_symbols(buf, p + slen, n, counts[1], INDEX, INDICATIVE, rec_size)  # _index_symbols
            if used:
                k = counts[0] + np.array(used, np.int64)
                ids[k] = interners[1].intern_list(_svev.strings_at(buf, starts, k))
    luts = []
    k = 0
    for c, cnt in enumerate(counts):
        lut = ids[k:k + cnt]
        k += cnt
        if dictionary is not None:
            if cnt:
                dictionary.dec[c] = np.concatenate([dictionary.dec[c], lut])
            lut = dictionary.dec[c]
        luts.append(lut)
    if into is not None:
        lo = into.row
        mids = (into.mid, into.mfl) if into.mid_rows < into.total else (None, None)
        _svev.decode_records(buf, p + slen, n, tuple(luts), into.block, _CONSTS, into.total, lo, into.oid, rec_size,
                             *mids)
        cols = {k: v[lo:lo + n] for k, v in into.cols.items()}
        return cols, cols.pop("bad")
    block = np.empty(53 * n, np.uint8)
    _svev.decode_records(buf, p + slen, n, tuple(luts), block, _CONSTS, -1, 0, None, rec_size)
    cols = _columns(block, n)
    return cols, cols.pop("bad")


def _intern_misses(buf, p: int, slen: int, counts, ids: np.ndarray, starts: np.ndarray, interners, tables,
                   source: str, offset: int) -> None:
    """Strings the bytes caches did not know (new, or first seen since a restart): intern them and add them
    to the caches. A frame usually brings a few new strings (a symbol first traded on this partition), a
    cold start brings whole tables."""
    miss_all = np.flatnonzero(ids == -2)
    try:
        pick = _svev.strings_at(buf, starts, miss_all)
    except UnicodeDecodeError:
        _table_text(buf, p, slen, source, offset)  # raises: the whole table's error, as the numpy decoder's
        raise
    bounds = np.searchsorted(miss_all, np.cumsum(counts)[:-1]).tolist()
    for c, (lo, hi) in enumerate(zip([0, *bounds], [*bounds, len(miss_all)])):
        if lo < hi:
            miss = miss_all[lo:hi]
            got = np.empty(hi - lo, np.int32)
            interner = interners[c]
            with interner._lock:  # noqa: SLF001 - as Interner.intern_list, in C (ids in the same order)
                tables[c].intern(pick[lo:hi], buf, starts, miss, interner.names, interner.ids, got)
            ids[miss] = got


_FAST_COLUMNS = [(c, np.dtype(t)) for c, t in (
    ("ts", "<i8"), ("price", "<i8"), ("qty", "<i8"), ("seq", "<i8"),
    ("account", "<i4"), ("symbol", "<i4"), ("owner", "<i4"), ("broker", "<i4"),
    ("venue", "u1"), ("etype", "u1"), ("side", "u1"), ("flags", "u1"), ("bad", "u1"))]


def _columns(block: np.ndarray, rows: int) -> dict[str, np.ndarray]:
    """The columns (views) of a block in the layout of ``_svev.decode_records`` for ``rows`` rows."""
    cols: dict[str, np.ndarray] = {}
    at = 0
    for name, dt in _FAST_COLUMNS:
        size = rows * dt.itemsize
        cols[name] = block[at:at + size].view(dt)
        at += size
    return cols


def _index_symbols(rec: np.ndarray, n_symbols: int) -> np.ndarray:
    """The symbol table entries the market data (index and indicative events) of a frame's records use (in table
    order; an index out of the table is the record's error, not this one's)."""
    ix = rec["symbol"][(rec["etype"] == INDEX) | (rec["etype"] == INDICATIVE)]
    return np.unique(ix[ix < n_symbols]).astype(np.intp)


def _decode_numpy(buf, offset: int, p: int, slen: int, rec: np.ndarray, counts, reg: Registry, source: str,
                  dictionary: FrameDict | None,
                  skip_symbols: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The reference decoder (numpy; used when the compiled one is not built)."""
    n = len(rec)
    # an empty blob holds no string, or one empty string (a table of just "")
    strings = _table_text(buf, p, slen, source, offset).split("\x00") if slen else [""][:sum(counts)]
    if sum(counts) != len(strings):
        raise _table_error(source, offset, len(strings), counts)
    cols: dict[str, np.ndarray] = {}
    bad = np.zeros(n, dtype=np.uint8)
    k = 0
    for c, (col, cnt, interner) in enumerate(zip(_STR_COLS, counts, _interners(reg))):
        table = strings[k:k + cnt]
        k += cnt
        if dictionary is not None:
            if cnt:
                dictionary.dec[c] = np.concatenate([dictionary.dec[c], interner.lookup_table(table)])
            lut = np.append(dictionary.dec[c], np.int32(-1))
            cnt = len(lut) - 1
        elif cnt and skip_symbols and col == "symbol":
            lut = np.full(cnt + 1, -1, np.int32)
            used = _index_symbols(rec, cnt)
            if len(used):
                lut[used] = interner.intern_list([table[i] for i in used.tolist()])
        elif cnt:
            lut = np.append(interner.lookup_table(table), np.int32(-1))
        else:
            lut = _NO_STRINGS
        idx = rec[col]
        absent = idx == ABSENT
        out_of_range = ~absent & (idx >= cnt)
        if out_of_range.any():
            bad[out_of_range] = _CODE_INDEX[col]
        safe = np.where(absent | out_of_range, cnt, idx)
        cols[col] = lut[safe]
    for f in ("ts", "price", "qty", "seq", "venue", "etype", "side", "flags"):
        cols[f] = np.ascontiguousarray(rec[f])
    _check_records(cols, bad, rec["mflags"] if "mflags" in rec.dtype.names else None)
    return cols, bad


_NO_STRINGS = np.full(1, -1, np.int32)  # the lookup table of an empty string table (every index absent)
_CODE_INDEX = {"account": 20, "symbol": 21, "owner": 22, "broker": 23}
_BIN_CHECKS = {
    1: ("ts", "is out of range (1990-12-19 .. 2100-01-01)"),
    2: ("venue", "unknown venue code"),
    3: ("etype", "unknown type code"),
    4: ("side", "unknown side code"),
    5: ("qty", "negative qty"),
    6: ("account", "missing field (required for order, cancel and trade events)"),
    7: ("price", "must be positive for trade, index and indicative events"),
    8: ("side", "missing field (required for order and trade events)"),
    9: ("symbol", "missing field (required for index and indicative events)"),
    10: ("qty", "missing field (required for order and trade events)"),
    11: ("match_id", "only trade events have a match id"),
    20: ("account", "string index out of the frame's table"),
    21: ("symbol", "string index out of the frame's table"),
    22: ("owner", "string index out of the frame's table"),
    23: ("broker", "string index out of the frame's table"),
}


def _check_records(c: dict[str, np.ndarray], bad: np.ndarray, mflags: np.ndarray | None = None) -> None:
    et = c["etype"]
    needs = (et == ORDER) | (et == TRADE)
    mkt = (et == INDEX) | (et == INDICATIVE)
    has_qty = (c["flags"] & F_HAS_QTY) != 0
    checks = [
        ((mflags & MF_HAS_MATCH_ID) != 0) & (et != TRADE) if mflags is not None else np.zeros(len(et), bool), 11,
        ((et == TRADE) | mkt) & (c["price"] <= 0), 7,
        needs & ~has_qty, 10,
        mkt & (c["symbol"] < 0), 9,
        needs & (c["side"] == 0), 8,
        ~mkt & (c["account"] < 0), 6,
        has_qty & (c["qty"] < 0), 5,
        c["side"] > 2, 4,
        et > _MAX_TYPE, 3,
        c["venue"] > 2, 2,
        (c["ts"] < TS_MIN) | (c["ts"] >= TS_MAX), 1,
    ]
    # later checks take precedence; an out-of-table string index (code >= 20) is kept
    for mask, code in zip(checks[0::2], checks[1::2]):
        if mask.any():
            bad[mask & (bad < 20)] = code


def decode_frames(buf, reg: Registry, source: str, rejects: list[Reject]) -> Iterator[Batch]:
    """Every frame of a buffer holding concatenated frames."""
    off = 0
    rec_no = 0
    total = len(buf)
    dictionary = FrameDict()
    while off < total:
        try:
            batch, nxt = decode_frame_at(buf, off, reg, source, rec_no, rejects, dictionary)
        except EventFormatError as e:
            rejects.append(Reject(source=source, location=rec_no, field="frame", value=off, reason=str(e),
                                  raw=bytes(buf[off:off + 64]).hex(),
                                  extra={"kind": "binary", "frame_offset": off,
                                         "bytes_skipped": total - off}))
            return
        n = HEADER.unpack_from(buf, off)[3]
        rec_no += n
        off = nxt
        yield batch
