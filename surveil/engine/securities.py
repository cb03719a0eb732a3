"""Securities reference data (contract version 2, docs/events.md): ``venue,symbol,prev_close,risk_warning
[,limit_up,limit_down]`` (CSV with a header line), or the compacted securities topic of the stream workers
(key ``VENUE:symbol``, value ``{"prev_close": ..., "risk_warning": ..., "limit_up": ..., "limit_down": ...}``).

Prices are yuan with at most 4 decimals, kept as integers in 1/10000 yuan (``schema.PRICE_SCALE``), as event
prices are. ``risk_warning``: the security is under risk warning (ST, *ST: 风险警示板).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from surveil.engine.refdata import RefDataError, header_error
from surveil.events.errors import Reject
from surveil.events.io import text_of
from surveil.events.schema import PRICE_MAX, PRICE_SCALE, VENUE_CODE, VENUES

COLUMNS = ("venue", "symbol", "prev_close", "risk_warning")
OPTIONAL = ("limit_up", "limit_down")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class SecuritiesError(RefDataError):
    """A securities file that cannot be used at all (missing, unreadable, no header), or one bad value (with
    ``field``, ``value`` and ``reason``)."""


@dataclass(frozen=True, slots=True)
class Security:
    """One security's reference record. Prices in 1/10000 yuan (``schema.PRICE_SCALE``)."""

    prev_close: int
    risk_warning: bool
    limit_up: int | None = None
    limit_down: int | None = None


def _bad(field: str, value: Any, reason: str) -> SecuritiesError:
    return SecuritiesError(f"{field}={value!r}: {reason}", field, value, reason)


def price_units(field: str, value: Any, required: bool = True) -> int | None:
    """A price in yuan (a JSON number, or its decimal text in a CSV) as integer 1/10000 yuan; None for an absent
    optional one (None or empty text). Raises SecuritiesError naming the field and the value."""
    if value is None or (type(value) is str and not value.strip()):
        if required:
            raise _bad(field, value, "missing field")
        return None
    if type(value) is bool or not isinstance(value, (int, float, str)):
        raise _bad(field, value, "is not a price (yuan, at most 4 decimals)")
    try:
        d = Decimal(value.strip() if type(value) is str else repr(value) if type(value) is float else value)
    except InvalidOperation:
        raise _bad(field, value, "is not a price (yuan, at most 4 decimals)") from None
    if not d.is_finite():
        raise _bad(field, value, "is not a price (yuan, at most 4 decimals)")
    if d <= 0:
        raise _bad(field, value, "must be positive")
    if d > PRICE_MAX:
        raise _bad(field, value, "is out of range")
    units = d * PRICE_SCALE
    if units != units.to_integral_value():
        raise _bad(field, value, "has more than 4 decimal places (prices are kept in 1/10000 yuan)")
    return int(units)


def flag(field: str, value: Any) -> bool:
    """A boolean: JSON true or false, or in a CSV one of true/false, 1/0, yes/no, y/n, t/f (any case)."""
    if type(value) is bool:
        return value
    if type(value) is str:
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    raise _bad(field, value, "must be true or false")


