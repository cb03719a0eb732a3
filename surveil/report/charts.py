"""Evidence charts, as SVG text: ONE implementation for the replay report and the live console.

A rule names the kind of chart its evidence is drawn as (``RuleMeta.chart``):
- ``series`` (any rule): the common evidence's time series against the threshold;
- ``order_rate`` (the peak order rate per second): the account's orders+cancels per second in the 30 s
  around the peak second (final alerts, calendar mode), and every second that reached the threshold in the
  day; the threshold line and the peak marked.
- ``daily_count`` (the daily order count): the day's orders and cancels (stacked) against the threshold.
- ``sell_burst`` (an owner's sell burst): the peak minute's sell value per second, stacked by account and
  coloured by venue (SSE blues, SZSE oranges, BSE greens), against the main indexes' change from their level
  at the burst start (twin axis, the levels in the legend).

Deterministic: the Agg backend, ``svg.hashsalt`` fixed, no date in the metadata, and text drawn as paths
(``svg.fonttype = "path"``: the SVG needs no font on the viewer's machine). Because drawn text is not
searchable, every name the chart shows (accounts, venues, indexes, subject) is also listed in a ``<desc>``
element, for tests and screen readers. The same alert gives byte-identical SVG. Amounts are in units of
100M yuan (1 亿; the bundled DejaVu font has no CJK glyphs, so the charts say "100M").
"""

from __future__ import annotations

import io
import threading
from datetime import datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from surveil.report.exceptions import ChartError  # noqa: F401 - importable from here too
from surveil.rules import rule_class  # noqa: E402

SHANGHAI = timezone(timedelta(hours=8))
VENUE_COLOURS = {
    "SSE": ["#1f4e9c", "#3a78c9", "#6fa3e0", "#a6c8ef", "#d0e2f7"],
    "SZSE": ["#c2570c", "#e8772e", "#f39c5a", "#f8bf8f", "#fcdcc0"],
    "BSE": ["#2e7d32", "#4caf50", "#81c784", "#a5d6a7", "#c8e6c9"],
}
INDEX_COLOURS = ["#111111", "#7b1fa2", "#c62828", "#00838f", "#5d4037"]
_RC = {"svg.hashsalt": "surveil", "svg.fonttype": "path", "font.size": 9, "axes.titlesize": 10,
       "font.family": "DejaVu Sans"}
_LOCK = threading.Lock()  # pyplot's rc state is global


def _hms(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, SHANGHAI).strftime("%H:%M:%S")


def _svg(fig: Figure, labels: list[str]) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "surveil"})
    plt.close(fig)
    svg = buf.getvalue()
    desc = "<desc>" + escape("; ".join(labels)) + "</desc>"
    # after the opening <svg ...> element: the names drawn in the chart, as text
    i = svg.index(">", svg.index("<svg")) + 1
    return svg[:i] + "\n " + desc + svg[i:]


def chart_svg(alert: dict[str, Any]) -> str:
    """The evidence chart of an alert (raised or final) as an SVG document (text): drawn as its rule's chart
    kind (``RuleMeta.chart``), else from the common evidence's time series."""
    rule = alert.get("rule")
    cls = rule_class(rule) if isinstance(rule, str) else None
    if cls is None:
        raise ChartError(f"rule={rule!r}: no such rule")
    draw = _DRAW.get(cls.meta.chart)
    if draw is None:
        raise ChartError(f"rule={rule!r}: chart kind {cls.meta.chart!r} is not one of {', '.join(_DRAW)}")
    with _LOCK, plt.rc_context(_RC):
        return draw(alert)


def _subject(alert: dict[str, Any]) -> str:
    s = alert["subject"]
    return s.get("owner") or f"{s.get('venue')}:{s.get('account')}"


