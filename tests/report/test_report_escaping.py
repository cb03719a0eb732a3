"""The replay report escapes every id: a day whose account, owner, broker and symbol ids are HTML and
script is replayed to a report, and every page (and chart) is opened in a real headless Chromium (Debian's
``chromium``, via Playwright) with a dialog handler: no dialog may open, and the ids read literally."""


import pytest
from browser import CHROMIUM, NEEDS, launch, watch
from click.testing import CliRunner
from hostile import IMG, SCRIPT, write_day

from surveil.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    events, accounts = write_day(d)
    out = d / "report"
    r = CliRunner().invoke(main, ["replay", str(events), "--accounts", str(accounts),
                                  "--out", str(d / "alerts.jsonl"), "--report", str(out)])
    assert r.exit_code == 0, r.output
    assert "order_rate_1s=1" in r.output and "sell_burst_1m=1" in r.output, r.output
    return out


def test_no_id_is_markup_in_the_html(report):
    pages = [report / "index.html", *sorted((report / "alerts").glob("*.html"))]
    assert len(pages) == 3
    for p in pages:
        text = p.read_text()
        assert IMG not in text and SCRIPT not in text, p
        assert "&lt;img src=x onerror=alert(1)&gt;" in text, p


def test_no_dialog_opens_in_chromium_and_the_ids_read_literally(report):
    assert CHROMIUM.exists(), NEEDS
    from playwright.sync_api import sync_playwright

    alert_pages = sorted((report / "alerts").glob("*.html"))
    charts = sorted((report / "charts").glob("*.svg"))
    assert len(alert_pages) == 2 and len(charts) == 2
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            errors: list[str] = []
            watch(page, dialogs, errors)
            texts, markup = {}, {}
            for f in [report / "index.html", *alert_pages, *charts]:  # a chart on its own runs its scripts
                page.goto(f.as_uri())
                page.wait_for_load_state("load")
                page.wait_for_timeout(200)  # an image's onerror fires after the load
                if f.suffix == ".html":
                    texts[f.name] = page.locator("body").inner_text()
                    markup[f.name] = page.locator("table img, script").count()
                    if f.parent.name == "alerts":  # the alert JSON, literally
                        assert page.locator("details pre").text_content().count("alert(") >= 2, f
            assert dialogs == [] and errors == []
            assert set(markup.values()) == {0}, markup  # no element made of an id
            assert IMG in texts["index.html"] and SCRIPT in texts["index.html"]
            for f in alert_pages:
                assert IMG in texts[f.name] or SCRIPT in texts[f.name], f
        finally:
            browser.close()


def test_an_alert_id_names_no_path_outside_the_report(tmp_path):
    from surveil.report.html import page_name, write_report

    a = {"kind": "alert", "alert_id": "../../outside", "rule": "nope", "subject": {"owner": SCRIPT},
         "trading_day": "2024-02-19", "window_start": 1708306200815287123, "window_end": 1708306260000000000,
         "value": 1, "threshold": 1, "unit": "messages", "severity": "medium", "status": "final",
         "evidence": {"at": 1708306200815287123, "sample_order_ids": [1708306200815287123]}}
    index = write_report(tmp_path / "rep", [a], [], events=1, rejects=0, inputs=["x"])
    name = page_name(a["alert_id"])
    assert name.startswith("id-") and "/" not in name
    assert sorted(p.name for p in (tmp_path / "rep" / "alerts").iterdir()) == [f"{name}.html"]
    assert not (tmp_path / "outside.html").exists()
    assert f'href="alerts/{name}.html"' in index.read_text()
    page = (tmp_path / "rep" / "alerts" / f"{name}.html").read_text()
    assert "No chart: rule=&#39;nope&#39;: no such rule" in page
    # times in Asia/Shanghai to the nanosecond; an order id stays an integer
    assert "<tr><th>at</th><td>2024-02-19 09:30:00.815287123 +08:00</td></tr>" in page
    assert "2024-02-19 09:30:00.815287123 +08:00 – 2024-02-19 09:31:00 +08:00" in page
    assert "[1708306200815287123]" in page
