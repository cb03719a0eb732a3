"""Binary frame format ``SVEV``, versions 1 to 6 (docs/events.md).

Odd versions are self-contained (one Kafka record). Even versions (*delta*) are for files: their
string tables hold only the strings new since the previous frames of the same file, and records index
the file's growing dictionary, so a reader interns each account once per file instead of once per frame.
Versions 3 and 4 (contract version 2) are versions 1 and 2 with the ``indicative`` event type and, in a frame
where an event has a match id, records of 104 bytes that carry it (``RECORD_MATCH``); a frame without match ids
keeps the records of 76 bytes. Versions 5 and 6 (written since) are versions 3 and 4 with a longer header that
carries the file's record number of the frame's first record and two CRC32C checksums (of the header, and of
the strings and records), so damage is detected instead of read as other accounts or prices, and a file
reader can find the next frame after it (:func:`read_frames`). In a file, a frame of version 5 also starts the
dictionary anew: its tables are the dictionary the delta frames after it extend (``EventWriter`` writes one
every ``KEY_FRAME_INTERVAL`` frames, with the whole dictionary). Versions 1 to 4 are still read. Layout::

    header  32 bytes (versions 1 to 4) or 48 bytes (versions 5 and 6), little-endian:
            magic      4s   b"SVEV"
            version    u16  5 (self-contained) or 6 (delta); 3, 4: contract version 2 before checksums;
                            1, 2: contract version 1
            rec_size   u16  76, or 104 (versions 3 to 6 only: records with match ids)
            n_records  u32
            n_accounts u32  \
            n_symbols  u32   | sizes of the frame's four string tables
            n_owners   u32   |
            n_brokers  u32  /
            str_len    u32  bytes of the string blob
            (versions 5 and 6 only:)
            first      u64  the file's record number of the frame's first record (0 outside a file)
            body_crc   u32  CRC32C of the strings and the records (the bytes after the header)
            head_crc   u32  CRC32C of the header's first 44 bytes
    strings str_len bytes: the four tables' UTF-8 strings, in that order, joined by NUL
    records n_records x rec_size bytes, fixed width (``RECORD``, ``RECORD_MATCH`` below)

String columns hold an index into their table, 0xFFFFFFFF when absent. Prices are
integers in 1/10000 yuan, timestamps integer nanoseconds. Flags say which optional
fields are present, so JSON -> binary -> JSON is lossless.
"""

from __future__ import annotations

import io
import struct
import sys
import threading
from collections.abc import Iterator

import google_crc32c
import numpy as np

