"""Record formats on the topics the workers read.

Feed topics (written by ``surveil feed`` or an exchange gateway), one record is one of:
- a binary frame (starts with ``SVEV``), see :mod:`surveil.events.binary`;
- a JSON array of events, or one JSON event;
- a progress marker ``{"kind": "progress", "ts": T}``: no later record in this partition carries an
  event earlier than ``T`` (a feed sends them to idle partitions, and one past midnight at the end of
  a trading day).

Owner topic (``surveil.owner``, written by partition workers, read by owner workers), every record
is ``b"SVO1" + u32 header length + JSON header + payload`` where the header has ``kind`` and
``source`` (the feed ``topic:partition`` it comes from):
- ``trades``: payload = row positions + binary frame of sell trades, owner and broker filled in, without
  their symbol (owner-level rules do not use it) (routed by owner);
- ``market``: payload = int64 pairs (day * ``SECONDS_KEY`` + second of day, sell value units) of complete
  seconds (broadcast);
- ``index``: payload = row positions + binary frame of index events (broadcast);
- ``progress``: header ``ts``: the source has forwarded everything earlier than ``ts`` (broadcast);
  with ``"idle": true`` the source is caught up and quiet (``ts`` may be null): owner rules stop waiting
  for it until its next record;
- ``bundle``: payload = several of the above, each prefixed by its u32 length (what workers send: one
  record per owner partition per poll).

Owner and security topics carry the same records; the security stage's rows are routed by ``VENUE:symbol``
instead of by owner (see :mod:`surveil.engine.plan`).

Checkpoint topic (``surveil.checkpoints``, compacted, one key per group and input partition): see
:mod:`surveil.stream.checkpoint` (versioned data, never pickle).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from surveil.stream.exceptions import EnvelopeError  # noqa: F401 - importable from here too

OWNER_MAGIC = b"SVO1"
_LEN = struct.Struct("<I")


def pack(header: dict[str, Any], payload: bytes = b"") -> bytes:
    h = orjson.dumps(header)
    return OWNER_MAGIC + _LEN.pack(len(h)) + h + payload


def unpack(value: bytes) -> tuple[dict[str, Any], memoryview]:
    if value[:4] != OWNER_MAGIC:
        raise EnvelopeError(f"bad owner-topic record magic {bytes(value[:4])!r}")
    (n,) = _LEN.unpack_from(value, 4)
    try:
        header = orjson.loads(value[8:8 + n])
    except orjson.JSONDecodeError as e:
        raise EnvelopeError(f"bad owner-topic header: {e}") from None
    return header, memoryview(value)[8 + n:]


def pack_bundle(items: list[bytes]) -> bytes:
    """Several owner-topic records in one (one Kafka record per owner partition per poll: far fewer sends)."""
    body = b"".join(_LEN.pack(len(x)) + x for x in items)
    return pack({"kind": "bundle", "n": len(items)}, body)


def unpack_bundle(payload) -> list[memoryview]:
    out = []
    mv = memoryview(payload)
    i = 0
    while i < len(mv):
        (n,) = _LEN.unpack_from(mv, i)
        out.append(mv[i + 4:i + 4 + n])
        i += 4 + n
    if i != len(mv):
        raise EnvelopeError("truncated bundle")
    return out


def pack_seconds(secs: np.ndarray, vals: np.ndarray) -> bytes:
    return np.stack([secs.astype(np.int64), vals.astype(np.int64)], axis=1).tobytes()


def unpack_seconds(payload) -> tuple[np.ndarray, np.ndarray]:
    a = np.frombuffer(payload, dtype=np.int64).reshape(-1, 2)
    return a[:, 0], a[:, 1]


#: market seconds travel as one int64 key: trading day index * SECONDS_KEY + second of the day
SECONDS_KEY = 100_000


def pack_rows(positions: np.ndarray, frame: bytes, ref_from: np.ndarray | None = None) -> bytes:
    """A frame preceded by the positions of its rows (u32 count, int64 each) and, when given (the record's header
    then says ``"ref_from": true``), the valid_from of each row's reference row (int64 each)."""
    extra = ref_from.astype(np.int64).tobytes() if ref_from is not None else b""
    return _LEN.pack(len(positions)) + positions.astype(np.int64).tobytes() + extra + frame


def unpack_rows(payload, ref_from: bool = False) -> tuple[np.ndarray, memoryview] | tuple[np.ndarray, memoryview,
                                                                                          np.ndarray]:
    """(positions, frame), or (positions, frame, ref_from) when ``ref_from`` (the header said so)."""
    mv = memoryview(payload)
    if len(mv) < 4:
        raise EnvelopeError("truncated row positions")
    (n,) = _LEN.unpack_from(mv, 0)
    width = 16 if ref_from else 8
    if len(mv) < 4 + width * n:
        raise EnvelopeError(f"truncated row positions ({n} announced)")
    pos = np.frombuffer(mv, dtype=np.int64, count=n, offset=4)
    if not ref_from:
        return pos, mv[4 + 8 * n:]
    return pos, mv[4 + 16 * n:], np.frombuffer(mv, dtype=np.int64, count=n, offset=4 + 8 * n)


def feed_kind(value: bytes) -> str:
    """``"frame"``, ``"json"`` or ``"progress"`` (a cheap look at the first bytes)."""
    if value[:4] == b"SVEV":
        return "frame"
    head = value[:64].lstrip()
    if head.startswith(b"{") and b'"kind"' in head and b'"progress"' in value[:128]:
        return "progress"
    return "json"
