"""The columnar event batch and the string registry it refers to."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, fields
from itertools import repeat

import numpy as np

try:  # the compiled frame decoder (setup.py); binary.py falls back to numpy without it
    from surveil.events import _svev
except ImportError:  # pragma: no cover - exercised by the fallback test through binary.FAST = False
    _svev = None

from surveil.events.schema import (
    F_HAS_ORDER_ID,
    F_ORDER_ID_INT,
    MATCH_ID_MAX_BYTES,
    MF_HAS_MATCH_ID,
    MF_MATCH_ID_INT,
    ORDER_ID_MAX_BYTES,
)


class Interner:
    """Maps strings to dense int ids (and back). ``None`` maps to -1."""

    __slots__ = ("ids", "names", "_lock", "bytes_ids", "scratch")

    def __init__(self) -> None:
        self.ids: dict[object, int] = {None: -1}
        self.names: list[str] = []
        self._lock = threading.Lock()  # the reader thread and the engine may both add strings
        # the compiled decoder's cache: UTF-8 bytes -> id of the strings frames have brought (not pickled)
        self.bytes_ids = _svev.StrTable() if _svev is not None else None
        self.scratch: np.ndarray | None = None  # the compiled encoder's work array (binary.encode_frame_fast)

    def __getstate__(self) -> dict:
        return {"names": self.names}

    def __setstate__(self, d: dict) -> None:
        self.names = d["names"]
        self.ids = {None: -1, **{n: i for i, n in enumerate(self.names)}}
        self._lock = threading.Lock()
        self.bytes_ids = _svev.StrTable() if _svev is not None else None
        self.scratch = None

    def lookup(self, values: list) -> np.ndarray:
        """Ids of hashable ``values``, -2 where not interned yet (nothing is added)."""
        return np.fromiter(map(self.ids.get, values, repeat(-2, len(values))), dtype=np.int64, count=len(values))

    def __len__(self) -> int:
        return len(self.names)

    def intern(self, s: str) -> int:
        i = self.ids.get(s)
        if i is None:
            with self._lock:
                i = self.ids.get(s)
                if i is None:
                    i = len(self.names)
                    self.names.append(s)
                    self.ids[s] = i
        return i

    def intern_list(self, values: list, refuse=None) -> np.ndarray:
        """Ids of ``values`` (str or None). Raises TypeError for a non-string value, and ValueError, before
        interning anything, when ``refuse(s)`` is true for a string ``s`` not interned yet."""
        try:
            out = np.fromiter(map(self.ids.get, values, repeat(-2, len(values))), dtype=np.int64,
                              count=len(values))
        except TypeError:  # an unhashable value
            raise TypeError(next(v for v in values if not isinstance(v, (str, type(None))))) from None
        missing = np.flatnonzero(out == -2).tolist()
        if missing:
            if refuse is not None and any(type(values[i]) is str and refuse(values[i]) for i in missing):
                raise ValueError("a string refused by the caller")
            ids, names = self.ids, self.names
            vals = [values[i] for i in missing]
            with self._lock:  # once for all (a cold start brings many new strings at once)
                if set(map(type, vals)) == {str} and ids.keys().isdisjoint(vals):
                    # the usual case, in bulk: ids in order of first appearance, as one by one
                    new = list(dict.fromkeys(vals))
                    start = len(names)
                    names.extend(new)  # the names first: a reader without the lock never sees a bare id
                    ids.update(zip(new, range(start, start + len(new))))
                    out[missing] = np.fromiter(map(ids.__getitem__, vals), np.int64, len(vals))
                else:
                    for i, v in zip(missing, vals):
                        if type(v) is not str:  # the strings before it stay interned, as with intern()
                            raise TypeError(v)
                        j = ids.get(v)
                        if j is None:
                            j = len(names)
                            names.append(v)
                            ids[v] = j
                        out[i] = j
        return out.astype(np.int32)

    def lookup_table(self, strings: list[str]) -> np.ndarray:
        """Ids of a frame's string table (for binary frames)."""
        return self.intern_list(strings)


class Registry:
    """All interned strings of one run: accounts, symbols, owners, brokers."""

    def __init__(self) -> None:
        self.accounts = Interner()
        self.symbols = Interner()
        self.owners = Interner()
        self.brokers = Interner()


