"""Reference data: ``venue,account,owner,broker[,reported][,valid_from]`` (CSV with a header line).

Validity. A row may carry ``valid_from``: a date (00:00 Asia/Shanghai that day) or an ISO-8601 time with an
offset. An account may have several rows; a row holds from its ``valid_from`` until the account's next row
(a row without ``valid_from`` holds since always, so it can only be an account's first row). Before an
account's first row the account has no reference data (it is its own owner, without a broker). Every lookup
is made as of an event's own time (``as_of``), so re-running an old day with a file that has since gained rows
gives that day's links.

Rows of one account must come in increasing ``valid_from`` order (in the file, in a topic value); two rows of
one account with the same ``valid_from`` and different contents, or a row earlier than the one before it, are
an error naming both rows (``RefDataError``; replay exits 1, a stream worker rejects the topic record). The
same row given twice is harmless.
"""

from __future__ import annotations

import csv
import io
import re
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surveil.engine.exceptions import RefDataError  # noqa: F401 - importable from here too
from surveil.events.errors import Reject
from surveil.events.io import text_of
from surveil.events.schema import SHANGHAI_OFFSET_NS, VENUE_CODE, VENUES, ns_to_iso

_TRUE = {"true", "1", "yes", "y", "t"}
#: a member firm's id names its alert topic (hex-escaped, up to 3 characters a byte, within Kafka's 249)
BROKER_ID_MAX_BYTES = 64
_FALSE = {"false", "0", "no", "n", "f", ""}
#: the ``valid_from`` of a row without one (it holds since always); also "no row" in per-row columns
SINCE_ALWAYS = -(1 << 63)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_valid_from(value: Any) -> int | None:
    """``valid_from`` in ns: None (absent or empty), a date (00:00 Asia/Shanghai), an ISO-8601 time with an
    offset, or integer ns. Raises RefDataError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if type(value) is int:
        return value
    if not isinstance(value, str):
        raise RefDataError(f"valid_from={value!r}: must be a date or an ISO-8601 time with an offset",
                           "valid_from", value, "must be a date or an ISO-8601 time with an offset")
    s = value.strip()
    from surveil.events.jsonl import parse_ts  # noqa: PLC0415 - jsonl imports the event schema, not this

    try:
        if _DATE.match(s):
            return parse_ts(f"{s}T00:00:00+00:00") - SHANGHAI_OFFSET_NS
        return parse_ts(s)
    except Exception:  # noqa: BLE001 - a RowError: reworded for reference data
        reason = "must be a date (YYYY-MM-DD, 00:00 Asia/Shanghai) or an ISO-8601 time with an offset"
        raise RefDataError(f"valid_from={value!r}: {reason}", "valid_from", value, reason) from None


def valid_from_text(vf: int | None) -> str | None:
    """A ``valid_from`` as evidence and listings show it: ISO-8601 in Asia/Shanghai, None for since always."""
    return None if vf is None or vf == SINCE_ALWAYS else ns_to_iso(vf)


@dataclass(frozen=True, slots=True)
class AccountRef:
    owner: str | None
    broker: str | None
    reported: bool | None
    valid_from: int | None = None  # ns; None: since always
    where: str = ""  # where the row came from ("file:line", "topic"), for error messages

    def same(self, other: AccountRef) -> bool:
        return (self.owner, self.broker, self.reported) == (other.owner, other.broker, other.reported)

    @property
    def since(self) -> int:
        return SINCE_ALWAYS if self.valid_from is None else self.valid_from

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"owner": self.owner, "broker": self.broker, "reported": self.reported}
        if self.valid_from is not None:
            d["valid_from"] = valid_from_text(self.valid_from)
        return d


def _check_ids(account: str, owner: str | None, broker: str | None, reported: bool | None) -> None:
    for name, v in (("account", account), ("owner", owner), ("broker", broker)):
        if v is not None and (type(v) is not str or "\x00" in v):  # ids travel in frames as NUL-joined text
            reason = "must be a string without NUL characters"
            raise RefDataError(f"{name}={v!r}: {reason}", name, v, reason)
    if broker is not None and len(broker.encode("utf-8")) > BROKER_ID_MAX_BYTES:
        reason = f"longer than {BROKER_ID_MAX_BYTES} bytes (a member firm's id names its alert topic)"
        raise RefDataError(f"broker={broker[:80]!r}: {reason}", "broker", broker, reason)
    if reported is not None and type(reported) is not bool:
        reason = "must be true, false or absent"
        raise RefDataError(f"reported={reported!r}: {reason}", "reported", reported, reason)


def _row_name(r: AccountRef, i: int) -> str:
    vf = valid_from_text(r.valid_from) or "no valid_from"
    return f"{r.where or f'row {i + 1}'} (valid_from {vf}: owner={r.owner!r}, broker={r.broker!r}, " \
           f"reported={r.reported!r})"


def check_history(label: str, rows: list[AccountRef]) -> tuple[AccountRef, ...]:
    """An account's rows in the order given, checked (increasing ``valid_from``; repeats of one row dropped).
    Raises RefDataError naming both rows of a conflict or of a wrong order."""
    out: list[AccountRef] = []
    for i, r in enumerate(rows):
        if out:
            prev = out[-1]
            if r.since == prev.since:
                if r.same(prev):
                    continue
                raise RefDataError(f"{label}: two rows with the same valid_from and different contents: "
                                   f"{_row_name(prev, i - 1)} and {_row_name(r, i)}", "valid_from",
                                   valid_from_text(r.valid_from), "same valid_from, different contents")
            if r.since < prev.since:
                raise RefDataError(f"{label}: rows not in valid_from order: {_row_name(r, i)} comes after "
                                   f"{_row_name(prev, i - 1)}", "valid_from", valid_from_text(r.valid_from),
                                   "rows not in valid_from order")
        out.append(r)
    return tuple(out)


class RefData:
    """Each account's history: its rows in ``valid_from`` order (most accounts: one row, since always)."""

    def __init__(self) -> None:
        self.histories: dict[tuple[int, str], tuple[AccountRef, ...]] = {}
        self.version = 0  # bumped on every change, so caches can be invalidated
        # accounts with several rows or a valid_from: the engine then looks up as of each event's time
        self.timed: set[tuple[int, str]] = set()

    # -- changes ------------------------------------------------------------------------------------------
    def set(self, venue: str, account: str, owner: str | None, broker: str | None,
            reported: bool | None = None, valid_from: Any = None) -> None:
        """The account's history becomes this one row."""
        self.set_history(venue, account, [{"owner": owner, "broker": broker, "reported": reported,
                                           "valid_from": valid_from}])

    def set_history(self, venue: str, account: str, rows: list[dict[str, Any] | AccountRef]) -> None:
        """The account's whole history (rows in ``valid_from`` order). Raises RefDataError (nothing changed)."""
        if venue not in VENUE_CODE:
            raise RefDataError(f"venue={venue!r}: unknown venue")
        if type(account) is not str or not account:
            raise RefDataError(f"account={account!r}: must be a non-empty string", "account", account,
                               "must be a non-empty string")
        refs = []
        for i, r in enumerate(rows):
            if not isinstance(r, AccountRef):
                if type(r) is not dict:
                    raise RefDataError(f"{venue}:{account}: row {i + 1} is not a JSON object")
                owner, broker, reported = r.get("owner"), r.get("broker"), r.get("reported")
                _check_ids(account, owner, broker, reported)
                r = AccountRef(owner or None, broker or None, reported, parse_valid_from(r.get("valid_from")),
                               r.get("where", ""))
            else:
                _check_ids(account, r.owner, r.broker, r.reported)
            refs.append(r)
        hist = check_history(f"{venue}:{account}", refs)
        key = (VENUE_CODE[venue], account)
        if not hist:
            self.remove(venue, account)
            return
        self.histories[key] = hist
        if len(hist) > 1 or hist[0].valid_from is not None:
            self.timed.add(key)
        else:
            self.timed.discard(key)
        self.version += 1

    def remove(self, venue: str, account: str) -> None:
        key = (VENUE_CODE.get(venue, -1), account)
        if self.histories.pop(key, None) is not None:
            self.timed.discard(key)
            self.version += 1

    # -- lookups ----------------------------------------------------------------------------------------
    @property
    def accounts(self) -> dict[tuple[int, str], AccountRef]:
        """Each account's latest row (what holds from now on)."""
        return {k: h[-1] for k, h in self.histories.items()}

    def history(self, venue: int, account: str) -> tuple[AccountRef, ...]:
        return self.histories.get((venue, account), ())

    def get(self, venue: int, account: str, ts: int | None = None) -> AccountRef | None:
        """The account's row as of ``ts`` (ns; None: its latest row), or None (no row then)."""
        h = self.histories.get((venue, account))
        if not h:
            return None
        if ts is None or len(h) == 1 and h[0].valid_from is None:
            return h[-1]
        return self.as_of(h, ts)

    @staticmethod
    def as_of(h: tuple[AccountRef, ...], ts: int) -> AccountRef | None:
        i = bisect_right([r.since for r in h], ts) - 1
        return h[i] if i >= 0 else None

    @staticmethod
    def until(h: tuple[AccountRef, ...], ts: int) -> tuple[int, int]:
        """The interval [from, to) of ``ts`` in a history: the row's (or the time before the first row's)."""
        froms = [r.since for r in h]
        i = bisect_right(froms, ts)
        lo = froms[i - 1] if i > 0 else SINCE_ALWAYS
        hi = froms[i] if i < len(froms) else (1 << 63) - 1
        return lo, hi

    def get_many(self, venues: list[int], accounts: list[str]) -> list[AccountRef | None]:
        """``get`` (latest row) of each (venue, account) pair, in one pass (a cold start looks up every account)."""
        hs = map(self.histories.get, zip(venues, accounts))
        return [h[-1] if h else None for h in hs]

    # -- files --------------------------------------------------------------------------------------------
    @classmethod
    def load_csv(cls, path: str | Path, rejects: list[Reject] | None = None) -> RefData:
        """Read the accounts CSV. A bad row is a reject (kept with its line number), not a stop. Errors
        (RefDataError, naming the file): not UTF-8, a header without the required columns (with the columns found,
        and the separator when it looks like another one), rows of one account in conflict (the same
        ``valid_from`` and different contents: an identical repeat is fine) or out of ``valid_from`` order,
        naming both rows."""
        path = Path(path)
        ref = cls()
        text = text_of(path, "accounts file", RefDataError)
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            raise RefDataError(f"accounts file {path} is empty (expected a header venue,account,owner,broker)")
        cols = [h.strip().lower() for h in header]
        missing = [c for c in ("venue", "account", "owner", "broker") if c not in cols]
        if missing:
            raise RefDataError(header_error(path, "accounts file", header, missing))
        ix = {c: cols.index(c) for c in cols}
        history: dict[tuple[str, str], list[AccountRef]] = {}
        rows = short = 0
        short_sep = None  # the separator the rows with too few columns seem to use
        for lineno, row in enumerate(reader, start=2):
            if not row or not any(x.strip() for x in row):
                continue
            rows += 1

            def bad(field, value, reason, row=row, lineno=lineno):
                if rejects is not None:
                    rejects.append(Reject(source=str(path), location=lineno, field=field, value=value,
                                          reason=reason, raw=",".join(row)))

            if len(row) < len(cols):
                bad("row", len(row), f"has {len(row)} columns, header has {len(cols)}")
                sep = separator_of(",".join(row))
                short += sep is not None
                short_sep = short_sep or sep
                continue
            venue = row[ix["venue"]].strip()
            account = row[ix["account"]].strip()
            if venue not in VENUE_CODE:
                bad("venue", venue, "unknown venue (expected one of SSE, SZSE, BSE)")
                continue
            if not account:
                bad("account", account, "missing field")
                continue
            reported = None
            if "reported" in ix:
                r = row[ix["reported"]].strip().lower()
                if r in _TRUE:
                    reported = True
                elif r in _FALSE:
                    reported = False if r else None
                else:
                    bad("reported", row[ix["reported"]], "must be true or false")
                    continue
            owner, broker = row[ix["owner"]].strip() or None, row[ix["broker"]].strip() or None
            try:
                _check_ids(account, owner, broker, reported)
                vf = parse_valid_from(row[ix["valid_from"]]) if "valid_from" in ix else None
            except RefDataError as e:  # a name with a NUL, a bad valid_from
                bad(e.field, e.value, e.reason)
                continue
            history.setdefault((venue, account), []).append(
                AccountRef(owner, broker, reported, vf, f"{path} line {lineno}"))
        if rows and short == rows:  # a header with commas, and rows with another separator: not one row read
            raise RefDataError(f"accounts file {path}: none of its {rows:,} rows has the header's {len(cols)} columns; "
                               f"the rows seem to be separated by {short_sep}: "
                               "columns must be separated by commas")
        for (venue, account), rs in history.items():
            ref.set_history(venue, account, rs)
        return ref

    def rows(self) -> list[tuple[str, str, AccountRef]]:
        """Every row: (venue name, account, row), by venue, account and valid_from."""
        return [(VENUES[v], a, r) for (v, a), h in sorted(self.histories.items()) for r in h]


