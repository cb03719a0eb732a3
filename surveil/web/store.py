"""The console's in-memory view of the cluster's alerts and recommendations, with filters and live updates.

Fed by :class:`~surveil.web.feed.AlertFeed` (the alert and recommendation topics, every partition, from the
beginning). An alert id's latest state replaces the earlier one, except that a ``raised`` state never
replaces a ``final`` one (a worker re-processing from a checkpoint may publish ``raised`` again before the
same ``final``). Pure: no I/O, so the API handlers and the filters are tested without a broker.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from surveil.events.schema import VENUES, ns_to_iso
from surveil.rules import all_rules
from surveil.web.exceptions import FilterError  # noqa: F401 - importable from here too

RULE_IDS = tuple(cls.meta.id for cls in all_rules())
SEVERITIES = ("medium", "high", "critical")
STATUSES = ("raised", "final")
#: alerts kept in memory (the oldest go first); a trading day has a few hundred at most
MAX_ALERTS = 50_000
MAX_RECOMMENDATIONS = 50_000
#: a live subscriber that falls this far behind is disconnected (it reconnects and reloads the list)
QUEUE_SIZE = 1_000


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
            if choices is not None:
                for v in sorted(vals):
                    if v not in choices:
                        raise FilterError(f"{name}={v!r}: unknown {name}; expected one of {', '.join(choices)}")
            return vals

        day = query.get("day") or None
        if day is not None and not (len(day) == 10 and day[4] == day[7] == "-" and day.replace("-", "").isdigit()):
            raise FilterError(f"day={day!r}: expected YYYY-MM-DD")
        return cls(rule=many("rule", RULE_IDS), venue=many("venue", VENUES), broker=many("broker", None),
                   severity=many("severity", SEVERITIES), status=many("status", STATUSES),
                   owner=query.get("owner") or None, account=query.get("account") or None, day=day)

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
            "trading_day": a["trading_day"], "window_start": a["window_start"], "time": start[11:23],
            "value": a["value"], "threshold": a["threshold"], "unit": a.get("unit", "messages"),
            "severity": a["severity"], "status": a["status"],
            "venues": venues, "brokers": brokers, "accounts": accounts, "owner": owner}


class Store:
    def __init__(self, max_alerts: int = MAX_ALERTS) -> None:
        self.max_alerts = max_alerts
        self.alerts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.summaries: dict[str, dict[str, Any]] = {}
        self.recos: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.subscribers: set[asyncio.Queue] = set()
        self.seq = 0  # number of changes applied
        self.counts = {"alerts_read": 0, "recommendations_read": 0, "bad_records": 0, "stale_raised": 0,
                       "dropped_subscribers": 0}
        self.caught_up = False  # the feed has read every partition to the end it found at start

    # -- updates ----------------------------------------------------------------------------------
    def put_alert(self, a: dict[str, Any]) -> bool:
        """Apply an alert state; returns False when it changes nothing (a raised after its final)."""
        self.counts["alerts_read"] += 1
        aid = a["alert_id"]
        old = self.alerts.get(aid)
        if old is not None and old["status"] == "final" and a["status"] != "final":
            self.counts["stale_raised"] += 1
            return False
        self.alerts[aid] = a
        self.alerts.move_to_end(aid)
        s = self.summaries[aid] = summary(a)
        while len(self.alerts) > self.max_alerts:
            gone, _ = self.alerts.popitem(last=False)
            self.summaries.pop(gone, None)
        self._publish("alert", s)
        return True

    def put_recommendation(self, r: dict[str, Any]) -> None:
        self.counts["recommendations_read"] += 1
        rid = r["recommendation_id"]
        self.recos[rid] = r
        self.recos.move_to_end(rid)
        while len(self.recos) > MAX_RECOMMENDATIONS:
            self.recos.popitem(last=False)
        self._publish("recommendation", r)

    def _publish(self, kind: str, data: dict[str, Any]) -> None:
        self.seq += 1
        for q in list(self.subscribers):
            try:
                q.put_nowait((kind, self.seq, data))
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
    def list(self, f: Filters, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """Matching summaries, newest window first (then rule, subject); and how many matched in all."""
        rows = [s for s in self.summaries.values() if f.match(s)]
        rows.sort(key=lambda s: (s["window_start"], s["rule"], s["subject_text"]), reverse=True)
        return rows[:limit], len(rows)

    def recommendations_for(self, *, alert_id: str | None = None, owner: str | None = None,
                            account: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        out = []
        for r in self.recos.values():
            subj = r["subject"]
            if alert_id is not None and alert_id not in (r.get("reasons") or []):
                continue
            if owner is not None and subj.get("owner") != owner:
                continue
            if account is not None and (subj.get("venue"), subj.get("account")) != account:
                continue
            out.append(r)
        out.sort(key=lambda r: (r["trading_day"], subject_text(r["subject"]), r["measure"]), reverse=True)
        return out

    def recommendations(self, f: Filters, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        rows = []
        for r in self.recos.values():
            subj = r["subject"]
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
