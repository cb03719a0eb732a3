"""Recommendations: which measure from the exchanges' ladder (docs/domain.md §3) an alert history supports.

Each rule says which step its alerts support (``Rule.suggest``; by default its
``meta.measure``), for example: crossing 300/s or 20,000/day alone is the high-frequency
*classification* → ``watch`` (a reporting duty, not misconduct); a sell burst →
``written_warning``, or ``restrict_trading`` for ``restrict_days`` trading days when it is
``restrict_multiple`` × its threshold or a main index fell ``restrict_index_drop_pct`` %
(the 2024-02-19 Lingjun measures). The subject's measure is the highest of its alerts';
- repeat offenders: with a history of earlier recommendations, a subject that had a
  measure above ``watch`` within ``escalation_window_days`` calendar days before is
  raised one step above the higher of its earlier and its current measure.

One recommendation per (subject, trading day); its ``reasons`` are the alert ids.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from surveil.actions.exceptions import HistoryError  # noqa: F401 - importable from here too
from surveil.rules import rule_class
from surveil.rules.base import Param, positive

#: stable measure ids, mildest first (SSE's ladder; SZSE's uses the same steps)
LADDER = (
    "watch",
    "verbal_warning",
    "written_warning",
    "supervisory_interview",
    "key_monitoring",
    "written_undertaking",
    "suspend_trading",
    "restrict_trading",
)
_RANK = {m: i for i, m in enumerate(LADDER)}
_DURATION = {"suspend_trading", "restrict_trading"}

RECO_PARAMS = (
    Param("restrict_multiple", 2.0, (int, float), False, "chosen: the Lingjun case sold 2.567× the default threshold",
          "a sell burst of this multiple of its threshold recommends restrict_trading", positive),
    Param("restrict_index_drop_pct", 0.5, (int, float), False, "chosen: SSE fell 0.65% in the Lingjun minute",
          "a main index falling this much during a sell burst recommends restrict_trading", positive),
    Param("restrict_days", 3, int, True, "SSE/SZSE measures of 2024-02-19: three trading days",
          "duration of restrict_trading and suspend_trading", positive),
    Param("escalation_window_days", 30, int, True, "domain: repeated events within a month escalate",
          "calendar days of history that count for escalation", positive),
)


def _subject_key(subject: dict[str, str]) -> bytes:
    return orjson.dumps(subject, option=orjson.OPT_SORT_KEYS)


def load_history(path: str | Path) -> list[dict[str, Any]]:
    """Earlier recommendations (JSON Lines, as written by ``surveil replay``); other lines are ignored."""
    path = Path(path)
    out = []
    try:
        with open(path, "rb") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise HistoryError(f"history file {path}: line {n}: bad JSON: {e}") from None
                if not isinstance(rec, dict) or rec.get("kind") != "recommendation":
                    continue
                for f_ in ("subject", "trading_day", "measure"):
                    if f_ not in rec:
                        raise HistoryError(f"history file {path}: line {n}: missing field {f_}")
                if rec["measure"] not in _RANK:
                    raise HistoryError(f"history file {path}: line {n}: measure={rec['measure']!r}: unknown measure")
                out.append(rec)
    except FileNotFoundError:
        raise HistoryError(f"history file not found: {path}") from None
    return out


def _alert_measure(a: dict[str, Any], p: dict[str, Any]) -> tuple[str, str]:
    """The step the alert's rule suggests for it (``Rule.suggest``), and why."""
    cls = rule_class(a["rule"])
    if cls is None:  # an alert of a rule this version does not have (an old history, a site rule not loaded)
        return "watch", f"{a['rule']}: {a['value']}"
    step, why = cls.suggest(a, p)
    if step not in _RANK:
        raise ValueError(f"rule {a['rule']}: suggested measure {step!r} is not a step of the ladder")
    return step, why


def recommend(alerts: Iterable[dict[str, Any]], params: dict[str, Any],
              history: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    groups: dict[tuple[bytes, str], list[dict[str, Any]]] = {}
    for a in alerts:
        if a.get("kind") != "alert" or a.get("status") != "final":
            continue
        groups.setdefault((_subject_key(a["subject"]), a["trading_day"]), []).append(a)
    hist: dict[bytes, list[dict[str, Any]]] = {}
    for h in history or []:
        hist.setdefault(_subject_key(h["subject"]), []).append(h)
    out = []
    for (skey, day), alerts_ in sorted(groups.items()):
        alerts_ = sorted(alerts_, key=lambda a: (a["window_start"], a["rule"]))
        best, whys = "watch", []
        for a in alerts_:
            m, why = _alert_measure(a, params)
            whys.append(why)
            if _RANK[m] > _RANK[best]:
                best = m
        escalated_from = None
        if best != "watch":
            d = dt.date.fromisoformat(day)
            earlier = [h for h in hist.get(skey, [])
                       if h["measure"] != "watch"
                       and 0 < (d - dt.date.fromisoformat(h["trading_day"])).days <= params["escalation_window_days"]]
            if earlier:
                prior = max(_RANK[h["measure"]] for h in earlier)
                new = LADDER[min(len(LADDER) - 1, max(_RANK[best], prior) + 1)]
                if new != best:
                    escalated_from = best
                    best = new
                    whys.append(f"repeat: {len(earlier)} earlier measure(s) within "
                                f"{params['escalation_window_days']} days, up to {LADDER[prior]}")
        subject = alerts_[0]["subject"]
        rec = {
            "kind": "recommendation",
            "recommendation_id": hashlib.blake2b(skey + day.encode(), digest_size=16).hexdigest(),
            "subject": subject,
            "trading_day": day,
            "measure": best,
            "duration_days": params["restrict_days"] if best in _DURATION else None,
            "reasons": [a["alert_id"] for a in alerts_],
            "rationale": "; ".join(whys) + f" → {best.replace('_', ' ')}"
                         + (f" for {params['restrict_days']} trading days" if best in _DURATION else ""),
        }
        if escalated_from:
            rec["escalated_from"] = escalated_from
        out.append(rec)
    return out
