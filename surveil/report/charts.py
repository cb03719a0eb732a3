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

Bounded, whatever the evidence holds (a chart is drawn on request by the live console): at most
:data:`MOST_BARS` bars of a series (longer series are drawn in groups, each bar the highest of its group),
:data:`MOST_ACCOUNTS` accounts drawn one by one (the others as one bar), :data:`MOST_SECONDS` seconds of a
per-second breakdown, :data:`MOST_INDEXES` indexes of :data:`MOST_LEVELS` levels each, names of at most
:data:`NAME_CHARS` characters; the chart's title says when it shows less than the evidence has. Names from
the data are never markup: matplotlib's mathtext is off (``$`` is a dollar sign) and ``<desc>`` is escaped.
Evidence that cannot be drawn (missing or mistyped fields) is a :class:`ChartError`, never another error.
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
# text.parse_math off: a "$" in an account or owner id is a dollar sign, not mathtext (which could fail)
_RC = {"svg.hashsalt": "surveil", "svg.fonttype": "path", "font.size": 9, "axes.titlesize": 10,
       "font.family": "DejaVu Sans", "text.parse_math": False}
#: bars of a series or of the qualifying seconds drawn at most (more are grouped: the highest of each group)
MOST_BARS = 600
#: accounts of a sell burst drawn one by one (the others are one bar, "N other accounts")
MOST_ACCOUNTS = 12
#: seconds of a per-second breakdown (a sell burst's peak minute, an order rate's peak context) drawn
MOST_SECONDS = 120
#: indexes drawn, and levels drawn of each (more are thinned evenly)
MOST_INDEXES = len(INDEX_COLOURS)
MOST_LEVELS = 2_000
#: characters of a name drawn or listed in <desc> (longer names end with "…")
NAME_CHARS = 60
#: accounts listed in <desc> (the others are counted)
MOST_LISTED = 100
_LOCK = threading.Lock()  # pyplot's rc state is global


