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
from surveil.events.schema import NS_PER_SECOND


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
class Reference:
    """A regulatory text a rule implements."""

    document: str
    article: str
    in_force: str  # ISO date, or "" when not applicable (a case, not a rule text)

    def __str__(self) -> str:
        since = f", in force {self.in_force}" if self.in_force else ""
        return f"{self.document}: {self.article}{since}"


#: the texts behind the high-frequency definition (300 per second, 20,000 per day)
HFT_REFERENCES = (
    Reference("SSE/SZSE notices on programmatic trading reporting (2023-09-01)",
              "item 2: peak order rate 300+/s or 20,000+ orders a day", "2023-10-09"),
    Reference("CSRC Provisions on the Administration of Programmatic Trading",
              "high-frequency trading: orders and cancels 300+/s or 20,000+ a day", "2024-10-08"),
    Reference("SSE/SZSE/BSE programmatic trading implementation rules",
              "high-frequency trading (申报、撤单 每秒300笔以上 / 单日20000笔以上)", "2025-07-07"),
)


#: what a rule is keyed by, i.e. which stage of the stream topology runs it:
#: ``account`` (venue, account): the feed partition that owns the account;
#: ``owner``: the owner stage (rows repartitioned by owner);
#: ``security`` (venue, symbol): the security stage (rows repartitioned by venue and symbol);
#: ``market``: reserved (no stage runs market-keyed rules yet; the registry refuses them)
KEYS = ("account", "owner", "security", "market")
#: event type names a rule may ask for (see surveil.events.schema)
EVENT_TYPES = ("order", "cancel", "trade", "index", "indicative")
#: the columns of an event a rule may ask for (the batch columns)
FIELDS = ("ts", "venue", "type", "side", "aggressor", "price", "qty", "account", "symbol", "owner", "broker",
          "order_id", "match_id")


@dataclass(frozen=True)
class Inputs:
    """The events a rule needs: stages export to the owner and security stages only the rows (and columns)
    some rule there declares. ``sides``: only events of these sides (``B``/``S``; empty: any side).
    ``market``: the rule reads the market context (traded value per second, index levels)."""

    types: tuple[str, ...]
    fields: tuple[str, ...] = ("ts", "venue", "type", "account")
    sides: tuple[str, ...] = ()
    market: bool = False


#: severities, mildest first
SEVERITIES = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class RuleMeta:
    id: str
    version: int
    title: str
    description: str
    references: tuple[Reference, ...]
    params: tuple[Param, ...]
    key: str  # one of KEYS
    inputs: Inputs
    severity: str  # the usual severity of its alerts (an alert may say more, e.g. "critical")
    measure: str  # the step of the measures ladder its alerts suggest by default (see Rule.suggest)
    false_positives: tuple[str, ...] = ()
    state_version: int = 1  # the version of the rule's checkpointed state (Rule.state / Rule.restore)
    chart: str = "series"  # the kind of evidence chart (surveil.report.charts): drawn from evidence fields
    # whether a late event (later than the reorder tolerance) is still counted: rules whose measure is the whole
    # trading day's count (their window is open until the day closes) get the day's late events through
    # ``evaluate`` at the day's close, in arrival order; the others never see them
    counts_late: bool = False

    @property
    def subject(self) -> str:
        """``account``, ``owner`` or ``security`` (the subject of its alerts): the key."""
        return self.key


