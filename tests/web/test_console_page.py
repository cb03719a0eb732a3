"""The console page in a real headless Chromium (Debian's ``chromium``, via Playwright) against the console's
real HTTP server (aiohttp, in this process) over a store filled by hand, no broker (the real-Kafka proof is
test_console_chromium.py): nanosecond timestamps are shown exactly, in Asia/Shanghai; the list is ordered by
the exact ns; ids that are HTML and script are shown as text and open no dialog, on every page."""

import copy
import importlib.util
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser import CHROMIUM, NEEDS, launch, watch
from console_kit import Session, browser_login, serving

from surveil.replay import replay
from surveil.web.store import RecordError, Store

_spec = importlib.util.spec_from_file_location("hostile", Path(__file__).parents[1] / "report" / "hostile.py")
hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)
IMG, SCRIPT = hostile.IMG, hostile.SCRIPT

#: 2024-02-19 09:30:00.815287 Asia/Shanghai; the nearest double is 1708306200815287040
AT = 1_708_306_200_815_287_000
#: a double cannot tell these apart (doubles are 256 ns apart here): only the exact ns orders them
W = 1_708_308_000_000_000_000 - 1_708_308_000_000_000_000 % 256

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    events, accounts = hostile.write_day(tmp_path_factory.mktemp("page"))
    r = replay([events], accounts=accounts)
    s = Store()
    for a in r.alerts:
        s.put_alert(a)
    for rec in r.recommendations:
        s.put_recommendation(rec)
    rate = next(a for a in r.alerts if a["rule"] == "order_rate_1s")
    exact = copy.deepcopy(rate)
    exact["alert_id"] = "e" * 32
    exact["subject"] = {"venue": "SSE", "account": "EXACT"}
    exact["evidence"]["accounts"] = [{**exact["evidence"]["accounts"][0], "account": "EXACT", "owner": "EXACT"}]
    exact["evidence"]["raised_at"] = AT + 123
    exact["evidence"]["peak_rate"] = {**exact["evidence"]["peak_rate"], "at": AT}
    exact["window_start"] = AT
    s.put_alert(exact)
    for aid, rule, start in (("a" * 32, "sell_burst_1m", W + 100), ("b" * 32, "order_rate_1s", W)):
        x = copy.deepcopy(rate)
        x.update(alert_id=aid, rule=rule, window_start=start, subject={"venue": "SSE", "account": aid[:4]})
        x["evidence"] = {"at": start}
        s.put_alert(x)
    bad = {k: v for k, v in copy.deepcopy(rate).items() if k != "window_end"}
    bad["alert_id"] = "f" * 32
    with pytest.raises(RecordError):
        s.put_alert(bad)  # refused, with the reason, as the topic reader would
    return s


def test_real_requests_answer_4xx_with_a_reason(store, users_file):
    with serving(store, users_file) as base:
        get = Session(base, "desk1").get
        for path, status, reason in [
            ("/api/alerts?day=0000-00-00", 400, "day='0000-00-00': not a calendar date"),
            ("/api/alerts?day=2024-02-30", 400, "day='2024-02-30': not a calendar date"),
            ("/api/recommendations?day=2024-13-01", 400, "day='2024-13-01'"),
            ("/api/alerts?limit=5001", 400, "limit='5001': expected 1..5000"),
            ("/api/alerts/" + "x" * 300, 400, "alert_id='xxxx"),
            ("/api/alerts/nope/chart.svg", 404, "alert_id='nope': no such alert"),
            ("/api/alerts/" + "f" * 32, 422, "its record on the alerts topic was refused (alert: no window_end)"),
        ]:
            got, body = get(path)
            assert got == status and reason in body["error"], (path, body)
        got, body = get("/api/alerts?day=2024-02-19")
        assert got == 200 and body["total"] == len(store.alerts)


def test_the_page_shows_exact_times_in_shanghai_and_ids_as_text(store, users_file):
    assert CHROMIUM.exists(), NEEDS
    from playwright.sync_api import sync_playwright

    with serving(store, users_file) as base, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            dialogs: list[str] = []
            errors: list[str] = []
            watch(page, dialogs, errors)
            browser_login(page, base, "desk1")
            page.wait_for_selector("#alert-rows tr", timeout=30_000)
            ids = page.eval_on_selector_all("#alert-rows tr", "trs => trs.map(t => t.dataset.id)")
            # newest first by the exact ns: W + 100 before W, though a double holds both as W
            assert ids.index("a" * 32) < ids.index("b" * 32), ids
            assert IMG in page.locator("#alert-rows").inner_text()

            # the alert: every ns timestamp exact, in Asia/Shanghai
            page.goto(base + "/console/#/alert/" + "e" * 32)
            page.wait_for_selector("#evidence", timeout=30_000)
            assert page.locator("#alert-window").inner_text().startswith("2024-02-19 09:30:00.815287 +08:00 – ")
            ev = dict(r.split("\t", 1) for r in page.locator("#evidence").inner_text().splitlines())
            assert ev["raised_at"] == "2024-02-19 09:30:00.815287123 +08:00"
            assert '"at":"2024-02-19 09:30:00.815287 +08:00"' in ev["peak_rate"]
            page.goto(base + "/console/#/account/SSE/EXACT")
            page.wait_for_selector("#account-title", timeout=30_000)
            assert "350 orders+cancels at 2024-02-19 09:30:00.815287 +08:00" in page.locator("#detail").inner_text()

            # the hostile ids: each page, the chart drawn inline
            for aid in [a for a in store.alerts if a not in ("a" * 32, "b" * 32, "e" * 32)]:
                page.goto(base + "/console/#/alert/" + aid)
                page.wait_for_selector("#chart svg", timeout=60_000)
                text = page.locator("#detail").inner_text()
                assert IMG in text or SCRIPT in text
                assert SCRIPT in page.locator("#chart svg desc").text_content() or IMG in text
            page.goto(base + "/console/#/owner/" + urllib.request.quote(SCRIPT, safe=""))
            page.wait_for_selector("#owner-title", timeout=30_000)
            assert page.locator("#owner-title").inner_text() == "Owner " + SCRIPT
            page.goto(base + "/console/#/account/SSE/" + urllib.request.quote(IMG, safe=""))
            page.wait_for_selector("#account-title", timeout=30_000)
            assert page.locator("#account-title").inner_text() == "Account SSE:" + IMG
            page.wait_for_timeout(300)
            assert dialogs == [] and errors == []
            assert page.locator("#detail img, #list img, #detail script").count() == 0
        finally:
            browser.close()