def diff(old: RefData, new: RefData) -> list[dict[str, Any]]:
    """Where two reference data answer differently (owner, broker or reporting status): for each account, one
    entry per time from which the answers differ anew (``from``: None for since always), with the fields that
    differ and both rows then (None: no row)."""
    out = []
    for key in sorted(set(old.histories) | set(new.histories)):
        a, b = old.histories.get(key, ()), new.histories.get(key, ())
        if a == b:
            continue
        prev = None
        for t in sorted({r.since for r in a} | {r.since for r in b} | {SINCE_ALWAYS}):
            ra = RefData.as_of(a, t) if a else None
            rb = RefData.as_of(b, t) if b else None
            pair = (_answer(ra), _answer(rb))
            if pair[0] != pair[1] and pair != prev:
                fields = [f for f, x, y in zip(("owner", "broker", "reported"), *pair) if x != y]
                out.append({"venue": VENUES[key[0]], "account": key[1], "from": valid_from_text(t),
                            "changed": fields, "old": ra.to_dict() if ra else None,
                            "new": rb.to_dict() if rb else None})
            prev = pair
    return out


def _answer(r: AccountRef | None) -> tuple:
    return (r.owner, r.broker, r.reported) if r else (None, None, None)


def first_difference(a: tuple[AccountRef, ...], b: tuple[AccountRef, ...]) -> int | bool:
    """The earliest time at which two histories of one account answer differently (SINCE_ALWAYS: from the start),
    or False when they always agree."""
    for t in sorted({r.since for r in a} | {r.since for r in b} | {SINCE_ALWAYS}):
        if _answer(RefData.as_of(a, t) if a else None) != _answer(RefData.as_of(b, t) if b else None):
            return t
    return False


def ref_value(h: tuple[AccountRef, ...]) -> bytes:
    """An account's history as a reference-topic value (key ``VENUE:account``; the topic is compacted, so each
    value is the account's whole history): one row without validity as before (``{"owner", "broker",
    "reported"}``), else ``{"rows": [{"valid_from", "owner", "broker", "reported"}, ...]}``."""
    import orjson

    if len(h) == 1 and h[0].valid_from is None:
        return orjson.dumps(h[0].to_dict())
    return orjson.dumps({"rows": [r.to_dict() for r in h]})


def separator_of(line: str) -> str | None:
    """The name of the separator a line of a CSV file seems to use instead of a comma, or None."""
    for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")):
        if sep in line:
            return name
    return None


def header_error(path: Path, what: str, header: list[str], missing: list[str]) -> str:
    """The error of a header without required columns: the columns found, and the separator the file seems to use
    when it is not a comma."""
    found = ", ".join(repr(h) for h in header) or "none"
    msg = f"{what} {path}: the header lacks column(s) {', '.join(missing)} (columns found: {found})"
    name = separator_of(",".join(header))
    if name:
        msg += f"; the file seems to be separated by {name}: columns must be separated by commas"
    return msg