@dataclass
class AlertDraft:
    """What a rule reports; the engine adds the id, names and serialises it."""

    rule: str
    rule_version: int
    # ("account", account id * 4 + venue), ("owner", owner id) or ("security", symbol id * 4 + venue)
    subject: tuple
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
    # each event's own owner and broker ids when the event names them (-1: not named): an inline owner or
    # broker applies to its own event only (Context.refs_of_rows), whatever the cut of the input
    owner: np.ndarray | None = None
    broker: np.ndarray | None = None
    # the valid_from (ns) of the reference row that gave each event's owner and broker, when resolved upstream
    # (an owner stage's rows); None: the engine looks it up (Context.refs_of_rows)
    ref_from: np.ndarray | None = None

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

    def to_data(self) -> dict[str, Any]:
        return {"raw": array_data(self.raw), "flags": array_data(self.flags)}

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> OidCarry:
        c = cls()
        c.raw, c.flags = from_array_data(d["raw"]), from_array_data(d["flags"])
        return c

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

    def key_info(self, key: int, ts: int | None = None) -> dict[str, Any]:  # pragma: no cover - interface
        """An account's venue, account, owner, broker, reported and valid_from, as of ``ts`` (None: now)."""
        raise NotImplementedError

    def owners_of_keys(self, keys: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def owner_name(self, owner: int) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def broker_name(self, broker: int) -> str | None:  # pragma: no cover - interface
        """The name of a broker id (None for -1)."""
        raise NotImplementedError

    def refs_of_rows(self, seg: Segment, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Each row's owner id, broker id and the valid_from of the reference row as of its time (None: every
        row holds since always), see the engine's ``_Ctx``."""
        raise NotImplementedError  # pragma: no cover - interface


class Rule:
    """A detection rule. A subclass sets ``meta`` and implements ``evaluate``; it is pure (no I/O, no
    clocks) and keeps everything it carries from one segment to the next in its state, which it gives as
    plain data (``state``) and takes back (``restore``) for checkpoints.

    The engine calls, in event time:
    - ``evaluate(seg)`` with each event-time-ordered segment of one trading day;
    - ``close(watermark_ts)`` once every event up to ``watermark_ts`` has been seen: finalise what cannot
      change any more;
    - ``close_day(day)`` when the trading day is over (or the input ended): finalise everything of ``day``.
    Each returns the alert states (``AlertDraft``) it produced, raised or final.
    """

    meta: RuleMeta

    def __init__(self, params: dict[str, Any], ctx: Context):
        self.params = params
        self.ctx = ctx

    # -- evaluation ---------------------------------------------------------------------------------
    def evaluate(self, seg: Segment) -> list[AlertDraft]:
        raise NotImplementedError

    def close(self, watermark_ts: int) -> list[AlertDraft]:
        """Finalise what cannot change any more once every event up to ``watermark_ts`` is seen."""
        return []

    def close_day(self, day: int) -> list[AlertDraft]:
        """The trading day is over (or the input ended): finalise everything of ``day``."""
        return []

    # -- state (checkpoints) ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything this rule carries between segments, as plain data (dicts, lists, str, int, float,
        bool, None, bytes; numpy arrays through ``array_data``), of version ``meta.state_version``."""
        return {}

    def restore(self, data: dict[str, Any]) -> None:
        """Take back what ``state`` gave (same state version), under the current parameters."""

    def open_alerts(self) -> int:
        """Alerts raised and not final yet (for a stage's status)."""
        return 0

    # -- what consumers ask the rule (they never name a rule id) -------------------------------------
    @classmethod
    def suggest(cls, alert: dict[str, Any], params: dict[str, Any]) -> tuple[str, str]:
        """The measures-ladder step a final alert of this rule supports, and why (``params``: the
        ``[recommendations]`` section). Default: ``meta.measure``."""
        return cls.meta.measure, f"{cls.meta.id}: {alert['value']:,} {alert.get('unit', '')}".rstrip()

    @classmethod
    def broker_view(cls, view: dict[str, Any], broker: str) -> None:
        """Trim, in place, the rule-specific evidence of ``view`` (a copy of an alert whose common
        ``accounts`` list already holds only ``broker``'s accounts) to what that broker may see."""

    @classmethod
    def describe(cls, alert: dict[str, Any]) -> str | None:
        """One more line about an alert for text output (the demo), or None."""
        return None

    def activity(self, key: int | None) -> dict[str, int]:
        """Today's figures of one account key this rule counts (the console's account page; None: an account
        not seen today)."""
        return {}


def account_entry(info: dict[str, Any], value: int, share: float) -> dict[str, Any]:
    """One account of the common evidence part: who it is (venue, account, broker, owner, and the
    ``valid_from`` of the reference row that gave them: None when that row holds since always, or there is
    none), its part of the alert's value and its share of it."""
    return {"venue": info["venue"], "account": info["account"], "broker": info.get("broker"),
            "owner": info.get("owner"), "valid_from": info.get("valid_from"), "value": int(value),
            "share": round(float(share), 6)}


def series(unit: str, points: list, step_ns: int = NS_PER_SECOND) -> dict[str, Any]:
    """The common evidence part's time series (for a chart): ``points`` are ``[start ns, value]`` pairs of
    intervals of ``step_ns``."""
    return {"unit": unit, "step_ns": int(step_ns), "points": [[int(t), int(v)] for t, v in points]}


def array_data(a: np.ndarray) -> dict[str, Any]:
    """A numpy array as plain data (``from_array_data`` gives it back)."""
    if a.dtype == object:
        return {"dtype": "object", "items": a.tolist()}
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def from_array_data(d: dict[str, Any]) -> np.ndarray:
    if d["dtype"] == "object":
        out = np.empty(len(d["items"]), object)
        out[:] = d["items"] if d["items"] else []
        return out
    return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


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