from surveil.events.batch import Batch, Registry, _svev
from surveil.events.errors import EventFormatError, FrameChecksumError, Reject
from surveil.events.schema import (
    F_HAS_ORDER_ID,
    F_HAS_QTY,
    F_ORDER_ID_INT,
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
VERSION = 5  # self-contained, with checksums
VERSION_DELTA = 6  # string tables extend the dictionary of the earlier frames of the same file, with checksums
VERSION_3 = 3  # contract version 2 before checksums, read only: self-contained
VERSION_3_DELTA = 4  # contract version 2 before checksums, read only: delta
VERSION_1 = 1  # contract version 1, read only: self-contained
VERSION_1_DELTA = 2  # contract version 1, read only: delta
_DELTA = {VERSION_DELTA, VERSION_3_DELTA, VERSION_1_DELTA}
CHECKED = (VERSION, VERSION_DELTA)  # the versions whose header carries checksums
#: the first 32 bytes of every version's header (the whole header of versions 1 to 4)
HEADER = struct.Struct("<4sHHIIIIII")
#: the header of versions 5 and 6: HEADER, then the first record's number, the body's and the header's CRC32C
HEADER_CRC = struct.Struct("<4sHHIIIIIIQII")
_CRC_TAIL = struct.Struct("<QII")  # the last 16 bytes of HEADER_CRC
_HEAD_CRC_AT = HEADER_CRC.size - 4  # the header checksum covers the bytes before it
_U32 = struct.Struct("<I")
assert HEADER.size == 32 and HEADER_CRC.size == 48
#: a file writer (``surveil.events.io.EventWriter``) writes a frame of version 5 holding the whole dictionary
#: (every string of the file so far) as the first frame and then every this many frames: a damaged frame costs
#: the frames after it up to the next one (at most this many frames), not the rest of the file
KEY_FRAME_INTERVAL = 16
#: a frame header announcing a longer body (strings and records) than this is damage, not a frame
MAX_BODY_BYTES = 1 << 31
ABSENT = 0xFFFFFFFF
RECORD = np.dtype([
    ("ts", "<i8"), ("price", "<i8"), ("qty", "<i8"), ("seq", "<i8"),
    ("order_id", f"S{ORDER_ID_MAX_BYTES}"),
    ("account", "<u4"), ("symbol", "<u4"), ("owner", "<u4"), ("broker", "<u4"),
    ("venue", "u1"), ("etype", "u1"), ("side", "u1"), ("flags", "u1"),
])
assert RECORD.itemsize == 76
#: a record of a frame (versions 3 to 6) where an event has a match id: RECORD, then the match id and its flags
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
    if version in (VERSION, VERSION_DELTA, VERSION_3, VERSION_3_DELTA):
        return _RECORDS.get(rec_size)
    if version in (VERSION_1, VERSION_1_DELTA):
        return RECORD if rec_size == RECORD.itemsize else None
    return None


# -- checksums: CRC32C (Castagnoli), as Kafka's record batches and iSCSI use it --------------------------------
# google-crc32c computes it in C with the CPU's CRC32C instruction (SSE4.2 on x86-64, the CRC extension on ARMv8;
# ≈ 25 GB/s on a frame of 150 KB here) and in portable C without one. Its functions take bytes or a buffer
# without a release hook (a numpy array), not a memoryview or a bytearray: a short range is copied (cheaper
# than a numpy view below ≈ 4 KB), a long one read in place through a view.
_crc_value = google_crc32c.value
_crc_extend = google_crc32c.extend
_CRC_COPY_MAX = 4096
CRC_IMPLEMENTATION = google_crc32c.implementation  # "c"; "python" is its pure-Python fallback (very slow)


def crc32c(buf, start: int = 0, stop: int | None = None) -> int:
    """CRC32C of ``buf[start:stop]`` (bytes, bytearray, memoryview or a numpy array), without copying a long
    range."""
    if stop is None:
        stop = len(buf)
    if stop - start <= _CRC_COPY_MAX:
        part = buf[start:stop] if type(buf) is bytes else bytes(memoryview(buf).cast("B")[start:stop])
    else:
        part = np.frombuffer(buf, np.uint8, stop - start, start)
    return _crc_value(part)


def pack_frame(version: int, rec_size: int, n: int, counts, blob: bytes, records, first: int = 0) -> bytes:
    """A frame of ``version`` from its parts: ``records`` (bytes or a contiguous numpy record array) of
    ``rec_size`` bytes each, the string ``blob`` of the four tables of ``counts`` strings. Versions 5 and 6 get
    their checksums (``first``: the file's record number of the first record)."""
    if version in CHECKED:
        body_crc = _crc_extend(_crc_value(blob), records) if blob else _crc_value(records)
        head = HEADER_CRC.pack(MAGIC, version, rec_size, n, *counts, len(blob), first, body_crc, 0)[:_HEAD_CRC_AT]
        head += _U32.pack(_crc_value(head))
    else:
        head = HEADER.pack(MAGIC, version, rec_size, n, *counts, len(blob))
    if not isinstance(records, bytes):
        records = records.tobytes()
    return head + blob + records


def reseal(frame, version: int | None = None) -> bytes:
    """The frame that starts ``frame`` (bytes of one frame, edited on purpose: tools, tests) with its checksums
    computed anew, or rewritten as a frame of ``version`` (the same tables and records; checksums, and the
    record number of its first record, for versions 5 and 6 only)."""
    _, v, rec_size, n, na, ns, no, nb, slen = HEADER.unpack_from(frame, 0)
    first = HEADER_CRC.unpack_from(frame, 0)[9] if v in CHECKED else 0
    p = header_size(v)
    blob = bytes(frame[p:p + slen])
    records = bytes(frame[p + slen:])
    return pack_frame(v if version is None else version, rec_size, n, (na, ns, no, nb), blob, records, first)


def header_size(version: int) -> int:
    """The header's size of a frame of ``version``."""
    return HEADER_CRC.size if version in CHECKED else HEADER.size


def frame_length(buf, offset: int = 0) -> int:
    """The length of the frame at ``offset`` as its header says (header, strings and records)."""
    _, version, rec_size, n, *_, slen = HEADER.unpack_from(buf, offset)
    return header_size(version) + slen + n * rec_size


def _has_match_ids(batch: Batch) -> bool:
    return batch.mflags is not None and bool((batch.mflags & MF_HAS_MATCH_ID).any())


def _interners(reg: Registry):
    return (reg.accounts, reg.symbols, reg.owners, reg.brokers)


class FrameDict:
    """The string dictionary of a file of delta frames, on the writing or the reading side."""

    def __init__(self) -> None:
        self.enc = [np.full(0, -1, np.int64) for _ in _STR_COLS]  # registry id -> file index
        self.enc_n = [0] * len(_STR_COLS)
        self.enc_ids = [np.empty(0, np.int64) for _ in _STR_COLS]  # file index -> registry id (writing side)
        self.dec = [np.empty(0, np.int32) for _ in _STR_COLS]  # file index -> registry id
        #: reading side: a frame was lost since the last frame of version 5, so the dictionary misses its strings
        #: and a delta frame cannot be read until the next frame of version 5 (which starts the dictionary anew)
        self.broken = False


def encode_frame(batch: Batch, reg: Registry, dictionary: FrameDict | None = None, first: int = 0,
                 full: bool = False) -> bytes:
    """One frame holding every event of ``batch``: self-contained (version 5), or a frame of a file whose
    ``dictionary`` is given: a delta frame (version 6), or with ``full`` a frame of version 5 whose tables are
    the whole dictionary (every string of the file so far, in dictionary order), which a reader takes as the
    dictionary from then on. ``first``: the file's record number of the batch's first event."""
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
            if len(new):
                dictionary.enc_ids[c] = np.concatenate([dictionary.enc_ids[c], new])
            local[present] = lut[p_ids]
            tables.append([interner.names[i] for i in (dictionary.enc_ids[c] if full else new).tolist()])
        rec[col] = local
    blob = "\x00".join(s for t in tables for s in t).encode("utf-8")
    version = VERSION if dictionary is None or full else VERSION_DELTA
    return pack_frame(version, rec.itemsize, n, [len(t) for t in tables], blob, rec, first)


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
    return pack_frame(VERSION, rec.itemsize, n, counts, data, rec)


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
    _, version, _, n, *_ = HEADER.unpack_from(value, 0)
    return max(0, min(n, (len(value) - header_size(version)) // RECORD.itemsize))


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

    A frame of version 5 or 6 is checked first: a header or a body whose CRC32C is not the one its header
    carries raises :class:`FrameChecksumError` (the frame is damaged; none of its records is read). In a file
    (``dictionary`` given), a frame of version 5 starts the dictionary anew with its tables.

    Raises EventFormatError when the frame itself is unusable (its header, its string tables, a checksum)."""
    if len(buf) - offset < HEADER.size:
        raise EventFormatError(f"{source}: truncated frame header at byte {offset}")
    magic, version, rec_size, n, na, ns, no, nb, slen = HEADER.unpack_from(buf, offset)
    if magic != MAGIC:
        raise EventFormatError(f"{source}: bad frame magic {magic!r} at byte {offset} (expected {MAGIC!r})")
    p = offset + HEADER.size
    if version in CHECKED:
        p = offset + HEADER_CRC.size
        if len(buf) < p:
            raise EventFormatError(f"{source}: truncated frame header at byte {offset}")
        _, body_crc, head_crc = _CRC_TAIL.unpack_from(buf, offset + HEADER.size)
        got = crc32c(buf, offset, offset + _HEAD_CRC_AT)
        if got != head_crc:
            raise FrameChecksumError(f"{source}: frame at byte {offset}: header checksum mismatch (CRC32C "
                                     f"{got:#010x}, the header says {head_crc:#010x}): the header is damaged")
    dtype = record_dtype(version, rec_size)
    if dtype is None:
        raise EventFormatError(
            f"{source}: unsupported frame version {version} / record size {rec_size} at byte {offset}")
    if version in _DELTA and dictionary is None:
        raise EventFormatError(f"{source}: a delta frame (version {version}) at byte {offset} can only be read with "
                               "the frames before it (a file read from its start)")
    end = p + slen + n * rec_size
    if end > len(buf):
        raise EventFormatError(f"{source}: truncated frame at byte {offset} ({n} records announced)")
    if version in _DELTA and dictionary.broken:
        raise EventFormatError(f"{source}: frame at byte {offset}: a delta frame after a damaged frame adds to string "
                               f"tables lost with that frame: its {n} records are not read (the next frame of "
                               f"version {VERSION} starts the tables anew)")
    if version in CHECKED:
        got = crc32c(buf, p, end)
        if got != body_crc:
            raise FrameChecksumError(f"{source}: frame at byte {offset}: checksum mismatch of its strings and "
                                     f"records (CRC32C {got:#010x}, the header says {body_crc:#010x}): the frame is "
                                     f"damaged; its {n} records are not read")
    counts = (na, ns, no, nb)
    rec = np.frombuffer(buf, dtype=dtype, count=n, offset=p + slen)
    delta = dictionary if version in _DELTA else None  # a self-contained frame is self-contained in any file
    reset = dictionary if version == VERSION else None  # in a file, version 5 starts the dictionary anew
    skip = index_symbols_only and dictionary is None
    with_mid = dtype is RECORD_MATCH
    if FAST and into is not None and delta is None and n <= into.total - into.row:
        lo = into.row
        if with_mid and into.mid_rows == into.total:
            into.mid_rows = lo  # the first frame with match ids: from here on every frame's rows get theirs
        cols, bad = _decode_fast(buf, offset, p, slen, n, counts, reg, source, delta, into, skip, rec_size, reset)
        into.row = lo + n
        cols["order_id"] = into.oid[lo:lo + n]
        if with_mid:
            cols["match_id"], cols["mflags"] = into.mid[lo:lo + n], into.mfl[lo:lo + n]
        src = into.src[lo:lo + n]
        src[:] = np.arange(first_record, first_record + n, dtype=np.int64)
    else:
        if FAST:
            cols, bad = _decode_fast(buf, offset, p, slen, n, counts, reg, source, delta, skip_symbols=skip,
                                     rec_size=rec_size, reset=reset)
        else:
            cols, bad = _decode_numpy(buf, offset, p, slen, rec, counts, reg, source, delta, skip, reset)
        cols["order_id"] = rec["order_id"]
        if with_mid:
            cols["match_id"], cols["mflags"] = rec["match_id"], np.ascontiguousarray(rec["mflags"])
        src = np.arange(first_record, first_record + n, dtype=np.int64)
    oid_bad = order_ids_unreadable(cols["order_id"], cols["flags"])
    if oid_bad is not None:
        bad = np.where((bad == 0) & oid_bad, np.uint8(12), bad).astype(bad.dtype)
    if bad.any():
        for i in np.flatnonzero(bad):
            field, reason = _BIN_CHECKS[int(bad[i])]
            if field == "order_id":  # the raw bytes: the value cannot be read
                rejects.append(Reject(source=source, location=first_record + int(i), field=field,
                                      value=bytes(cols["order_id"][i]).hex(), reason=reason,
                                      raw=rec[i].tobytes().hex(), extra={"kind": "binary", "frame_offset": offset}))
                continue
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


_DIGITS = np.zeros(256, bool)
_DIGITS[list(b"0123456789-")] = True
_DIGITS[0] = True  # the padding after the id


def order_ids_unreadable(raw: np.ndarray, flags: np.ndarray) -> np.ndarray | None:
    """Rows whose fixed-width order id cannot be read back (a damaged frame without a checksum, or a writer's
    bug): an integer id with other bytes than digits and '-', a string id that is not UTF-8. None when every row
    is readable (checked over the bytes at once; only rows with non-ASCII bytes are decoded one by one)."""
    if raw.dtype.kind != "S" or not len(raw):
        return None
    width = raw.dtype.itemsize
    b = np.frombuffer(np.ascontiguousarray(raw).tobytes(), np.uint8).reshape(len(raw), width)
    has = (flags & F_HAS_ORDER_ID) != 0
    is_int = has & ((flags & F_ORDER_ID_INT) != 0)
    bad = is_int & ~_DIGITS[b].all(axis=1)
    high = has & ~is_int & (b >= 0x80).any(axis=1)
    for i in np.flatnonzero(high).tolist():
        try:
            bytes(raw[i]).decode("utf-8")
        except UnicodeDecodeError:
            bad[i] = True
    return bad if bad.any() else None


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
                 skip_symbols: bool = False, rec_size: int = 76,
                 reset: FrameDict | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The compiled decoder: the string tables through each interner's bytes cache, the records in C (into
    ``into``'s free rows when given; the order and match ids too). ``skip_symbols``: see
    ``index_symbols_only``. ``reset``: the file's dictionary, which this frame's tables become."""
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
        elif reset is not None:
            reset.dec[c] = lut
        luts.append(lut)
    if reset is not None:
        reset.broken = False
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
                  dictionary: FrameDict | None, skip_symbols: bool = False,
                  reset: FrameDict | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
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
        if reset is not None:
            reset.dec[c] = lut[:cnt]
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
    if reset is not None:
        reset.broken = False
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
    12: ("order_id", "not readable: a string id that is not UTF-8, or an integer id that is not a decimal number"),
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
    """Every frame of a buffer holding concatenated frames (a file's bytes), as :func:`read_frames`."""
    yield from read_frames(io.BytesIO(buf), reg, source, rejects)


_READ_CHUNK = 1 << 20  # resynchronising: bytes read at a time while looking for the next frame


class _Input:
    """A file read forwards with a little look-ahead: what the frame reader needs to look for the next frame
    after damage, holding no more than a frame and a chunk."""

    def __init__(self, f) -> None:
        self.f = f
        self.buf = b""
        self.i = 0  # the next unread byte of buf
        self.pos = 0  # the file offset of buf[i]

    def _avail(self) -> int:
        return len(self.buf) - self.i

    def _fill(self, n: int) -> None:
        """At least ``n`` bytes in the buffer, unless the file ends first."""
        if self._avail() >= n:
            return
        parts = [self.buf[self.i:]]
        have = len(parts[0])
        while have < n:
            more = self.f.read(max(n - have, 1 << 16))
            if not more:
                break
            parts.append(more)
            have += len(more)
        self.buf = b"".join(parts)
        self.i = 0

    def peek(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end of the file), not consumed."""
        self._fill(n)
        return self.buf[self.i:self.i + n]

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end of the file), consumed."""
        a = self._avail()
        if a >= n:
            out = self.buf[self.i:self.i + n]
            self.i += n
        else:
            out = self.buf[self.i:] + self.f.read(n - a)
            self.buf, self.i = b"", 0
        self.pos += len(out)
        return out

    def skip(self, n: int) -> None:
        a = self._avail()
        if n <= a:
            self.i += n
            self.pos += n
            return
        self.pos += a
        self.buf, self.i = b"", 0
        left = n - a
        while left > 0:
            got = self.f.read(min(left, _READ_CHUNK))
            if not got:
                return
            self.pos += len(got)
            left -= len(got)

    def next_frame(self) -> bool:
        """Move to the next place, after the current one, where a header of version 5 or 6 that passes its
        checksum starts; False (at the end of the file) when there is none."""
        self.skip(1)
        while True:
            self._fill(len(MAGIC))
            if self._avail() < len(MAGIC):
                self.skip(self._avail())
                return False
            j = self.buf.find(MAGIC, self.i)
            if j < 0:
                self.skip(self._avail() - (len(MAGIC) - 1))  # keep what may be the start of a magic
                self._fill(_READ_CHUNK)
                continue
            self.skip(j - self.i)
            if _plausible_header(self.peek(HEADER_CRC.size)):
                return True
            self.skip(1)


def _plausible_header(head: bytes) -> bool:
    """A header of version 5 or 6 whose checksum is right (what the reader resynchronises at)."""
    if len(head) < HEADER_CRC.size or head[:4] != MAGIC:
        return False
    version = HEADER.unpack_from(head, 0)[1]
    return version in CHECKED and _crc_value(head[:_HEAD_CRC_AT]) == _U32.unpack_from(head, _HEAD_CRC_AT)[0]


def read_frames(f, reg: Registry, source: str, rejects: list[Reject]) -> Iterator[Batch]:
    """The batches of the frames of a file object ``f`` (read forwards with plain reads: memory stays at about
    one frame). A damaged or unreadable frame is one reject (field ``frame``, the byte offset, the record
    numbers it covered and how many records were not read) and reading goes on:

    * a frame of version 5 or 6 whose body fails its checksum (or whose string tables are unusable): the next
      frame starts where its header says;
    * a header that is damaged (bad magic, failed checksum, an unknown version, an impossible length): the
      reader looks for the next header of version 5 or 6 that passes its checksum (``_Input.next_frame``); that
      frame's ``first`` tells how many records were lost in between;
    * after a lost frame, delta frames (version 6) cannot be read (each a reject) until the next frame of
      version 5, which starts the string tables anew (the writer puts one every ``KEY_FRAME_INTERVAL`` frames).

    Versions 1 to 4 carry no checksum: in a file of those, damage is found only when it makes a frame
    unreadable, and once a frame of version 5 or 6 has been read a frame of version 1 to 4 is taken as damage."""
    src = _Input(f)
    dictionary = FrameDict()
    rec_no = 0
    checked = False
    lost_at: tuple[int, int, str, str] | None = None  # damage being skipped: (offset, record, reason, raw)

    def lost(offset: int, record: int, reason: str, raw: str, records: int | None, skipped: int) -> None:
        extra = {"kind": "binary", "frame_offset": offset, "bytes_skipped": skipped}
        extra["records_lost"] = records
        rejects.append(Reject(source=source, location=record, field="frame", value=offset, reason=reason, raw=raw,
                              extra=extra))
        dictionary.broken = True

    while True:
        head = src.peek(HEADER_CRC.size)
        at = src.pos
        if lost_at is not None and (not head or _plausible_header(head)):
            # the end of damage: the records of the frames in between are known from this frame's ``first``
            off, rec, reason, raw = lost_at
            first = HEADER_CRC.unpack_from(head, 0)[9] if head else None
            n_lost = first - rec if first is not None and first >= rec else None
            tail = (f"; {n_lost} records not read" if n_lost is not None else "; the records in between are "
                    "not read" if head else "; the rest of the file is not read")
            resumed = f" (reading resumed at byte {at})" if head else ""
            lost(off, rec, f"{reason}{resumed}: {at - off} bytes skipped{tail}", raw, n_lost, at - off)
            if n_lost is not None:
                rec_no = first
            lost_at = None
        if not head:
            return
        if len(head) < HEADER.size:
            lost(at, rec_no, f"{source}: truncated frame header at byte {at} (the end of the file)", head.hex(),
                 None, len(head))
            return
        magic, version, rec_size, n, *_, slen = HEADER.unpack_from(head, 0)
        body = slen + n * rec_size
        problem = None
        if magic != MAGIC:
            problem = f"bad frame magic {magic!r} (expected {MAGIC!r})"
        elif version in CHECKED:
            if not _plausible_header(head):
                problem = ("truncated frame header (the end of the file)" if len(head) < HEADER_CRC.size else
                           "header checksum mismatch: the header is damaged")
        elif record_dtype(version, rec_size) is None:
            problem = f"unsupported frame version {version} / record size {rec_size}"
        elif checked:
            problem = f"a frame of version {version} (no checksum) after frames of version 5 or 6: taken as damage"
        if problem is None and body > MAX_BODY_BYTES:
            problem = f"frame header announces {body} bytes"
        if problem is not None:
            reason = f"{source}: frame at byte {at}: {problem}"
            if lost_at is None:
                lost_at = (at, rec_no, reason, head[:HEADER_CRC.size].hex())
            src.next_frame()
            continue
        checked = checked or version in CHECKED
        size = header_size(version) + body
        frame = src.take(size)
        if version in CHECKED:
            rec_no = max(rec_no, HEADER_CRC.unpack_from(frame, 0)[9])
        if len(frame) < size:
            lost(at, rec_no, f"{source}: truncated frame at byte {at} ({n} records announced; the file ends "
                 f"{size - len(frame)} bytes short)", frame[:HEADER_CRC.size].hex(), n, len(frame))
            return
        try:
            batch, _ = decode_frame_at(frame, 0, reg, source, rec_no, rejects, dictionary)
        except EventFormatError as e:
            reason = str(e).replace(" at byte 0", f" at byte {at}")  # the offset in the file, not in ``frame``
            lost(at, rec_no, f"{reason} (records {rec_no} to {rec_no + n - 1})" if n else reason,
                 frame[:HEADER_CRC.size].hex(), n, size)
            rec_no += n
            continue
        rec_no += n
        yield batch
