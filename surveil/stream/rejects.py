"""Rejects as the workers publish them: every one serialisable and bounded, whatever the bad input held.

A reject keeps the bad item's own bytes (``original``: at most ``REJECT_KEEP`` bytes of it, hex for a binary
frame) and what was wrong with it (``field``, ``value``, ``reason``, ``message``). The input decides how large
those are: an event whose venue is a 2 MB string gives a 2 MB ``value`` (and a reason and message quoting it),
which the broker refuses (1 MB by default), and a value nested more than 254 levels deep cannot be written as
JSON at all. Either made the worker's publishing fail on every retry of that record. :func:`bounded` cuts
every field to a fixed size (``original`` to ``2 * REJECT_KEEP`` bytes of JSON, any other field to
``FIELD_KEEP``) and marks what it cut (``<field>_truncated``); :func:`encode` is the JSON the worker sends, at
most ``REJECT_MAX`` bytes for any reject the stages make. The whole record is still in its topic at its
offset (``record_bytes`` and ``record_sha256`` say which).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

#: a reject keeps at most this much of the bad item (its own bytes; hex for binary), with the record's length and
#: hash: the whole record is found in the feed topic at its offset
REJECT_KEEP = 64 * 1024
#: JSON bytes of any other field of a reject (the value, the reason, the message, a key)
FIELD_KEEP = 1024
#: at most this many bytes of JSON for a reject (``original`` hex is 2 bytes a byte; the other fields, a few KiB)
REJECT_MAX = 2 * REJECT_KEEP + 4096

_ORIGINAL_MAX = 2 * REJECT_KEEP + 2  # JSON of the original: the hex of REJECT_KEEP bytes, quoted


def _json_len(text: str) -> int:
    return len(orjson.dumps(text))


def cut_text(text: str, limit: int) -> tuple[str, bool]:
    """``text`` (cut if needed) whose JSON string takes at most ``limit`` bytes, and whether it was cut. JSON
    writes a character in 1 to 6 bytes (a control character as ``\\u00XX``), so the cut is found by size."""
    try:
        n = _json_len(text)
    except orjson.JSONEncodeError:  # lone surrogates: not UTF-8
        text = text.encode("utf-8", "replace").decode("utf-8")
        n = _json_len(text)
    if n <= limit:
        return text, False
    keep = len(text)
    while n > limit and keep:
        keep = min(keep - 1, max(0, keep * (limit - 2) // n))
        n = _json_len(text[:keep])
    return text[:keep], True


def _value(v: Any, limit: int) -> tuple[Any, bool]:
    """A field's value, as it is when it is small JSON; else its JSON text (or a note), cut."""
    if v is None or isinstance(v, bool):
        return v, False
    if isinstance(v, int):
        if -(2**63) <= v < 2**64:
            return v, False
        return cut_text(str(v), limit)  # JSON has no limit; orjson writes 64 bits
    if isinstance(v, float):
        return (v, False) if math.isfinite(v) else (repr(v), False)
    if isinstance(v, str):
        return cut_text(v, limit)
    try:
        text = orjson.dumps(v, default=str)
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        return f"a {type(v).__name__} that cannot be written as JSON (nested more than 254 levels deep)", True
    if len(text) <= limit:
        return v, False
    return cut_text(text.decode("utf-8"), limit)[0], True


def bounded(d: dict[str, Any]) -> dict[str, Any]:
    """The reject ``d`` with every field within its size (see the module's docstring): what was cut has
    ``<field>_truncated: true``."""
    out: dict[str, Any] = {}
    cut_fields = []
    for k, v in d.items():
        k = str(k)[:64]
        limit = _ORIGINAL_MAX if k == "original" else FIELD_KEEP
        out[k], cut = _value(v, limit)
        if cut:
            cut_fields.append(k)
    for k in cut_fields:
        out[f"{k}_truncated"] = True
    return out


def encode(d: dict[str, Any]) -> bytes:
    """The JSON the worker publishes for the reject ``d`` (bounded; never raises)."""
    return orjson.dumps(bounded(d), default=str)
