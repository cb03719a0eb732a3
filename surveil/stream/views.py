"""What goes to the recommendations topic and to each broker's alert topic."""

from __future__ import annotations

from typing import Any

import orjson

from surveil.actions import recommend
from surveil.engine.alerts import alert_id
from surveil.rules import rule_class


def broker_views(alert: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The alert as each broker (member firm) may see it: only alerts about its accounts. An account's alert
    goes as it is to that account's broker. An alert about several accounts (an owner's or a security's) goes
    to each firm named in its evidence's ``by_broker`` (the firm's own figures, made by the rule), else to
    each firm of its ``accounts``; the copy holds only that firm's accounts, never ``by_broker``, sample
    order ids or the subject's whole time series, and the rule trims its own evidence (``Rule.broker_view``).
    A copy made from ``by_broker`` (its window is the firm's own) has its own id, of the subject with the
    broker and the firm's window (the owner-level id derives from the owner's window, which other firms'
    trades decide)."""
    ev = alert.get("evidence", {})
    if "account" in alert["subject"]:  # an account's alert (an owner's or a security's is about several)
        b = ev.get("broker")
        return {b: alert} if b else {}
    accounts = ev.get("accounts") or []
    cls = rule_class(alert["rule"])
    firms = ev.get("by_broker")
    brokers = sorted(firms) if firms is not None else sorted({a.get("broker") for a in accounts if a.get("broker")})
    out: dict[str, dict[str, Any]] = {}
    for b in brokers:
        view = orjson.loads(orjson.dumps(alert))  # a deep copy (JSON values only), far cheaper than deepcopy
        vev = view["evidence"]
        vev["accounts"] = [a for a in accounts if a.get("broker") == b]
        vev.pop("sample_order_ids", None)
        vev.pop("series", None)
        if cls is not None:
            cls.broker_view(view, b)
        vev = view["evidence"]
        vev.pop("by_broker", None)
        vev["broker_view"] = b
        if firms is not None:  # the firm's own window, its own id
            view["alert_id"] = alert_id(view["rule"], view["rule_version"], {**view["subject"], "broker": b},
                                        view["trading_day"], view["window_start"])
        out[b] = view
    return out


class RecommendationBook:
    """Final alerts per (subject, trading day), so a recommendation is always computed from all of them."""

    def __init__(self) -> None:
        self.finals: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def state(self) -> list:
        """As plain data, for the stage's checkpoint."""
        return [[subject, day, list(alerts.values())] for (subject, day), alerts in self.finals.items()]

    @classmethod
    def from_state(cls, data: list) -> RecommendationBook:
        book = cls()
        for subject, day, alerts in data:
            book.finals[(subject, day)] = {a["alert_id"]: a for a in alerts}
        return book

    def add(self, alert: dict[str, Any], params: dict[str, Any],
            history: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """The subject's recommendation for the alert's day once a final alert came (``history``: the
        subject's earlier recommendations, for escalation, as replay's ``--history``)."""
        if alert.get("status") != "final":
            return None
        import orjson

        key = (orjson.dumps(alert["subject"], option=orjson.OPT_SORT_KEYS).decode(), alert["trading_day"])
        self.finals.setdefault(key, {})[alert["alert_id"]] = alert
        days = sorted({d for _, d in self.finals})
        for old in days[:-2]:  # keep the last two trading days
            for k in [k for k in self.finals if k[1] == old]:
                del self.finals[k]
        recs = recommend(list(self.finals[key].values()), params, history)
        return recs[0] if recs else None
