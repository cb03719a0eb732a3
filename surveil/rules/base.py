"""Rule metadata, parameters and the evaluator interface.

A rule module reads like a Sigma rule: what it detects, the regulatory text it
implements, every parameter with its default and whether that default is
*published* (taken from a rule text) or *chosen* (ours, documented), and it is
pure: no I/O, no clocks. The engine feeds it event-time-ordered segments of one
trading day and asks it to finalise what event time has closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    type: type | tuple[type, ...]
    published: bool
    source: str
    description: str
    check: Callable[[Any], str | None] | None = None  # returns an error text or None


@dataclass(frozen=True)
class RuleMeta:
    id: str
    version: int
    title: str
    description: str
    references: tuple[str, ...]
    params: tuple[Param, ...]
    false_positives: tuple[str, ...] = ()
    subject: str = "account"  # "account" (venue, account) or "owner"


@dataclass
class AlertDraft:
    """What a rule reports; the engine adds the id, names and serialises it."""

    rule: str
    rule_version: int
    subject: tuple  # ("account", key) or ("owner", owner_id)
    trading_day: int  # day index (Asia/Shanghai)
    window_start: int
    window_end: int
    value: float | int
    threshold: float | int
    severity: str
    status: str  # "raised" | "final"
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Segment:
    """One event-time-ordered piece of a single trading day, with derived columns.

    ``key`` is the per-account key ``account * 4 + venue``; ``owner`` is the resolved
    owner id of each event (-1 where not needed/resolved, see ``Context``).
    """

    ts: np.ndarray
    venue: np.ndarray
    etype: np.ndarray
    side: np.ndarray
    flags: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    key: np.ndarray
    symbol: np.ndarray
    day: int
    order_id_of: Callable[[np.ndarray], list]  # order ids of row indexes, as str/int/None


class Context:
    """What a rule may ask the engine about: names, reference data and market context."""

    def key_info(self, key: int) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def owners_of_keys(self, keys: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def owner_name(self, owner: int) -> str:  # pragma: no cover - interface
        raise NotImplementedError


class Rule:
    meta: RuleMeta

    def __init__(self, params: dict[str, Any], ctx: Context):
        self.params = params
        self.ctx = ctx

    def process(self, seg: Segment) -> list[AlertDraft]:
        raise NotImplementedError

    def flush(self, watermark_ts: int) -> list[AlertDraft]:
        """Finalise what cannot change any more once every event up to ``watermark_ts`` is seen."""
        return []

    def end_day(self, day: int) -> list[AlertDraft]:
        """The trading day is over (or the input ended): finalise everything of ``day``."""
        return []


def grow(arr: np.ndarray, size: int, fill=0) -> np.ndarray:
    """``arr`` extended to at least ``size`` entries (amortised doubling)."""
    if len(arr) >= size:
        return arr
    new = np.full(max(size, 2 * len(arr), 1024), fill, dtype=arr.dtype)
    new[: len(arr)] = arr
    return new


def positive(v) -> str | None:
    return None if v > 0 else "must be positive"
