"""Checkpoints as a versioned, documented format (no pickle: a checkpoint is data, never code).

A checkpoint record's value is::

    b"SVCP" | u8 format version (1) | HMAC-SHA256 (32 bytes) | zlib(msgpack(document))

The HMAC covers the record's key (``group|topic:partition``) and the compressed document, under the
worker's ``SURVEIL_CHECKPOINT_KEY``: a checkpoint written by anyone without the key, or copied from another
partition or group, is detected and never used (the partition's state is rebuilt from the feed instead).

The document is a map (see ``PartitionState.state`` and ``KeyedState.state``) with ``stage``
(``partition``, ``owner`` or ``security``), ``source`` and ``offset`` (the last input offset the state
reflects), ``engine`` (the interned names the state's integer ids refer to, what the engine holds back, its
event time, the market context, and ``rules``: ``{rule id: [state version,
data]}``, with ``params``, the parameters the rules ran under) and the stage's own fields. numpy arrays
are maps ``{dtype, shape, data}`` (``surveil.rules.base.array_data``). Parameters are never taken from a
checkpoint: a restored stage runs under the worker's current configuration, and what changed is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from typing import Any

import msgpack

from surveil.exceptions import SurveilError

MAGIC = b"SVCP"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<4sB32s")
#: the key when none is configured: checkpoints are then checked for damage and for the partition they belong
#: to, but anyone who can write the topic can forge one (the worker says so at start)
UNKEYED = b"surveil-unkeyed"


class CheckpointError(SurveilError):
    """A checkpoint that cannot be used: not this format, a version this code does not know, damaged, or of
    another stage."""


def pack(doc: dict[str, Any]) -> bytes:
    """The document as msgpack (done at once, on the loop: it must not see the state change meanwhile)."""
    return msgpack.packb(doc, use_bin_type=True)


def _mac(key: bytes, binding: bytes, body) -> bytes:
    return hmac.new(key, len(binding).to_bytes(4, "little") + binding + bytes(body), hashlib.sha256).digest()


def seal(packed: bytes, key: bytes = UNKEYED, binding: bytes = b"") -> bytes:
    """A checkpoint record's value from ``pack``'s bytes, for the record key ``binding``. zlib releases the GIL
    while it works, so a worker seals its checkpoints in a thread while its loop goes on."""
    body = zlib.compress(packed, 1)
    return _HEAD.pack(MAGIC, FORMAT_VERSION, _mac(key, binding, body)) + body


def unseal(blob: bytes, stage: str | tuple[str, ...] | None = None, key: bytes = UNKEYED,
           binding: bytes = b"") -> dict[str, Any]:
    """The document of a checkpoint record (of ``stage`` when given, for the record key ``binding``), or a
    :class:`CheckpointError` saying why it cannot be used."""
    if blob is None or len(blob) < _HEAD.size:
        raise CheckpointError(f"checkpoint of {0 if blob is None else len(blob)} bytes: too short")
    magic, version, mac = _HEAD.unpack_from(blob)
    if magic != MAGIC:
        raise CheckpointError(f"checkpoint magic {magic!r}: not a surveil checkpoint (expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format version {version}: this code reads version {FORMAT_VERSION}")
    body = memoryview(blob)[_HEAD.size:]
    if not hmac.compare_digest(mac, _mac(key, binding, body)):
        raise CheckpointError("checkpoint authentication failed: written without this worker's checkpoint key, "
                              "for another partition or group, or damaged")
    try:
        doc = msgpack.unpackb(zlib.decompress(body), raw=False, strict_map_key=False)
    except (zlib.error, ValueError, msgpack.UnpackException) as e:
        raise CheckpointError(f"checkpoint is damaged: {e}") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"checkpoint document is a {type(doc).__name__}, not a map")
    if stage is not None:
        want = (stage,) if isinstance(stage, str) else stage
        if doc.get("stage") not in want:
            raise CheckpointError(f"checkpoint of stage {doc.get('stage')!r}, expected {' or '.join(want)}")
    return doc
