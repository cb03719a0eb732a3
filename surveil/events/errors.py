"""Errors and rejects of the event layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from surveil.exceptions import SurveilError


class EventFormatError(SurveilError, ValueError):
    """A whole input is unusable (bad magic, unreadable file)."""


class FrameChecksumError(EventFormatError):
    """A binary frame whose header or body is not what its CRC32C says: damaged, none of its records is read."""


class RowError(SurveilError, ValueError):
    """One event is invalid; carries the field and the offending value."""

    def __init__(self, field: str, value: Any, reason: str):
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r}: {reason}")


@dataclass(slots=True)
class Reject:
    """One rejected input line or record, kept with the reason."""

    source: str
    location: int  # line number (1-based) for JSON Lines; record number (0-based) for binary
    field: str
    value: Any
    reason: str
    raw: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        unit = "line" if self.source_kind == "jsonl" else "record"
        return f"{self.source}:{unit} {self.location}: {self.field}={_short(self.value)}: {self.reason}"

    @property
    def source_kind(self) -> str:
        return self.extra.get("kind", "jsonl")

    def to_dict(self) -> dict[str, Any]:
        unit = "line" if self.source_kind == "jsonl" else "record"
        d: dict[str, Any] = {
            "source": self.source,
            unit: self.location,
            "field": self.field,
            "value": _jsonable(self.value),
            "reason": self.reason,
            "message": self.message,
            "raw": self.raw,
        }
        for k, v in self.extra.items():
            if k != "kind":
                d[k] = v
        return d


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, dict)):
        return v
    return repr(v)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def damage_summary(rejects: list[Reject]) -> str:
    """What damaged binary frames cost, for a run's summary: "" without any, else e.g. "2 damaged frames: 800
    records not read" (the reject of each frame says which)."""
    frames = [r for r in rejects if r.field == "frame" and r.source_kind == "binary"]
    if not frames:
        return ""
    known = [r.extra.get("records_lost") for r in frames]
    lost = sum(x for x in known if x)
    more = " and more" if None in known else ""
    return f"{len(frames):,} damaged or unreadable frames: {lost:,}{more} records not read"