def _order_rate(alert: dict[str, Any]) -> str:
    ev = alert["evidence"]
    thr = alert["threshold"]
    unit = "window" if ev.get("mode") == "sliding" else "second"
    rows = ev.get(f"per_{unit}")
    if not rows:  # raised: only the first qualifying second is known yet
        first = ev.get(f"first_{unit}")
        rows = [[first, ev.get("count_when_raised", alert["value"])]] if first is not None else []
    if not rows:
        raise ChartError(f"alert {alert.get('alert_id')}: evidence has no per_{unit} counts")
    peak_at = ev.get(f"peak_{unit}")
    labels = [f"subject {_subject(alert)}", f"threshold {thr}"]
    context = (ev.get("peak_context") or {}).get("per_second")
    if context and peak_at is not None:
        fig, (top, ax) = plt.subplots(2, 1, figsize=(7.5, 6.2), gridspec_kw={"height_ratios": [3, 2]})
        span = int(ev["peak_context"].get("seconds", 30))
        by_offset = {(int(t) - peak_at) // 1_000_000_000: int(c) for t, c in context}
        xs = list(range(-span, span + 1))
        ys = [by_offset.get(x, 0) for x in xs]
        top.bar(xs, ys, width=0.8, color=["#c62828" if x == 0 else "#3a78c9" for x in xs],
                label="orders+cancels per second")
        top.axhline(thr, color="#333333", linestyle="--", linewidth=1, label=f"threshold {thr:,}")
        top.set_xlim(-span - 0.5, span + 0.5)
        top.set_ylim(0, max(ys + [thr]) * 1.18)
        top.set_xlabel(f"seconds from the peak second {_hms(peak_at)} (Asia/Shanghai)")
        top.set_ylabel("messages per second")
        top.set_title(f"{_subject(alert)}: peak {by_offset.get(0, alert['value']):,} at {_hms(peak_at)}, "
                      f"the {span} s around it")
        top.legend(loc="upper left", fontsize=8)
        labels.append(f"peak context {len(context)} seconds")
    else:
        fig, ax = plt.subplots(figsize=(7.5, 3.4))
    xs = list(range(len(rows)))
    counts = [int(c) for _, c in rows]
    colours = ["#c62828" if t == peak_at else "#3a78c9" for t, _ in rows]
    ax.bar(xs, counts, color=colours, width=0.7, label=f"orders+cancels per {unit}")
    ax.axhline(thr, color="#333333", linestyle="--", linewidth=1, label=f"threshold {thr:,}")
    for x, (t, c) in zip(xs, rows):
        if t == peak_at:
            ax.annotate(f"peak {c:,} at {_hms(t)}", (x, c), xytext=(0, 4), textcoords="offset points",
                        ha="center", color="#c62828")
            labels.append(f"peak {c} at {_hms(t)}")
    step = max(1, len(rows) // 12)
    ax.set_xticks(xs[::step], [_hms(t) for t, _ in rows][::step], rotation=30, ha="right")
    ax.set_ylim(0, max(counts + [thr]) * 1.25)
    ax.set_ylabel(f"messages per {unit}")
    more = " (list truncated)" if ev.get(f"per_{unit}_truncated") else ""
    ax.set_title(f"every {unit} at or above {thr:,} in the day: {len(rows)}{more} (Asia/Shanghai)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _svg(fig, labels)


def _daily(alert: dict[str, Any]) -> str:
    ev = alert["evidence"]
    thr = alert["threshold"]
    orders, cancels = ev.get("orders"), ev.get("cancels")
    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    if orders is None:  # raised: only the day's count at the threshold is known
        ax.barh([0], [alert["value"]], color="#3a78c9", label="orders+cancels when raised")
    else:
        ax.barh([0], [orders], color="#3a78c9", label=f"orders {orders:,}")
        ax.barh([0], [cancels], left=[orders], color="#f39c5a", label=f"cancels {cancels:,}")
    ax.axvline(thr, color="#333333", linestyle="--", linewidth=1, label=f"threshold {thr:,}")
    when = ev.get("threshold_reached_at")
    ax.set_yticks([0], [_subject(alert)])
    ax.set_xlabel("orders + cancels in the trading day")
    ax.set_title(f"{_subject(alert)}: {alert['value']:,} in the day"
                 + (f", threshold reached at {_hms(when)}" if when else ""))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _svg(fig, [f"subject {_subject(alert)}", f"orders {orders}", f"cancels {cancels}", f"threshold {thr}"])


def _sell_burst(alert: dict[str, Any]) -> str:
    ev = alert["evidence"]
    fig, ax = plt.subplots(figsize=(9, 5))
    labels = [f"owner {_subject(alert)}"]
    pps = ev.get("peak_per_second")
    shade = {v: 0 for v in VENUE_COLOURS}
    if pps:  # final: per second, stacked by account
        start, n = int(pps["start"]), int(pps["seconds"])
        xs = list(range(n))
        bottom = [0.0] * n
        for a in pps["accounts"]:
            cols = VENUE_COLOURS.get(a["venue"], ["#777777"])
            colour = cols[shade.get(a["venue"], 0) % len(cols)]
            shade[a["venue"]] = shade.get(a["venue"], 0) + 1
            vals = [v / 1e10 for v in a["value_fen"]]
            total = sum(a["value_fen"]) / 100
            name = f"{a['venue']}:{a['account']}"
            ax.bar(xs, vals, bottom=bottom, width=0.9, color=colour, label=f"{name}: {total / 1e8:,.2f}")
            bottom = [b + v for b, v in zip(bottom, vals)]
            labels.append(f"account {name} {total:,.0f} yuan")
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_xlabel(f"seconds from {_hms(start)} (Asia/Shanghai)")
        ax.set_ylabel("sell value per second, 100M yuan")
        t0 = start
    else:  # raised: the breakdown by account of the first qualifying window
        accounts = ev.get("by_account") or []
        if not accounts:
            raise ChartError(f"alert {alert.get('alert_id')}: evidence has no by_account")
        xs = list(range(len(accounts)))
        for i, a in enumerate(accounts):
            cols = VENUE_COLOURS.get(a["venue"], ["#777777"])
            colour = cols[shade.get(a["venue"], 0) % len(cols)]
            shade[a["venue"]] = shade.get(a["venue"], 0) + 1
            ax.bar([i], [a["value_fen"] / 1e10], color=colour, label=f"{a['venue']}:{a['account']}")
            labels.append(f"account {a['venue']}:{a['account']} {a['value_fen'] / 100:,.0f} yuan")
        ax.set_xticks(xs, [f"{a['venue']}:{a['account']}" for a in accounts], rotation=20, ha="right")
        ax.set_ylabel("sell value in the window, 100M yuan")
        t0 = None
    for v, x in (ev.get("by_venue_fen") or {}).items():
        labels.append(f"venue {v} {x / 100:,.0f} yuan")
    handles, names = ax.get_legend_handles_labels()
    idx = ev.get("indexes") or []
    if idx and t0 is not None:
        ax2 = ax.twinx()
        for i, ix in enumerate(idx):
            pts = [(int(t), float(x)) for t, x in ix.get("levels") or []]
            if not pts:
                continue
            base = float(ix["level_at_start"])
            xs_i = [(t - t0) / 1e9 - 0.5 for t, _ in pts]
            ys_i = [(x - base) * 100 / base for _, x in pts]
            ax2.step(xs_i, ys_i, where="post", color=INDEX_COLOURS[i % len(INDEX_COLOURS)], linewidth=1.4,
                     label=f"index {ix['index']} {base:,.2f} → {float(ix['level_at_end']):,.2f}")
            labels.append(f"index {ix['index']} {base} to {ix['level_at_end']} (max drop {ix.get('max_drop_pct')}%)")
        ax2.set_ylabel("index change from burst start, %")
        ax2.axhline(0, color="#999999", linewidth=0.6)
        h2, n2 = ax2.get_legend_handles_labels()
        handles, names = handles + h2, names + n2
    by_venue = ", ".join(f"{v} {x / 1e10:,.2f}" for v, x in (ev.get("by_venue_fen") or {}).items())
    ax.set_title(f"{_subject(alert)}: {alert['value'] / 1e10:,.2f} x100M yuan sold in {ev.get('window_seconds', 60)} s "
                 f"(threshold {alert['threshold'] / 1e10:,.0f}); by venue: {by_venue}")
    fig.legend(handles, names, loc="lower center", fontsize=7, ncol=3, frameon=False)
    rows = (len(names) + 2) // 3
    fig.subplots_adjust(left=0.08, right=0.9, top=0.92, bottom=0.16 + 0.045 * rows)
    return _svg(fig, labels)


def _series(alert: dict[str, Any]) -> str:
    """Any rule's chart from the common evidence part: its ``series`` (value per interval) against the
    threshold, when the series counts what the threshold does."""
    ev = alert["evidence"]
    ser = ev.get("series")
    if not ser or not ser.get("points"):
        raise ChartError(f"alert {alert.get('alert_id')}: no time series in its evidence")
    fig, ax = plt.subplots(figsize=(9, 4))
    pts = ser["points"]
    step = int(ser.get("step_ns") or 1_000_000_000)
    xs = [_hms(int(t)) for t, _ in pts]
    ax.bar(range(len(pts)), [v for _, v in pts], color="#3a78c9", label=f"{alert['rule']} ({ser.get('unit')})")
    if ser.get("unit") == alert.get("unit"):
        ax.axhline(alert["threshold"], color="#c62828", linestyle="--", linewidth=1,
                   label=f"threshold {alert['threshold']:,}")
    ax.set_xticks(range(len(pts)), xs, rotation=90, fontsize=6)
    ax.set_ylabel(f"{ser.get('unit')} per {step / 1e9:g} s")
    ax.set_title(f"{alert['rule']}: {_subject(alert)}")
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    fig.tight_layout()
    return _svg(fig, [f"subject {_subject(alert)}", f"rule {alert['rule']}", f"threshold {alert['threshold']}"])


#: chart kinds (``RuleMeta.chart``): a rule names the kind its evidence is drawn as
_DRAW = {"order_rate": _order_rate, "daily_count": _daily, "sell_burst": _sell_burst, "series": _series}
CHART_KINDS = tuple(_DRAW)
