"""``surveil replay --report DIR``: an HTML report of a replayed day, for an analyst.

Writes ``DIR/index.html`` (the day, events, alerts by rule, recommendations, a table of alerts linking to
each), ``DIR/alerts/<alert_id>.html`` (the evidence chart and the evidence table) and
``DIR/charts/<alert_id>.svg``. The charts are those of the live console (:mod:`surveil.report.charts`).
Templates ship in the package (``surveil/report/templates``); the pages use no external URL.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape

from surveil.report.charts import ChartError, chart_svg
from surveil.report.exceptions import ReportError  # noqa: F401 - importable from here too


def _env() -> Environment:
    env = Environment(loader=PackageLoader("surveil.report", "templates"), autoescape=select_autoescape(),
                      keep_trailing_newline=True)
    env.filters["subject"] = subject_text
    env.filters["num"] = lambda v: f"{v:,.0f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    # an alert's value or threshold in its unit: amounts are integer fen, shown in yuan
    env.filters["amount"] = lambda v, unit: f"{v / 100:,.2f} yuan" if unit == "fen" else env.filters["num"](v)
    return env


def subject_text(subject: dict[str, Any]) -> str:
    return subject.get("owner") or f"{subject.get('venue')}:{subject.get('account')}"


def evidence_rows(ev: dict[str, Any]) -> tuple[list[tuple[str, str]], list[dict], list[dict]]:
    """The evidence as (scalar rows, by_account rows, index rows); long series are summarised."""
    rows = []
    for k in sorted(ev):
        v = ev[k]
        if k in ("by_account", "indexes", "peak_per_second", "per_second", "per_window"):
            continue
        if isinstance(v, (dict, list)):
            v = orjson.dumps(v).decode()
        rows.append((k, "" if v is None else str(v)))
    for k in ("per_second", "per_window"):
        if ev.get(k):
            rows.append((k, ", ".join(f"{c}" for _, c in ev[k][:50]) + (" …" if len(ev[k]) > 50 else "")))
    indexes = [{k: v for k, v in ix.items() if k != "levels"} for ix in ev.get("indexes") or []]
    return rows, list(ev.get("by_account") or []), indexes


def check_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and make sure a file can be written there (before a long replay)."""
    d = Path(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / ".surveil-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ReportError(f"--report {str(path)!r}: cannot write there ({e.strerror or e})") from None
    return d


def write_report(out_dir: str | os.PathLike, alerts: list[dict[str, Any]], recommendations: list[dict[str, Any]],
                 *, events: int, rejects: int, inputs: list[str], summary: str = "") -> Path:
    """Write the report; returns the path of ``index.html``. Raises :class:`ReportError` when it cannot."""
    d = check_dir(out_dir)
    env = _env()
    by_rule = Counter(a["rule"] for a in alerts)
    measures = Counter(r["measure"] for r in recommendations)
    days = sorted({a["trading_day"] for a in alerts} | {r["trading_day"] for r in recommendations})
    recos_of: dict[str, list[dict]] = {}
    for r in recommendations:
        for aid in r.get("reasons") or []:
            recos_of.setdefault(aid, []).append(r)
    try:
        (d / "alerts").mkdir(exist_ok=True)
        (d / "charts").mkdir(exist_ok=True)
        page = env.get_template("alert.html.j2")
        for a in alerts:
            aid = a["alert_id"]
            try:
                svg = chart_svg(a)
                (d / "charts" / f"{aid}.svg").write_text(svg, encoding="utf-8")
                chart_error = None
            except ChartError as e:
                chart_error = str(e)
            rows, accounts, indexes = evidence_rows(a["evidence"])
            (d / "alerts" / f"{aid}.html").write_text(page.render(
                a=a, rows=rows, accounts=accounts, indexes=indexes, chart_error=chart_error,
                recos=recos_of.get(aid, []), raw=orjson.dumps(a, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
                .decode()), encoding="utf-8")
        index = d / "index.html"
        index.write_text(env.get_template("index.html.j2").render(
            alerts=alerts, recommendations=recommendations, by_rule=sorted(by_rule.items()),
            measures=sorted(measures.items()), days=days, events=events, rejects=rejects, inputs=inputs,
            summary=summary), encoding="utf-8")
    except OSError as e:
        raise ReportError(f"--report {str(out_dir)!r}: cannot write the report ({e})") from None
    return index
