"""Alert fields as text for people, the same in the replay report and the live console.

Nanosecond timestamps are int64: a browser's JSON numbers are doubles (53-bit mantissa), so
``1708306200815287123`` becomes ``1708306200815287040`` there. The console's page therefore never turns a
timestamp into a JavaScript number for display: the text is made here, in Python, from the exact integer,
and sent as a string (``display`` of ``/api/alerts/{id}``, see docs/console.md).

The rule for which integers are times: an integer in the accepted timestamp range of events
(``TS_MIN``..``TS_MAX``: 1990-12-19 .. 2100-01-01 in ns) is a time, unless its field names an id (a name
part ``id`` or ``ids``, e.g. ``threshold_message_order_id``, ``sample_order_ids``: 64-bit order ids can
fall in that range). A time is shown in Asia/Shanghai (UTC+08:00, no daylight saving) to the digits it has
(``2024-02-19 09:30:00.815287 +08:00`` for ``1708306200815287000``). Any other integer is shown exactly
(thousands separated). Lists are shortened to :data:`LIST_MOST` items (``"… N more"``) so a page stays
small whatever the evidence holds.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from surveil.events.schema import TS_MAX, TS_MIN, ns_to_iso

#: items of a list shown in an evidence field's text (the rest are counted)
LIST_MOST = 50
#: evidence fields shown in tables of their own (not as text rows)
OWN_TABLES = ("by_account", "indexes", "peak_per_second", "per_second", "per_window")
_ID = re.compile(r"(^|_)ids?($|_)")


def is_time(v: Any, key: str = "") -> bool:
    """Whether ``v`` (the value of field ``key``) is a nanosecond timestamp (see the module's rule)."""
    return type(v) is int and TS_MIN <= v < TS_MAX and not _ID.search(key)


def ns_text(ns: int) -> str:
    """``2024-02-19 09:30:00.815287 +08:00``: Asia/Shanghai, to the digits the value has (ms, us or ns)."""
    iso = ns_to_iso(int(ns))  # 2024-02-19T09:30:00.815287000+08:00
    frac = iso[20:29]
    while frac.endswith("000"):
        frac = frac[:-3]
    return f"{iso[:10]} {iso[11:19]}{'.' + frac if frac else ''} +08:00"


def plain(v: Any, key: str = "") -> Any:
    """``v`` with every time as its text and lists shortened (for :func:`value_text`)."""
    if isinstance(v, dict):
        return {str(k): plain(x, str(k)) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        out = [plain(x, key) for x in v[:LIST_MOST]]
        if len(v) > LIST_MOST:
            out.append(f"… {len(v) - LIST_MOST:,} more")
        return out
    return ns_text(v) if is_time(v, key) else v


def value_text(v: Any, key: str = "") -> str:
    """One evidence field's value as text: a time in Asia/Shanghai, an integer exactly (``1,234``), a
    structure as JSON text made here, so every digit is kept (times as their text, lists shortened)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if is_time(v, key):
        return ns_text(v)
    if type(v) is int:
        return str(v) if _ID.search(key) else f"{v:,}"
    if isinstance(v, (dict, list, tuple)):
        return orjson.dumps(plain(v, key), option=orjson.OPT_NON_STR_KEYS).decode()
    return str(v)


def evidence_text(ev: dict[str, Any]) -> list[tuple[str, str]]:
    """The evidence as (field, text) rows, sorted by field, without those shown in tables of their own; the
    per-second (or per-window) counts are summarised (the counts of the first :data:`LIST_MOST`)."""
    rows = [(str(k), value_text(ev[k], str(k))) for k in sorted(ev, key=str) if k not in OWN_TABLES]
    for k in ("per_second", "per_window"):
        v = ev.get(k)
        if isinstance(v, list) and v:
            counts = [value_text(x[1]) if isinstance(x, (list, tuple)) and len(x) > 1 else value_text(x)
                      for x in v[:LIST_MOST]]
            rows.append((k, ", ".join(counts) + (f" … {len(v) - LIST_MOST:,} more" if len(v) > LIST_MOST else "")))
    return rows