def _hms(ns: int) -> str:
    return datetime.fromtimestamp(int(ns) // 1_000_000_000, SHANGHAI).strftime("%H:%M:%S")


def _name(v: Any) -> str:
    s = str(v)
    return s if len(s) <= NAME_CHARS else s[:NAME_CHARS - 1] + "…"


def _grouped(rows: list, most: int = MOST_BARS) -> tuple[list[tuple[int, Any, int]], int]:
    """``rows`` of ``[t, value]`` as at most ``most`` bars ``(t of the group's first row, the group's highest
    value, t of that highest)`` of groups of consecutive rows, and the group size (1: every row is a bar)."""
    k = max(1, -(-len(rows) // most))
    out = []
    for i in range(0, len(rows), k):
        group = [(int(t), c if type(c) is int else float(c)) for t, c in rows[i:i + k]]
        t_max, c_max = max(group, key=lambda x: x[1])
        out.append((group[0][0], c_max, t_max))
    return out, k


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
        try:
            return draw(alert)
        except ChartError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError) as e:
            plt.close("all")
            raise ChartError(f"alert {alert.get('alert_id')}: evidence of rule {rule} cannot be drawn "
                             f"({type(e).__name__}: {_name(e)})") from None


def _subject(alert: dict[str, Any]) -> str:
    s = alert["subject"]
    return _name(s.get("owner") or f"{s.get('venue')}:{s.get('account')}")


def _order_rate(alert: dict[str, Any]) -> str:
    ev = alert["evidence"]
    thr = int(alert["threshold"])
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
        span = min(int(ev["peak_context"].get("seconds", 30)), MOST_SECONDS // 2)
        by_offset = {}
        for t, c in context:  # only the seconds drawn are kept, however many the evidence lists
            off = (int(t) - peak_at) // 1_000_000_000
            if -span <= off <= span:
                by_offset[off] = int(c)
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
    bars, k = _grouped(rows)
    xs = list(range(len(bars)))
    counts = [c for _, c, _ in bars]
    peak_bar = [t_max == peak_at for _, _, t_max in bars]
    ax.bar(xs, counts, color=["#c62828" if p else "#3a78c9" for p in peak_bar], width=0.7,
           label=f"orders+cancels per {unit}")
    ax.axhline(thr, color="#333333", linestyle="--", linewidth=1, label=f"threshold {thr:,}")
    for x, (_, c, t), p in zip(xs, bars, peak_bar):
        if p:
            ax.annotate(f"peak {c:,} at {_hms(t)}", (x, c), xytext=(0, 4), textcoords="offset points",
                        ha="center", color="#c62828")
            labels.append(f"peak {c} at {_hms(t)}")
    step = max(1, len(bars) // 12)
    ax.set_xticks(xs[::step], [_hms(t) for t, _, _ in bars][::step], rotation=30, ha="right")
    ax.set_ylim(0, max(counts + [thr]) * 1.25)
    ax.set_ylabel(f"messages per {unit}")
    more = " (list truncated)" if ev.get(f"per_{unit}_truncated") else ""
    drawn = f", drawn as {len(bars):,} bars (each the highest of {k:,})" if k > 1 else ""
    ax.set_title(f"every {unit} at or above {thr:,} in the day: {len(rows):,}{more}{drawn} (Asia/Shanghai)")
    if k > 1:
        labels.append(f"{len(rows)} {unit}s drawn as {len(bars)} bars")
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


def _colour(shade: dict[str, int], venue: str) -> str:
    cols = VENUE_COLOURS.get(venue, ["#777777"])
    colour = cols[shade.get(venue, 0) % len(cols)]
    shade[venue] = shade.get(venue, 0) + 1
    return colour


def _sell_burst(alert: dict[str, Any]) -> str:
    ev = alert["evidence"]
    fig, ax = plt.subplots(figsize=(9, 5))
    labels = [f"owner {_subject(alert)}"]
    pps = ev.get("peak_per_second")
    shade = {v: 0 for v in VENUE_COLOURS}
    listed = 0  # accounts named in <desc>
    others_note = ""
    if pps:  # final: per second, stacked by account
        start, seconds = int(pps["start"]), int(pps["seconds"])
        n = max(0, min(seconds, MOST_SECONDS))
        xs = list(range(n))
        bottom = [0.0] * n
        accounts = list(pps["accounts"])
        if len(accounts) > MOST_ACCOUNTS:  # the largest one by one, the others as one bar
            accounts.sort(key=lambda a: -sum(int(v) for v in a["value_fen"]))
        rest = [0] * n
        for i, a in enumerate(accounts):
            per_second = [int(v) for v in a["value_fen"][:n]]
            per_second += [0] * (n - len(per_second))
            total = sum(int(v) for v in a["value_fen"]) / 100
            name = f"{_name(a['venue'])}:{_name(a['account'])}"
            if listed < MOST_LISTED:
                labels.append(f"account {name} {total:,.0f} yuan")
                listed += 1
            if i >= MOST_ACCOUNTS:
                rest = [r + v for r, v in zip(rest, per_second)]
                continue
            vals = [v / 1e10 for v in per_second]
            ax.bar(xs, vals, bottom=bottom, width=0.9, color=_colour(shade, a["venue"]),
                   label=f"{name}: {total / 1e8:,.2f}")
            bottom = [b + v for b, v in zip(bottom, vals)]
        if len(accounts) > MOST_ACCOUNTS:
            others = len(accounts) - MOST_ACCOUNTS
            ax.bar(xs, [v / 1e10 for v in rest], bottom=bottom, width=0.9, color="#bdbdbd",
                   label=f"{others:,} other accounts: {sum(rest) / 1e10:,.2f}")
            others_note = f"\nthe {MOST_ACCOUNTS} largest of {len(accounts):,} accounts drawn one by one"
        if len(accounts) > MOST_LISTED:
            labels.append(f"and {len(accounts) - MOST_LISTED} more accounts")
        ax.set_xlim(-0.5, max(n, 1) - 0.5)
        cut = f", the first {n} of {seconds} s drawn" if n < seconds else ""
        ax.set_xlabel(f"seconds from {_hms(start)} (Asia/Shanghai){cut}")
        ax.set_ylabel("sell value per second, 100M yuan")
        t0 = start
    else:  # raised: the breakdown by account of the first qualifying window
        accounts = ev.get("by_account") or []
        if not accounts:
            raise ChartError(f"alert {alert.get('alert_id')}: evidence has no by_account")
        if len(accounts) > MOST_ACCOUNTS:  # the largest one by one, the others as one bar
            accounts = sorted(accounts, key=lambda a: -int(a["value_fen"]))
        drawn = accounts[:MOST_ACCOUNTS]
        names = [f"{_name(a['venue'])}:{_name(a['account'])}" for a in drawn]
        for i, (a, name) in enumerate(zip(drawn, names)):
            ax.bar([i], [int(a["value_fen"]) / 1e10], color=_colour(shade, a["venue"]), label=name)
        for a in accounts[:MOST_LISTED]:
            labels.append(f"account {_name(a['venue'])}:{_name(a['account'])} {int(a['value_fen']) / 100:,.0f} yuan")
        if len(accounts) > MOST_LISTED:
            labels.append(f"and {len(accounts) - MOST_LISTED} more accounts")
        if len(accounts) > MOST_ACCOUNTS:
            rest = sum(int(a["value_fen"]) for a in accounts[MOST_ACCOUNTS:])
            others = len(accounts) - MOST_ACCOUNTS
            ax.bar([len(drawn)], [rest / 1e10], color="#bdbdbd", label=f"{others:,} other accounts")
            names.append(f"{others:,} other accounts")
            others_note = f"\nthe {MOST_ACCOUNTS} largest of {len(accounts):,} accounts drawn one by one"
        ax.set_xticks(list(range(len(names))), names, rotation=20, ha="right")
        ax.set_ylabel("sell value in the window, 100M yuan")
        t0 = None
    for v, x in list((ev.get("by_venue_fen") or {}).items())[:len(VENUE_COLOURS) + 2]:
        labels.append(f"venue {_name(v)} {x / 100:,.0f} yuan")
    handles, names = ax.get_legend_handles_labels()
    idx = ev.get("indexes") or []
    if idx and t0 is not None:
        ax2 = ax.twinx()
        for i, ix in enumerate(idx[:MOST_INDEXES]):
            levels = ix.get("levels") or []
            step = max(1, -(-len(levels) // MOST_LEVELS))  # thinned evenly, the last level kept
            pts = [(int(t), float(x)) for t, x in levels[::step]]
            if levels and (len(levels) - 1) % step:
                pts.append((int(levels[-1][0]), float(levels[-1][1])))
            if not pts:
                continue
            base = float(ix["level_at_start"])
            xs_i = [(t - t0) / 1e9 - 0.5 for t, _ in pts]
            ys_i = [(x - base) * 100 / base for _, x in pts]
            ax2.step(xs_i, ys_i, where="post", color=INDEX_COLOURS[i % len(INDEX_COLOURS)], linewidth=1.4,
                     label=f"index {_name(ix['index'])} {base:,.2f} → {float(ix['level_at_end']):,.2f}")
            labels.append(f"index {_name(ix['index'])} {base} to {ix['level_at_end']} "
                          f"(max drop {ix.get('max_drop_pct')}%)")
        ax2.set_ylabel("index change from burst start, %")
        ax2.axhline(0, color="#999999", linewidth=0.6)
        h2, n2 = ax2.get_legend_handles_labels()
        handles, names = handles + h2, names + n2
    by_venue = ", ".join(f"{_name(v)} {x / 1e10:,.2f}"
                         for v, x in list((ev.get("by_venue_fen") or {}).items())[:len(VENUE_COLOURS) + 2])
    ax.set_title(f"{_subject(alert)}: {alert['value'] / 1e10:,.2f} x100M yuan sold in {ev.get('window_seconds', 60)} s "
                 f"(threshold {alert['threshold'] / 1e10:,.0f}); by venue: {by_venue}{others_note}")
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
    bars, k = _grouped(pts)
    rule = _name(alert["rule"])
    ax.bar(range(len(bars)), [v for _, v, _ in bars], color="#3a78c9", label=f"{rule} ({_name(ser.get('unit'))})")
    if ser.get("unit") == alert.get("unit"):
        ax.axhline(alert["threshold"], color="#c62828", linestyle="--", linewidth=1,
                   label=f"threshold {alert['threshold']:,}")
    every = max(1, -(-len(bars) // 120))  # at most 120 tick labels
    ax.set_xticks(range(0, len(bars), every), [_hms(t) for t, _, _ in bars[::every]], rotation=90, fontsize=6)
    ax.set_ylabel(f"{_name(ser.get('unit'))} per {step * k / 1e9:g} s" + (" (the highest of each)" if k > 1 else ""))
    drawn = f"\n{len(pts):,} points drawn as {len(bars):,} bars, each the highest of {k:,}" if k > 1 else ""
    ax.set_title(f"{rule}: {_subject(alert)}{drawn}")
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    fig.tight_layout()
    labels = [f"subject {_subject(alert)}", f"rule {rule}", f"threshold {alert['threshold']}"]
    if k > 1:
        labels.append(f"{len(pts)} points drawn as {len(bars)} bars")
    return _svg(fig, labels)


#: chart kinds (``RuleMeta.chart``): a rule names the kind its evidence is drawn as
_DRAW = {"order_rate": _order_rate, "daily_count": _daily, "sell_burst": _sell_burst, "series": _series}
CHART_KINDS = tuple(_DRAW)