@dataclass(slots=True)
class Batch:
    """A columnar batch of events in arrival order.

    Integer columns refer to a :class:`Registry` (-1 = absent). ``order_id`` is
    either an object array of the original JSON values (str/int/None) or a
    fixed-width bytes array (binary input); use :meth:`order_id_at`.
    ``src`` holds each event's location in its input (line or record number).

    ``match_id`` (contract version 2) is optional: None when no event of the batch has one, else a raw
    column like ``order_id`` (object, int64 or S24) with ``mflags`` (``MF_*`` bits: has one, is an integer);
    use :meth:`match_id_at` / :func:`match_id_values`.
    """

    ts: np.ndarray  # int64 ns
    venue: np.ndarray  # uint8
    etype: np.ndarray  # uint8
    side: np.ndarray  # uint8
    flags: np.ndarray  # uint8
    price: np.ndarray  # int64, 1/10000 yuan
    qty: np.ndarray  # int64
    seq: np.ndarray  # int64
    account: np.ndarray  # int32
    symbol: np.ndarray  # int32
    owner: np.ndarray  # int32
    broker: np.ndarray  # int32
    order_id: np.ndarray  # object (JSON values), int64 (integer ids) or S24 (binary frames)
    src: np.ndarray  # int64
    match_id: np.ndarray | None = None  # None, or object (JSON values), int64 or S24 (binary frames)
    mflags: np.ndarray | None = None  # uint8 MF_* bits; None exactly when match_id is None
    # int64 ns: the valid_from of the reference row that gave each event's owner and broker (a partition stage's
    # rows to the owner stage; refdata.SINCE_ALWAYS: a row without one, or none); None: not resolved
    ref_from: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def empty(cls) -> Batch:
        return cls(
            ts=np.empty(0, np.int64), venue=np.empty(0, np.uint8), etype=np.empty(0, np.uint8),
            side=np.empty(0, np.uint8), flags=np.empty(0, np.uint8), price=np.empty(0, np.int64),
            qty=np.empty(0, np.int64), seq=np.empty(0, np.int64), account=np.empty(0, np.int32),
            symbol=np.empty(0, np.int32), owner=np.empty(0, np.int32), broker=np.empty(0, np.int32),
            order_id=np.empty(0, object), src=np.empty(0, np.int64),
        )

    def columns(self) -> dict[str, np.ndarray]:
        """The columns, without the optional ones the batch does not have (None)."""
        cols = {name: getattr(self, name) for name in _BATCH_FIELDS}
        if self.match_id is None:
            del cols["match_id"], cols["mflags"]
        if self.ref_from is None:
            del cols["ref_from"]
        return cols

    def take(self, idx) -> Batch:
        """Rows selected by a boolean mask, an index array or a slice."""
        return Batch(**{k: v[idx] for k, v in self.columns().items()})

    def copy(self) -> Batch:
        """The same rows in arrays of their own (not views of another batch's arrays)."""
        return Batch(**{k: v.copy() for k, v in self.columns().items()})

    @staticmethod
    def concat(batches: Iterable[Batch]) -> Batch:
        bs = [b for b in batches if len(b)]
        if not bs:
            return Batch.empty()
        if len(bs) == 1:
            return bs[0]
        cols = {}
        with_mid = any(b.match_id is not None for b in bs)
        for name in _BATCH_FIELDS:
            if name in ("match_id", "mflags") and not with_mid:
                continue
            if name == "match_id":
                arrs = [b.match_id if b.match_id is not None else _no_match_ids(len(b)) for b in bs]
                flags = [b.mflags if b.mflags is not None else np.zeros(len(b), np.uint8) for b in bs]
                if len({a.dtype for a in arrs}) > 1:
                    arrs = [a if a.dtype == object else _bytes_ids_to_object(a, f, MF_HAS_MATCH_ID, MF_MATCH_ID_INT)
                            for a, f in zip(arrs, flags)]
            elif name == "mflags":
                arrs = [b.mflags if b.mflags is not None else np.zeros(len(b), np.uint8) for b in bs]
            elif name == "ref_from":
                if all(b.ref_from is None for b in bs):
                    continue
                arrs = [b.ref_from if b.ref_from is not None else np.full(len(b), -(1 << 63), np.int64) for b in bs]
            else:
                arrs = [getattr(b, name) for b in bs]
                if name == "order_id" and len({a.dtype for a in arrs}) > 1:
                    arrs = [a if a.dtype == object else _bytes_ids_to_object(a, b.flags) for a, b in zip(arrs, bs)]
            cols[name] = np.concatenate(arrs)
        return Batch(**cols)

    def order_id_at(self, i: int) -> str | int | None:
        return _raw_id_at(self.order_id, int(self.flags[i]), i, F_HAS_ORDER_ID, F_ORDER_ID_INT)

    def match_id_at(self, i: int) -> str | int | None:
        if self.match_id is None:
            return None
        return _raw_id_at(self.match_id, int(self.mflags[i]), i, MF_HAS_MATCH_ID, MF_MATCH_ID_INT)

    def order_ids_bytes(self) -> np.ndarray:
        """The order ids as a fixed-width bytes array (for the binary format)."""
        return _ids_bytes(self.order_id, self.flags, F_HAS_ORDER_ID, ORDER_ID_MAX_BYTES, "order_id")

    def match_ids_bytes(self) -> np.ndarray:
        """The match ids as a fixed-width bytes array (for the binary format; all empty without match ids)."""
        if self.match_id is None:
            return np.zeros(len(self), f"S{MATCH_ID_MAX_BYTES}")
        return _ids_bytes(self.match_id, self.mflags, MF_HAS_MATCH_ID, MATCH_ID_MAX_BYTES, "match_id")


