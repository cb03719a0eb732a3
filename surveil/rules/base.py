"""Rule metadata, parameters and the evaluator interface.

A rule module reads like a Sigma rule: what it detects, the regulatory text it
implements, every parameter with its default and whether that default is
*published* (taken from a rule text) or *chosen* (ours, documented), and it is
pure: no I/O, no clocks. The engine feeds it event-time-ordered segments of one
trading day and asks it to finalise what event time has closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surveil.events.batch import concat_order_ids, order_id_values

#: the texts behind the high-frequency definition (300 per second, 20,000 per day)
HFT_REFERENCES = (
    "SSE/SZSE notices on programmatic trading reporting, 2023-09-01 (item 2)",
    "CSRC Provisions on the Administration of Programmatic Trading, in force 2024-10-08",
    "SSE/SZSE/BSE programmatic trading implementation rules, in force 2025-07-07",
)


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
    value: int
    threshold: int
    severity: str
    status: str  # "raised" | "final"
    evidence: dict[str, Any] = field(default_factory=dict)
    unit: str = "messages"  # of value and threshold: "messages" (orders+cancels) or "fen" (0.01 yuan)


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
    order_id: np.ndarray  # raw order id column (object, or fixed-width bytes with flags)

    def order_id_of(self, rows: np.ndarray) -> list:
        """Order ids (str, int or None) of row indexes."""
        return order_id_values(self.order_id[rows], self.flags[rows])


class OidCarry:
    """Order ids of the events a rule carries to its next segment (raw column + flags).

    Positions address the rule's working arrays: first the carried events, then the
    segment's selected ``rows``.
    """

    def __init__(self) -> None:
        self.raw = np.empty(0, object)
        self.flags = np.empty(0, np.uint8)

    def __len__(self) -> int:
        return len(self.raw)

    def values(self, pos: np.ndarray, seg: Segment, rows: np.ndarray) -> list:
        pos = np.asarray(pos, dtype=np.int64)
        n = len(self.raw)
        old = pos < n
        out: list = [None] * len(pos)
        if old.any():
            vals = order_id_values(self.raw[pos[old]], self.flags[pos[old]])
            for i, v in zip(np.flatnonzero(old).tolist(), vals):
                out[i] = v
        if (~old).any():
            vals = seg.order_id_of(rows[pos[~old] - n])
            for i, v in zip(np.flatnonzero(~old).tolist(), vals):
                out[i] = v
        return out

    def keep(self, pos: np.ndarray, seg: Segment, rows: np.ndarray) -> None:
        pos = np.asarray(pos, dtype=np.int64)
        n = len(self.raw)
        p_old = pos[pos < n]
        p_new = rows[pos[pos >= n] - n]
        self.raw = concat_order_ids(self.raw[p_old], self.flags[p_old], seg.order_id[p_new], seg.flags[p_new])
        self.flags = np.concatenate([self.flags[p_old], seg.flags[p_new]])


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


#: a segment of at least this many rows is *large*: a rule may then count per account instead of per row
LARGE_SEGMENT = 4096


def large_segment(rows: int, accounts: int, at_least: int = LARGE_SEGMENT) -> bool:
    """Whether counting per account (arrays as long as the account keys) costs less than working per row:
    enough rows, and not many more accounts than rows (a stream worker's poll, not a paced frame)."""
    return rows >= at_least and rows * 8 >= accounts


def grow(arr: np.ndarray, size: int, fill=0) -> np.ndarray:
    """``arr`` extended to at least ``size`` entries (amortised doubling)."""
    if len(arr) >= size:
        return arr
    new = np.full(max(size, 2 * len(arr), 1024), fill, dtype=arr.dtype)
    new[: len(arr)] = arr
    return new


def positive(v) -> str | None:
    return None if v > 0 else "must be positive"
