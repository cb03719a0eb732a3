"""Reference data: ``venue,account,owner,broker[,reported]`` (CSV with a header line)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from surveil.engine.exceptions import RefDataError  # noqa: F401 - importable from here too
from surveil.events.errors import Reject
from surveil.events.schema import VENUE_CODE

_TRUE = {"true", "1", "yes", "y", "t"}
#: a member firm's id names its alert topic (hex-escaped, up to 3 characters a byte, within Kafka's 249)
BROKER_ID_MAX_BYTES = 64
_FALSE = {"false", "0", "no", "n", "f", ""}


@dataclass(frozen=True, slots=True)
class AccountRef:
    owner: str | None
    broker: str | None
    reported: bool | None


class RefData:
    def __init__(self) -> None:
        self.accounts: dict[tuple[int, str], AccountRef] = {}
        self.version = 0  # bumped on every change, so caches can be invalidated

    def set(self, venue: str, account: str, owner: str | None, broker: str | None,
            reported: bool | None = None) -> None:
        if venue not in VENUE_CODE:
            raise RefDataError(f"venue={venue!r}: unknown venue")
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
        self.accounts[(VENUE_CODE[venue], account)] = AccountRef(owner or None, broker or None, reported)
        self.version += 1

    def remove(self, venue: str, account: str) -> None:
        if self.accounts.pop((VENUE_CODE.get(venue, -1), account), None) is not None:
            self.version += 1

    def get(self, venue: int, account: str) -> AccountRef | None:
        return self.accounts.get((venue, account))

    def get_many(self, venues: list[int], accounts: list[str]) -> list[AccountRef | None]:
        """``get`` of each (venue, account) pair, in one pass (a cold start looks up every account)."""
        return list(map(self.accounts.get, zip(venues, accounts)))

    @classmethod
    def load_csv(cls, path: str | Path, rejects: list[Reject] | None = None) -> RefData:
        """Read the accounts CSV. A bad row is a reject (kept with its line number), not a stop. Errors
        (RefDataError, naming the file): not UTF-8, a header without the required columns (with the columns found,
        and the separator when it looks like another one), two rows of one venue and account that disagree (an
        identical repeat is fine)."""
        path = Path(path)
        ref = cls()
        text = csv_text(path, "accounts file", RefDataError)
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            raise RefDataError(f"accounts file {path} is empty (expected a header venue,account,owner,broker)")
        cols = [h.strip().lower() for h in header]
        missing = [c for c in ("venue", "account", "owner", "broker") if c not in cols]
        if missing:
            raise RefDataError(header_error(path, "accounts file", header, missing))
        ix = {c: cols.index(c) for c in cols}
        seen: dict[tuple[str, str], tuple[int, AccountRef]] = {}
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
            try:
                ref.set(venue, account, row[ix["owner"]].strip() or None, row[ix["broker"]].strip() or None,
                        reported)
            except RefDataError as e:  # a name with a NUL
                bad(e.field, e.value, e.reason)
                continue
            now = ref.accounts[(VENUE_CODE[venue], account)]
            before = seen.get((venue, account))
            if before is not None and before[1] != now:
                line, was = before
                diff = ", ".join(f"{k} {getattr(was, k)!r} / {getattr(now, k)!r}" for k in ("owner", "broker",
                                 "reported") if getattr(was, k) != getattr(now, k))
                raise RefDataError(f"accounts file {path}: lines {line} and {lineno} give account {venue}:{account} "
                                   f"different values ({diff}): keep one of them", "account", account,
                                   "conflicting rows")
            if before is None:
                seen[(venue, account)] = (lineno, now)
        if rows and short == rows:  # a header with commas, and rows with another separator: not one row read
            raise RefDataError(f"accounts file {path}: none of its {rows:,} rows has the header's {len(cols)} columns; "
                               f"the rows seem to be separated by {short_sep}: "
                               "columns must be separated by commas")
        return ref


UTF8_BOM = "\ufeff"


def csv_text(path: Path, what: str, error: type[Exception]) -> str:
    """The text of a CSV file of reference data: UTF-8, a byte order mark at its start allowed (spreadsheets
    write one); ``error`` (naming the file, and the line and byte of the first bytes that are not UTF-8) when it
    is missing, unreadable or not UTF-8."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{what} is a directory, not a file: {path}") from None
    except OSError as e:
        raise error(f"{what} is not readable: {path}: {e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise error(f"{what} {path} is not UTF-8 text: line {line} (byte {e.start}) has "
                    f"{data[e.start:e.start + 4]!r}; save it as UTF-8") from None
    return text[1:] if text.startswith(UTF8_BOM) else text


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