class Securities:
    """Securities reference data by (venue code, symbol)."""

    def __init__(self) -> None:
        self.items: dict[tuple[int, str], Security] = {}
        self.version = 0  # bumped on every change, so caches can be invalidated

    def __len__(self) -> int:
        return len(self.items)

    def get(self, venue: int, symbol: str) -> Security | None:
        return self.items.get((venue, symbol))

    def set(self, venue: str, symbol: str, prev_close: Any, risk_warning: Any, limit_up: Any = None,
            limit_down: Any = None) -> Security:
        """Add or replace a security from its values as given (prices in yuan, as numbers or decimal text);
        SecuritiesError naming the first bad field and its value."""
        if type(venue) is not str or venue not in VENUE_CODE:
            raise _bad("venue", venue, f"unknown venue (expected one of {', '.join(VENUES)})")
        if type(symbol) is not str or not symbol or "\x00" in symbol:
            raise _bad("symbol", symbol, "must be a non-empty string without NUL characters")
        rec = Security(price_units("prev_close", prev_close), flag("risk_warning", risk_warning),
                       price_units("limit_up", limit_up, required=False),
                       price_units("limit_down", limit_down, required=False))
        if rec.limit_up is not None and rec.limit_up < rec.prev_close:
            raise _bad("limit_up", limit_up, "is below prev_close")
        if rec.limit_down is not None and rec.limit_down > rec.prev_close:
            raise _bad("limit_down", limit_down, "is above prev_close")
        self.items[(VENUE_CODE[venue], symbol)] = rec
        self.version += 1
        return rec

    def remove(self, venue: str, symbol: str) -> None:
        if self.items.pop((VENUE_CODE.get(venue, -1), symbol), None) is not None:
            self.version += 1

    def set_record(self, key: bytes | str | None, value: bytes | None) -> None:
        """Apply one record of the securities topic: key ``VENUE:symbol``, value the JSON object, or None (a
        tombstone: the security is removed). SecuritiesError naming the field at fault."""
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if not key or ":" not in key:
            raise _bad("key", key, "expected VENUE:symbol")
        venue, symbol = key.split(":", 1)
        if value is None:
            self.remove(venue, symbol)
            return
        try:
            d = orjson.loads(value)
        except orjson.JSONDecodeError as e:
            raise _bad("value", value[:200].decode("utf-8", "replace"), f"bad JSON: {e}") from None
        if type(d) is not dict:
            raise _bad("value", d, "expected a JSON object with prev_close, risk_warning, limit_up, limit_down")
        self.set(venue, symbol, d.get("prev_close"), d.get("risk_warning"), d.get("limit_up"), d.get("limit_down"))

    @staticmethod
    def record_value(rec: Security) -> dict[str, Any]:
        """The topic's JSON value of a record (prices in yuan)."""
        def yuan(u: int | None):
            if u is None:
                return None
            return u // PRICE_SCALE if u % PRICE_SCALE == 0 else u / PRICE_SCALE

        return {"prev_close": yuan(rec.prev_close), "risk_warning": rec.risk_warning,
                "limit_up": yuan(rec.limit_up), "limit_down": yuan(rec.limit_down)}

    @classmethod
    def load_csv(cls, path: str | Path, rejects: list[Reject] | None = None) -> Securities:
        """Read the securities CSV. A bad row is a reject (kept with its line number, the field and the value),
        not a stop; a row repeating an earlier row's venue and symbol too (the first is kept)."""
        path = Path(path)
        sec = cls()
        text = text_of(path, "securities file", SecuritiesError)
        seen: dict[tuple[str, str], int] = {}
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader, None)
        except csv.Error as e:
            raise SecuritiesError(f"securities file {path} is not a CSV: {e}") from None
        if header is None:
            raise SecuritiesError(f"securities file {path} is empty (expected a header "
                                  f"{','.join(COLUMNS)}[,{','.join(OPTIONAL)}])")
        cols = [h.strip().lower() for h in header]
        missing = [c for c in COLUMNS if c not in cols]
        if missing:
            raise SecuritiesError(header_error(path, "securities file", header, missing))
        ix = {c: cols.index(c) for c in (*COLUMNS, *OPTIONAL) if c in cols}
        needed = max(ix[c] for c in COLUMNS) + 1  # a row may leave out optional cells after the last required
        lineno = 1
        try:
            for lineno, row in enumerate(reader, start=2):
                if not row or not any(x.strip() for x in row):
                    continue

                def bad(field, value, reason, row=row, lineno=lineno):
                    if rejects is not None:
                        rejects.append(Reject(source=str(path), location=lineno, field=field, value=value,
                                              reason=reason, raw=",".join(row)))

                if len(row) < needed:
                    bad("row", len(row), f"has {len(row)} columns, header has {len(cols)}")
                    continue
                venue, symbol = row[ix["venue"]].strip(), row[ix["symbol"]].strip()
                first = seen.get((venue, symbol))
                if first is not None:
                    bad("symbol", symbol, f"repeats {venue}:{symbol} of line {first} (the first is kept)")
                    continue
                try:
                    sec.set(venue, symbol, row[ix["prev_close"]], row[ix["risk_warning"]],
                            *(row[ix[c]] if ix.get(c, len(row)) < len(row) else None for c in OPTIONAL))
                except SecuritiesError as e:
                    bad(e.field, e.value, e.reason)
                    continue
                seen[(venue, symbol)] = lineno
        except csv.Error as e:
            raise SecuritiesError(f"securities file {path}: line {lineno + 1} is not CSV: {e}") from None
        return sec


__all__ = ["Securities", "Security", "SecuritiesError", "price_units", "COLUMNS", "OPTIONAL"]
