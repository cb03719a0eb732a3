"""What goes to the recommendations topic and to each broker's alert topic."""

from __future__ import annotations

from typing import Any

import orjson

from surveil.actions import recommend


def broker_views(alert: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The alert as each broker may see it: only alerts about its accounts, and, for an owner-level
    alert, only that broker's accounts in the evidence (venue totals recomputed from them)."""
    ev = alert.get("evidence", {})
    if "venue" in alert["subject"]:
        b = ev.get("broker")
        return {b: alert} if b else {}
    accounts = ev.get("by_account") or []
    out: dict[str, dict[str, Any]] = {}
    for b in sorted({a.get("broker") for a in accounts if a.get("broker")}):
        mine = [a for a in accounts if a.get("broker") == b]
        view = orjson.loads(orjson.dumps(alert))  # a deep copy (JSON values only), far cheaper than deepcopy
        vev = view["evidence"]
        vev["by_account"] = mine
        pps = vev.get("peak_per_second")
        if pps:  # the per-second chart data: this broker's accounts only
            own = {(a["venue"], a["account"]) for a in mine}
            kept = [x for x in pps.get("accounts", []) if (x["venue"], x["account"]) in own]
            pps["accounts"] = kept
            pps["accounts_omitted"] = len(mine) - len(kept)
        by_venue: dict[str, int] = {}
        for a in mine:
            by_venue[a["venue"]] = by_venue.get(a["venue"], 0) + a["value_fen"]
        vev["by_venue_fen"] = dict(sorted(by_venue.items()))
        vev.pop("sample_order_ids", None)
        vev["broker_view"] = b
        out[b] = view
    return out


class RecommendationBook:
    """Final alerts per (subject, trading day), so a recommendation is always computed from all of them."""

    def __init__(self) -> None:
        self.finals: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def add(self, alert: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
        if alert.get("status") != "final":
            return None
        import orjson

        key = (orjson.dumps(alert["subject"], option=orjson.OPT_SORT_KEYS).decode(), alert["trading_day"])
        self.finals.setdefault(key, {})[alert["alert_id"]] = alert
        days = sorted({d for _, d in self.finals})
        for old in days[:-2]:  # keep the last two trading days
            for k in [k for k in self.finals if k[1] == old]:
                del self.finals[k]
        recs = recommend(list(self.finals[key].values()), params)
        return recs[0] if recs else None
