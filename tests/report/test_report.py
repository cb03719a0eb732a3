"""Evidence charts and ``surveil replay --report``: a simulated day with every scenario."""

import xml.etree.ElementTree as ET

import orjson
import pytest
from click.testing import CliRunner

from surveil.cli import main
from surveil.replay import replay
from surveil.report.charts import ChartError, chart_svg
from surveil.sim import simulate

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    return simulate(d / "day.svb", events=30_000, accounts=500, seed=5)


@pytest.fixture(scope="module")
def result(day):
    return replay([day.events_path], accounts=day.accounts_path)


def desc(svg: str) -> str:
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg"
    return root.find(SVG + "desc").text


def test_every_alert_has_a_valid_deterministic_chart(result):
    assert {a["rule"] for a in result.alerts} == {"order_rate_1s", "daily_orders_20k", "sell_burst_1m"}
    for a in result.alerts:
        svg = chart_svg(a)
        assert svg == chart_svg(a)  # deterministic
        assert "<dc:date>" not in svg and "http://" not in svg.split("<svg", 1)[1].replace(
            "http://www.w3.org", "").replace("http://purl.org", "").replace("http://creativecommons.org", "")
        root = ET.fromstring(svg)
        assert root.findall(f".//{SVG}path"), a["rule"]
        text = desc(svg)
        subj = a["subject"].get("owner") or a["subject"]["account"]
        assert subj in text


def test_the_lingjun_chart_names_the_accounts_venues_and_indexes(result):
    a = next(x for x in result.alerts if x["subject"] == {"owner": "LINGJUN"})
    ev = a["evidence"]
    pps = ev["peak_per_second"]
    # the per-second breakdown adds up to the by-account totals
    totals = {(x["venue"], x["account"]): sum(x["value_fen"]) for x in pps["accounts"]}
    # each second rounded to the fen: the sum is the account's total to within a fen per second
    exact = {(x["venue"], x["account"]): x["value_fen"] for x in ev["by_account"]}
    assert set(totals) <= set(exact)
    assert all(abs(totals[k] - exact[k]) <= pps["seconds"] for k in totals)
    assert pps["seconds"] <= ev["window_seconds"] + 1
    text = desc(chart_svg(a))
    for x in ev["by_account"]:
        assert f"account {x['venue']}:{x['account']}" in text
    assert "venue SSE" in text and "venue SZSE" in text
    assert "index SSE:000001" in text and "index SZSE:399001" in text
    # one bar per (account, second) and one line per index
    root = ET.fromstring(chart_svg(a))
    assert len(root.findall(f".//{SVG}g[@id]")) > len(ev["by_account"]) * pps["seconds"]


def test_raised_alerts_are_drawn_too(result):
    for a in result.alerts:
        raised = {**a, "status": "raised", "evidence": {k: v for k, v in a["evidence"].items()
                                                         if k in ("by_account", "by_venue_fen", "first_second",
                                                                  "count_when_raised", "mode", "window_seconds")}}
        assert desc(chart_svg(raised))


def test_an_unknown_rule_is_a_clear_error():
    with pytest.raises(ChartError, match="rule='nope'"):
        chart_svg({"rule": "nope", "evidence": {}})


def test_replay_report(day, result, tmp_path):
    out = tmp_path / "rep" / "day"
    r = CliRunner().invoke(main, ["replay", str(day.events_path), "--accounts", str(day.accounts_path),
                                  "--out", str(tmp_path / "a.jsonl"), "--report", str(out)])
    assert r.exit_code == 0, r.output
    assert f"report written to {out / 'index.html'}" in r.output
    index = (out / "index.html").read_text()
    assert "2024-02-19" in index and f"{result.events:,}" in index
    for a in result.alerts:
        assert a["alert_id"] in index
        page = (out / "alerts" / f"{a['alert_id']}.html").read_text()
        assert f'src="../charts/{a["alert_id"]}.svg"' in page
        assert (out / "charts" / f"{a['alert_id']}.svg").read_text() == chart_svg(a)  # the console's chart
    for rec in result.recommendations:
        assert rec["measure"] in index
    for f in out.rglob("*.html"):
        text = f.read_text()
        assert "http://" not in text and "https://" not in text, f  # no external URL
    lj = next(x for x in result.alerts if x["subject"] == {"owner": "LINGJUN"})
    page = (out / "alerts" / f"{lj['alert_id']}.html").read_text()
    for x in lj["evidence"]["by_account"]:
        assert x["account"] in page
    assert "restrict_trading" in page
    # the JSON output is unchanged by --report
    assert [orjson.loads(x) for x in (tmp_path / "a.jsonl").read_bytes().splitlines()] == result.records


@pytest.mark.parametrize("bad", ["file", "under-file"])
def test_replay_report_fails_cleanly_on_a_bad_dir(day, tmp_path, bad):
    f = tmp_path / "afile"
    f.write_text("x")
    target = f if bad == "file" else f / "sub"
    r = CliRunner().invoke(main, ["replay", str(day.events_path), "--out", str(tmp_path / "a.jsonl"),
                                  "--report", str(target)])
    assert r.exit_code == 1
    assert f"--report '{target}': cannot write there" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "a.jsonl").exists()  # failed before the replay
