"""``surveil replay --report DIR``: an HTML report of a replayed day, for an analyst.

Writes ``DIR/index.html`` (the day, events, alerts by rule, recommendations, a table of alerts linking to
each), ``DIR/alerts/<alert_id>.html`` (the evidence chart and the evidence table) and
``DIR/charts/<alert_id>.svg``. The charts are those of the live console (:mod:`surveil.report.charts`).
Templates ship in the package (``surveil/report/templates``); the pages use no external URL.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader

from surveil.report.charts import ChartError, chart_svg
from surveil.report.exceptions import ReportError  # noqa: F401 - importable from here too
from surveil.report.text import evidence_text, ns_text

_SAFE_NAME = re.compile(r"[0-9A-Za-z_-]{1,128}")


def _env() -> Environment:
    # every template is autoescaped, whatever its name (select_autoescape() matched only *.html, not the
    # *.html.j2 templates). Nothing is marked safe: no |safe, no Markup; the charts are separate files.
    env = Environment(loader=PackageLoader("surveil.report", "templates"), autoescape=True,
                      keep_trailing_newline=True)
    env.filters["subject"] = subject_text
    env.filters["num"] = lambda v: f"{v:,.0f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    # an alert's value or threshold in its unit: amounts are integer fen, shown in yuan
    env.filters["amount"] = lambda v, unit: f"{v / 100:,.2f} yuan" if unit == "fen" else env.filters["num"](v)
    env.filters["page"] = page_name
    env.filters["when"] = lambda ns: ns_text(ns) if type(ns) is int else ""
    return env


def page_name(alert_id: str) -> str:
    """The file name (without extension) of an alert's page and chart: the id when it is a plain name (the
    engine's ids are hex digests), else a digest of it, so that no id can name a path outside the report."""
    aid = str(alert_id)
    return aid if _SAFE_NAME.fullmatch(aid) else "id-" + hashlib.sha256(aid.encode()).hexdigest()[:32]


def subject_text(subject: dict[str, Any]) -> str:
    return subject.get("owner") or f"{subject.get('venue')}:{subject.get('account')}"


def evidence_rows(ev: dict[str, Any]) -> tuple[list[tuple[str, str]], list[dict], list[dict]]:
    """The evidence as (text rows, by_account rows, index rows): the rows are those of the console
    (:func:`surveil.report.text.evidence_text`: times in Asia/Shanghai, long lists shortened)."""
    indexes = [{k: v for k, v in ix.items() if k != "levels"} for ix in ev.get("indexes") or []
               if isinstance(ix, dict)]
    return evidence_text(ev), [x for x in ev.get("by_account") or [] if isinstance(x, dict)], indexes


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
            name = page_name(a["alert_id"])
            try:
                svg = chart_svg(a)
                (d / "charts" / f"{name}.svg").write_text(svg, encoding="utf-8")
                chart_error = None
            except ChartError as e:
                chart_error = str(e)
            rows, accounts, indexes = evidence_rows(a["evidence"])
            raw = orjson.dumps(a, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
            (d / "alerts" / f"{name}.html").write_text(page.render(
                a=a, rows=rows, accounts=accounts, indexes=indexes, chart_error=chart_error,
                recos=recos_of.get(a["alert_id"], []), raw=raw), encoding="utf-8")
        index = d / "index.html"
        index.write_text(env.get_template("index.html.j2").render(
            alerts=alerts, recommendations=recommendations, by_rule=sorted(by_rule.items()),
            measures=sorted(measures.items()), days=days, events=events, rejects=rejects, inputs=inputs,
            summary=summary), encoding="utf-8")
    except OSError as e:
        raise ReportError(f"--report {str(out_dir)!r}: cannot write the report ({e})") from None
    return index
