"""Charts are bounded whatever the evidence holds (the console draws them on request): a series of 10^6
points, a sell burst of 10^4 accounts, an order rate listing 10^6 seconds take a bounded time and draw a
bounded number of bars, and the chart says what it left out. Ids from the data are text, never mathtext or
markup; evidence of the wrong shape is a ChartError."""

import copy
import time
import xml.etree.ElementTree as ET

import pytest
from hostile import write_day

from surveil.replay import replay
from surveil.report import charts
from surveil.report.charts import MOST_ACCOUNTS, MOST_BARS, ChartError, chart_svg

SVG = "{http://www.w3.org/2000/svg}"
T = 1_708_306_200_000_000_000
S = 1_000_000_000
#: generous for a shared 2-core machine: unbounded, these take minutes or exhaust memory
SECONDS = 20.0


@pytest.fixture(scope="module")
def alerts(tmp_path_factory):
    events, accounts = write_day(tmp_path_factory.mktemp("bounds"))
    r = replay([events], accounts=accounts)
    return {a["rule"]: a for a in r.alerts}


def desc(svg: str) -> str:
    return ET.fromstring(svg).find(SVG + "desc").text


def bars(svg: str) -> int:
    return len(ET.fromstring(svg).findall(f".//{SVG}g[@id]"))


def timed(alert):
    t0 = time.perf_counter()
    svg = chart_svg(alert)
    took = time.perf_counter() - t0
    assert took < SECONDS, took
    return svg


def test_a_series_of_a_million_points(alerts, monkeypatch):
    monkeypatch.setitem(charts._DRAW, "order_rate", charts._series)  # no rule of ours draws a plain series yet
    a = copy.deepcopy(alerts["order_rate_1s"])
    points = [[T + i * S, i % 1000] for i in range(10**6)]
    a["evidence"]["series"] = {"unit": "messages", "step_ns": S, "points": points}
    svg = timed(a)
    assert f"1000000 points drawn as {MOST_BARS} bars" in desc(svg)
    assert bars(svg) < 3 * MOST_BARS


def test_a_sell_burst_of_ten_thousand_accounts(alerts):
    a = copy.deepcopy(alerts["sell_burst_1m"])
    ev = a["evidence"]
    pps = ev["peak_per_second"]
    pps["seconds"] = 10**9  # and a breakdown that claims a billion seconds
    pps["accounts"] = [{"venue": "SSE", "account": f"A{i:05d}", "value_fen": [i] * 60} for i in range(10_000)]
    svg = timed(a)
    text = desc(svg)
    assert "account SSE:A09999" in text and "and 9900 more accounts" in text  # the largest first
    assert "account SSE:A00000" not in text
    assert bars(svg) < (MOST_ACCOUNTS + 1) * charts.MOST_SECONDS + 200
    raised = {**a, "status": "raised", "evidence": {"by_account": [
        {"venue": "SZSE", "account": f"B{i:05d}", "value_fen": i} for i in range(10_000)]}}
    svg = timed(raised)
    assert "account SZSE:B09999" in desc(svg) and bars(svg) < 200


def test_an_order_rate_listing_a_million_seconds(alerts):
    a = copy.deepcopy(alerts["order_rate_1s"])
    ev = a["evidence"]
    ev["per_second"] = [[T + i * S, 300 + i % 50] for i in range(10**6)]
    ev["peak_second"] = T + 10 * S
    ev["per_second"][10][1] = 400
    ev["peak_context"] = {"seconds": 10**9, "per_second": [[T + i * S, 5] for i in range(10**6)]}
    svg = timed(a)
    text = desc(svg)
    assert f"1000000 seconds drawn as {MOST_BARS} bars" in text and "peak 400 at 09:30:10" in text


def test_ids_are_text_not_mathtext(alerts):
    a = copy.deepcopy(alerts["order_rate_1s"])
    a["subject"]["account"] = "$\\frac{$"  # mathtext that does not parse: a ValueError before
    assert "SSE:$\\frac{$" in desc(chart_svg(a))
    b = copy.deepcopy(alerts["sell_burst_1m"])
    b["subject"]["owner"] = "$x^2$ &amp; <b>"
    assert "owner $x^2$ &amp; <b>" in desc(chart_svg(b))


@pytest.mark.parametrize("rule, change", [
    ("order_rate_1s", {"per_second": [["x", None]]}),
    ("order_rate_1s", {"peak_context": {"seconds": "many", "per_second": [[T, 1]]}}),
    ("sell_burst_1m", {"peak_per_second": {"start": T, "seconds": 60, "accounts": [{"venue": "SSE"}]}}),
    ("sell_burst_1m", {"peak_per_second": None, "by_account": [{"venue": "SSE", "value_fen": "lots"}]}),
    ("sell_burst_1m", {"indexes": [{"index": "X", "levels": [[T, 1]], "level_at_start": 0}]}),
])
def test_evidence_of_the_wrong_shape_is_a_chart_error(alerts, rule, change):
    a = copy.deepcopy(alerts[rule])
    a["evidence"].update(change)
    with pytest.raises(ChartError, match="cannot be drawn"):
        chart_svg(a)
