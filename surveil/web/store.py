"""The console's in-memory view of the cluster's alerts and recommendations, with filters and live updates.

Fed by :class:`~surveil.web.alert_feed.AlertFeed` (the alert and recommendation topics, every partition, from the
beginning). An alert id's latest state replaces the earlier one, except that a ``raised`` state never
replaces a ``final`` one (a worker re-processing from a checkpoint may publish ``raised`` again before the
same ``final``). Pure: no I/O, so the API handlers and the filters are tested without a broker.

Each alert is also kept as every member firm involved may see it: the worker's own
:func:`surveil.stream.views.broker_views`, the copy it publishes to the firm's topic
(``surveil.alerts.broker.<id>``); a broker user's queries (``scope``: the firm's id) read only those copies,
never the owner-wide alert.

A record is checked before it is indexed (:func:`check_alert`, :func:`check_recommendation`): one that lacks
a field the console uses, or has it of the wrong type, is refused and counted by reason (``refused``, in
``/api/meta``), so every stored record can be shown and no request fails on one.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import re
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from surveil.events.schema import TS_MAX, TS_MIN, VENUES, ns_to_iso
from surveil.rules import all_rules
from surveil.stream.views import broker_views
from surveil.web.exceptions import FilterError, RecordError

RULE_IDS = tuple(cls.meta.id for cls in all_rules())
SEVERITIES = ("medium", "high", "critical")
STATUSES = ("raised", "final")
#: alerts kept in memory (the oldest go first); a trading day has a few hundred at most
MAX_ALERTS = 50_000
MAX_RECOMMENDATIONS = 50_000
#: a live subscriber that falls this far behind is disconnected (it reconnects and reloads the list)
QUEUE_SIZE = 1_000
#: characters of an id (alert, recommendation, account, owner, broker) in a path or a query parameter
MAX_ID_CHARS = 256
#: ids of refused alert records remembered (the API says why such an id has no alert)
MAX_REFUSED_IDS = 1_000
#: the most values of a list parameter (rule=a,b,c ...)
MAX_VALUES = 100
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(name: str, raw: str) -> str:
    """``raw`` if it is a real calendar date written YYYY-MM-DD, else a FilterError naming ``name``."""
    if not _DAY.fullmatch(raw):
        raise FilterError(f"{name}={raw!r}: expected YYYY-MM-DD")
    try:
        _dt.date.fromisoformat(raw)
    except ValueError as e:
        raise FilterError(f"{name}={raw!r}: not a calendar date ({e})") from None
    return raw


def parse_id(name: str, raw: str) -> str:
    """An id from a path or a query: at most :data:`MAX_ID_CHARS` characters."""
    if len(raw) > MAX_ID_CHARS:
        raise FilterError(f"{name}={raw[:40]!r}…: {len(raw):,} characters; at most {MAX_ID_CHARS}")
    return raw


@dataclass(frozen=True)
class Filters:
    rule: frozenset[str] = frozenset()
    venue: frozenset[str] = frozenset()
    broker: frozenset[str] = frozenset()
    severity: frozenset[str] = frozenset()
    status: frozenset[str] = frozenset()
    owner: str | None = None
    account: str | None = None
    day: str | None = None

    PARAMS = ("rule", "venue", "broker", "severity", "status", "owner", "account", "day", "limit")

    @classmethod
    def parse(cls, query: Mapping[str, str], allowed: tuple[str, ...] = PARAMS) -> Filters:
        """From query parameters; each of rule, venue, broker, severity, status takes a comma-separated list."""
        for k in query:
            if k not in allowed:
                raise FilterError(f"{k}={query[k]!r}: unknown parameter; expected one of {', '.join(allowed)}")

        def many(name: str, choices: tuple[str, ...] | None) -> frozenset[str]:
            raw = query.get(name, "")
            vals = frozenset(v.strip() for v in raw.split(",") if v.strip())
            if len(vals) > MAX_VALUES:
                raise FilterError(f"{name}={raw[:40]!r}…: {len(vals)} values; at most {MAX_VALUES}")
            for v in sorted(vals):
                if choices is not None and v not in choices:
                    raise FilterError(f"{name}={v!r}: unknown {name}; expected one of {', '.join(choices)}")
                parse_id(name, v)
            return vals

        def one(name: str) -> str | None:
            raw = query.get(name) or None
            return None if raw is None else parse_id(name, raw)

        day = query.get("day") or None
        if day is not None:
            parse_day("day", day)
        return cls(rule=many("rule", RULE_IDS), venue=many("venue", VENUES), broker=many("broker", None),
                   severity=many("severity", SEVERITIES), status=many("status", STATUSES),
                   owner=one("owner"), account=one("account"), day=day)

    def match(self, s: dict[str, Any]) -> bool:
        """``s`` is an alert summary (:func:`summary`)."""
        if self.rule and s["rule"] not in self.rule:
            return False
        if self.severity and s["severity"] not in self.severity:
            return False
        if self.status and s["status"] not in self.status:
            return False
        if self.venue and not self.venue & set(s["venues"]):
            return False
        if self.broker and not self.broker & set(s["brokers"]):
            return False
        if self.owner is not None and self.owner != s["owner"]:
            return False
        if self.account is not None and self.account not in s["accounts"]:
            return False
        return self.day is None or self.day == s["trading_day"]


def parse_limit(query: Mapping[str, str], default: int = 500, most: int = 5_000) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    try:
        n = int(raw)
    except ValueError:
        raise FilterError(f"limit={raw!r}: expected an integer") from None
    if not 1 <= n <= most:
        raise FilterError(f"limit={raw!r}: expected 1..{most}")
    return n


def subject_text(subject: dict[str, Any]) -> str:
    return subject.get("owner") or f"{subject.get('venue')}:{subject.get('account')}"


def _need(rec: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    if name not in rec:
        raise RecordError(f"{what}: no {name}")
    v = rec[name]
    if isinstance(v, bool) or not isinstance(v, kind):
        raise RecordError(f"{what}: {name} is not {_TYPE_NAMES.get(kind, kind)}")
    return v


_TYPE_NAMES = {str: "a string", int: "an integer", dict: "an object", list: "a list", (int, float): "a number"}


def _check_id(rec: dict[str, Any], name: str, what: str) -> None:
    v = _need(rec, name, str, what)
    if not v or len(v) > MAX_ID_CHARS:
        raise RecordError(f"{what}: {name} is empty or longer than {MAX_ID_CHARS} characters")


def _check_subject(rec: dict[str, Any], what: str) -> None:
    subj = _need(rec, "subject", dict, what)
    if "venue" in subj or "owner" not in subj:  # an account (summary() reads venue first)
        if not (isinstance(subj.get("venue"), str) and isinstance(subj.get("account"), str)):
            raise RecordError(f"{what}: subject is neither {{owner}} nor {{venue, account}} (strings)")
    elif not isinstance(subj["owner"], str) or not subj["owner"]:
        raise RecordError(f"{what}: subject.owner is not a string")


def _check_day(rec: dict[str, Any], what: str) -> None:
    try:
        parse_day("trading_day", _need(rec, "trading_day", str, what))
    except FilterError:
        raise RecordError(f"{what}: trading_day is not a date (YYYY-MM-DD)") from None


def _check_ts(v: Any, name: str, what: str) -> None:
    if type(v) is not int or not TS_MIN <= v <= TS_MAX:
        raise RecordError(f"{what}: {name} is not a timestamp (integer ns, 1990-12-19 .. 2100-01-01)")


def check_alert(a: Any) -> None:
    """Raise :class:`RecordError` (the reason names the field, never the value) unless ``a`` has every field
    the console uses, of the right type (docs/console.md)."""
    what = "alert"
    if not isinstance(a, dict) or a.get("kind") != "alert":
        raise RecordError("not an alert (kind is not 'alert')")
    _check_id(a, "alert_id", what)
    _check_id(a, "rule", what)
    _check_subject(a, what)
    _check_day(a, what)
    for name in ("window_start", "window_end"):
        _check_ts(_need(a, name, int, what), name, what)
    for name in ("value", "threshold"):
        _need(a, name, (int, float), what)
    _check_id(a, "severity", what)
    if _need(a, "status", str, what) not in STATUSES:
        raise RecordError(f"{what}: status is not one of {', '.join(STATUSES)}")
    if not isinstance(a.get("unit", ""), str):
        raise RecordError(f"{what}: unit is not a string")
    ev = a.get("evidence")
    if ev is None:
        return
    if not isinstance(ev, dict):
        raise RecordError(f"{what}: evidence is not an object")
    if "at" in ev:
        _check_ts(ev["at"], "evidence.at", what)
    rows = ev.get("accounts") or []
    if not isinstance(rows, list) or not all(
            isinstance(x, dict) and isinstance(x.get("venue"), str) and isinstance(x.get("account"), str)
            and isinstance(x.get("broker"), (str, type(None))) and isinstance(x.get("owner"), (str, type(None)))
            for x in rows):
        raise RecordError(f"{what}: evidence.accounts is not a list of {{venue, account, broker, owner}}")
    peak = ev.get("peak_rate")
    if peak is not None:
        if not (isinstance(peak, dict) and type(peak.get("count")) is int and isinstance(peak.get("at_iso"), str)):
            raise RecordError(f"{what}: evidence.peak_rate is not {{count, at, at_iso}}")
        _check_ts(peak.get("at"), "evidence.peak_rate.at", what)


def check_recommendation(r: Any) -> None:
    """Raise :class:`RecordError` unless ``r`` has every field the console uses, of the right type."""
    what = "recommendation"
    if not isinstance(r, dict) or r.get("kind") != "recommendation":
        raise RecordError("not a recommendation (kind is not 'recommendation')")
    _check_id(r, "recommendation_id", what)
    _check_subject(r, what)
    _check_day(r, what)
    _check_id(r, "measure", what)
    reasons = r.get("reasons") or []
    if not isinstance(reasons, list) or not all(isinstance(x, str) for x in reasons):
        raise RecordError(f"{what}: reasons is not a list of alert ids")
    if r.get("duration_days") is not None and type(r["duration_days"]) is not int:
        raise RecordError(f"{what}: duration_days is not an integer")
    if not isinstance(r.get("rationale", ""), str):
        raise RecordError(f"{what}: rationale is not a string")


def summary(a: dict[str, Any]) -> dict[str, Any]:
    """What the alert list shows and filters on: the common part of the evidence (``accounts``, ``at``), the
    same for every rule."""
    ev = a.get("evidence") or {}
    subj = a["subject"]
    rows = ev.get("accounts") or []
    if "venue" in subj:
        venues = [subj["venue"]]
        accounts = [f"{subj['venue']}:{subj['account']}"]
        owner = (rows[0].get("owner") if rows else None) or f"{subj['venue']}:{subj['account']}"
    else:
        venues = sorted({x["venue"] for x in rows})
        accounts = sorted({f"{x['venue']}:{x['account']}" for x in rows})
        owner = subj.get("owner")
    brokers = sorted({x["broker"] for x in rows if x.get("broker")})
    start = ns_to_iso(ev.get("at", a["window_start"]))
    return {"alert_id": a["alert_id"], "rule": a["rule"], "subject": subj, "subject_text": subject_text(subj),
            "trading_day": a["trading_day"], "window_start": a["window_start"],
            "window_start_ns": str(a["window_start"]), "time": start[11:23],
            "value": a["value"], "threshold": a["threshold"], "unit": a.get("unit", "messages"),
            "severity": a["severity"], "status": a["status"],
            "venues": venues, "brokers": brokers, "accounts": accounts, "owner": owner}


class Store:
    def __init__(self, max_alerts: int = MAX_ALERTS) -> None:
        self.max_alerts = max_alerts
        self.alerts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.summaries: dict[str, dict[str, Any]] = {}
        #: alert id -> {member firm: its copy}; firm -> {its copy's id: the copy}, and the copy's summary. A
        #: copy has the alert's id, or its own when the rule made the firm's own figures (``by_broker``)
        self.views: dict[str, dict[str, dict[str, Any]]] = {}
        self.scoped_alerts: dict[str, dict[str, dict[str, Any]]] = {}
        self.scoped: dict[str, dict[str, dict[str, Any]]] = {}
        self.recos: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.subscribers: set[asyncio.Queue] = set()
        self.seq = 0  # number of changes applied
        self.counts = {"alerts_read": 0, "recommendations_read": 0, "bad_records": 0, "stale_raised": 0,
                       "dropped_subscribers": 0, "broker_views_failed": 0}
        #: records refused, by reason (the reasons name fields, never values: a bounded set)
        self.refused: Counter[str] = Counter()
        #: alert id -> why its record was refused, for the latest MAX_REFUSED_IDS such ids
        self.refused_ids: OrderedDict[str, str] = OrderedDict()
        self.caught_up = False  # the feed has read every partition to the end it found at start

    # -- updates ----------------------------------------------------------------------------------
    def refuse(self, reason: str) -> RecordError:
        """Count a record that is not indexed; returns the error, for the caller to raise or log."""
        self.counts["bad_records"] += 1
        self.refused[reason] += 1
        return RecordError(reason)

    def put_alert(self, a: dict[str, Any]) -> bool:
        """Apply an alert state; returns False when it changes nothing (a raised after its final). Raises
        :class:`RecordError` (counted) for a record the console cannot show: the earlier state stays."""
        self.counts["alerts_read"] += 1
        try:
            check_alert(a)
            s = summary(a)  # before any change: a record is indexed whole or not at all
        except (RecordError, KeyError, TypeError, ValueError, AttributeError) as e:
            why = str(e) if isinstance(e, RecordError) else f"alert: cannot be summarised ({type(e).__name__})"
            aid = a.get("alert_id") if isinstance(a, dict) else None
            if isinstance(aid, str) and 0 < len(aid) <= MAX_ID_CHARS and aid not in self.alerts:
                self.refused_ids[aid] = why
                self.refused_ids.move_to_end(aid)
                while len(self.refused_ids) > MAX_REFUSED_IDS:
                    self.refused_ids.popitem(last=False)
            raise self.refuse(why) from None
        aid = a["alert_id"]
        self.refused_ids.pop(aid, None)
        old = self.alerts.get(aid)
        if old is not None and old["status"] == "final" and a["status"] != "final":
            self.counts["stale_raised"] += 1
            return False
        try:  # the firms' copies: a malformed rule-specific evidence field leaves it to the desk (fail closed)
            views = broker_views(a)
            scoped = {b: summary(v) for b, v in views.items()}
        except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):
            views, scoped = {}, {}
            self.counts["broker_views_failed"] += 1
        self.alerts[aid] = a
        self.alerts.move_to_end(aid)
        self.summaries[aid] = s
        self._unscope(aid)
        self.views[aid] = views
        for b, sb in scoped.items():
            self.scoped.setdefault(b, {})[sb["alert_id"]] = sb
            self.scoped_alerts.setdefault(b, {})[sb["alert_id"]] = views[b]
        while len(self.alerts) > self.max_alerts:
            gone, _ = self.alerts.popitem(last=False)
            self.summaries.pop(gone, None)
            self._unscope(gone)
        self._publish("alert", s, scoped)
        return True

    def _unscope(self, aid: str) -> None:
        for b, view in self.views.pop(aid, {}).items():
            for index in (self.scoped, self.scoped_alerts):
                mine = index.get(b)
                if mine is not None:
                    mine.pop(view["alert_id"], None)
                    if not mine:
                        del index[b]

    def put_recommendation(self, r: dict[str, Any]) -> None:
        """Apply a recommendation; raises :class:`RecordError` (counted) for one the console cannot show."""
        self.counts["recommendations_read"] += 1
        try:
            check_recommendation(r)
        except RecordError as e:
            raise self.refuse(str(e)) from None
        rid = r["recommendation_id"]
        self.recos[rid] = r
        self.recos.move_to_end(rid)
        while len(self.recos) > MAX_RECOMMENDATIONS:
            self.recos.popitem(last=False)
        self._publish("recommendation", r, {b: r for b in self.reco_firms(r)})

    def _publish(self, kind: str, data: dict[str, Any], scoped: dict[str, dict[str, Any]]) -> None:
        """To every live stream: ``(kind, seq, data, scoped)``; a broker user's stream sends ``scoped[firm]``
        (its copy), or nothing when the firm is not involved."""
        self.seq += 1
        for q in list(self.subscribers):
            try:
                q.put_nowait((kind, self.seq, data, scoped))
            except asyncio.QueueFull:  # a stuck client: cut it off rather than grow without bound
                self.subscribers.discard(q)
                self.counts["dropped_subscribers"] += 1

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self.subscribers.discard(q)

    def close(self) -> None:
        """Tell every live subscriber to end (the server is stopping)."""
        for q in list(self.subscribers):
            try:
                q.put_nowait(None)
            except asyncio.QueueFull:
                pass
        self.subscribers.clear()

    # -- queries ----------------------------------------------------------------------------------
    def list(self, f: Filters, limit: int = 500, scope: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Matching summaries, newest window first (then rule, subject); and how many matched in all.
        ``scope``: a member firm's id: its copies only."""
        rows = [s for s in self.summaries_of(scope).values() if f.match(s)]
        rows.sort(key=lambda s: (s["window_start"], s["rule"], s["subject_text"]), reverse=True)
        return rows[:limit], len(rows)

    def summaries_of(self, scope: str | None) -> dict[str, dict[str, Any]]:
        """Alert id -> summary: every alert's (None), or a member firm's copies."""
        return self.summaries if scope is None else self.scoped.get(scope, {})

    def alert_of(self, aid: str, scope: str | None) -> dict[str, Any] | None:
        """The alert of that id (scope None), or the member firm's copy of that id; None when there is none."""
        if scope is None:
            return self.alerts.get(aid)
        return self.scoped_alerts.get(scope, {}).get(aid)

    def reco_firms(self, r: dict[str, Any]) -> set[str]:
        """The member firms that see a recommendation: those of an account's (never an owner's: it is computed
        from the owner-wide alerts, which no firm sees) whose reasons include an alert of the firm's."""
        if "account" not in r["subject"]:
            return set()
        return {b for aid in r.get("reasons") or [] for b in self.views.get(aid, {})}

    def recommendations_for(self, *, alert_id: str | None = None, owner: str | None = None,
                            account: tuple[str, str] | None = None,
                            scope: str | None = None) -> list[dict[str, Any]]:
        out = []
        for r in self.recos.values():
            subj = r["subject"]
            if scope is not None and scope not in self.reco_firms(r):
                continue
            if alert_id is not None and alert_id not in (r.get("reasons") or []):
                continue
            if owner is not None and subj.get("owner") != owner:
                continue
            if account is not None and (subj.get("venue"), subj.get("account")) != account:
                continue
            out.append(r)
        out.sort(key=lambda r: (r["trading_day"], subject_text(r["subject"]), r["measure"]), reverse=True)
        return out

    def recommendations(self, f: Filters, limit: int = 500,
                        scope: str | None = None) -> tuple[list[dict[str, Any]], int]:
        rows = []
        for r in self.recos.values():
            subj = r["subject"]
            if scope is not None and scope not in self.reco_firms(r):
                continue
            if f.owner is not None and subj.get("owner") != f.owner:
                continue
            if f.account is not None and f"{subj.get('venue')}:{subj.get('account')}" != f.account:
                continue
            if f.day is not None and r["trading_day"] != f.day:
                continue
            if f.venue and subj.get("venue") not in f.venue and not any(
                    self.summaries.get(a, {}).get("venues", []) and set(self.summaries[a]["venues"]) & f.venue
                    for a in r.get("reasons") or []):
                continue
            rows.append(r)
        rows.sort(key=lambda r: (r["trading_day"], subject_text(r["subject"]), r["measure"]), reverse=True)
        return rows[:limit], len(rows)