_BATCH_FIELDS = tuple(f.name for f in fields(Batch))  # dataclasses.fields() costs ≈ 5 µs a call


def _raw_id_at(raw: np.ndarray, f: int, i: int, has_bit: int, int_bit: int) -> str | int | None:
    """Row ``i`` of a raw id column (order or match ids) as its JSON value; ``f``: the row's flags."""
    v = raw[i]
    if raw.dtype == object:
        return v
    if not f & has_bit:
        return None
    if raw.dtype.kind == "i":
        return int(v)
    s = bytes(v).decode("utf-8")
    return int(s) if f & int_bit else s


def _ids_bytes(raw: np.ndarray, flags: np.ndarray, has_bit: int, width: int, name: str) -> np.ndarray:
    """A raw id column as fixed-width bytes (absent: empty); ValueError naming the field for one too long."""
    if raw.dtype.kind == "S":
        return raw
    if raw.dtype.kind == "i":
        out_i = raw.astype(f"S{width}")
        out_i[(flags & has_bit) == 0] = b""
        return out_i
    out = []
    for v in raw:
        if v is None:
            out.append(b"")
        else:
            b = str(v).encode("utf-8")
            if len(b) > width:
                raise ValueError(f"{name}={v!r}: longer than {width} bytes")
            out.append(b)
    return np.array(out, dtype=f"S{width}")


def _no_match_ids(n: int) -> np.ndarray:
    return np.zeros(n, np.int64)  # every row absent (mflags 0)


def match_id_values(raw: np.ndarray | None, mflags: np.ndarray | None, n: int = 0) -> list:
    """Match ids as Python values (str, int or None) from a raw column; ``n`` Nones without one."""
    if raw is None:
        return [None] * n
    if raw.dtype == object:
        return raw.tolist()
    return _bytes_ids_to_object(raw, mflags, MF_HAS_MATCH_ID, MF_MATCH_ID_INT).tolist()


def order_id_values(raw: np.ndarray, flags: np.ndarray) -> list:
    """Order ids as Python values (str, int or None) from a raw column (object or fixed-width bytes)."""
    if raw.dtype == object:
        return raw.tolist()
    return _bytes_ids_to_object(raw, flags).tolist()


def concat_order_ids(a: np.ndarray, fa: np.ndarray, b: np.ndarray, fb: np.ndarray) -> np.ndarray:
    if not len(a):
        return b.copy()
    if not len(b):
        return a
    if a.dtype != b.dtype:
        a = a if a.dtype == object else _bytes_ids_to_object(a, fa)
        b = b if b.dtype == object else _bytes_ids_to_object(b, fb)
    return np.concatenate([a, b])


def _bytes_ids_to_object(arr: np.ndarray, flags: np.ndarray, has_bit: int = F_HAS_ORDER_ID,
                         int_bit: int = F_ORDER_ID_INT) -> np.ndarray:
    """Order (or match) ids as an object array of Python values, from an int64 or fixed-width bytes column."""
    out = np.empty(len(arr), dtype=object)
    if arr.dtype.kind == "i":
        out[:] = arr.tolist()
        out[(flags & has_bit) == 0] = None
        return out
    for i, (v, f) in enumerate(zip(arr, flags)):
        if not f & has_bit:
            out[i] = None
        else:
            s = bytes(v).decode("utf-8")
            out[i] = int(s) if f & int_bit else s
    return out
