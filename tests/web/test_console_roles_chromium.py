"""Logins and roles in a real headless Chromium (Debian's ``chromium``), on a real worker fed through a real
Kafka: a day whose account, owner and broker ids are HTML and script (tests/report/hostile.py). An anonymous
visitor is sent to the login page and the API answers 401; the desk sees every alert; a broker user (whose
firm id is itself ``<img src=x onerror=alert(1)>``) sees only its firm's copy of the sell burst, and a direct
API call for another firm's alert or account is a 404; every id reads as text and no dialog opens, for the
desk and for the brokers."""

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from browser import CHROMIUM, NEEDS, launch, watch
from console_kit import Session, browser_login, write_users
from kafkatools import settings
from test_console_chromium import ARTIFACTS, wait_healthy

from surveil.feed import feed
from surveil.kafka_local import free_ports

_spec = importlib.util.spec_from_file_location("hostile", Path(__file__).parents[1] / "report" / "hostile.py")
hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)
IMG, SCRIPT = hostile.IMG, hostile.SCRIPT
q = urllib.parse.quote

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_roles_in_chromium_on_a_worker_fed_through_kafka(kafka_bootstrap, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), NEEDS
    events, accounts = hostile.write_day(tmp_path / "day")
    # firm IMG holds SSE:<SCRIPT>; firm SCRIPT holds SSE:<IMG> (the order rate alert) and SZSE:<IMG>
    users = write_users(tmp_path / "users.toml", {"firm-img": IMG, "firm-script": SCRIPT})
    (port,) = free_ports(1)
    s = settings(kafka_bootstrap, accounts_csv=str(accounts), web_port=port, console_users_file=str(users))
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "worker.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "surveil.stream.app", "--log-level", "info"],
                                env=s.to_env(os.environ), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(base, proc, log_path)
        asyncio.run(feed([events], s, speed="max"))
        desk = Session(base, "desk1")
        deadline = time.monotonic() + 120
        while True:
            _, body = desk.get("/api/alerts?status=final")
            if body and body["total"] == 2:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
        rate = next(a for a in body["alerts"] if a["rule"] == "order_rate_1s")
        burst = next(a for a in body["alerts"] if a["rule"] == "sell_burst_1m")
        assert rate["subject"] == {"venue": "SSE", "account": IMG}

        with sync_playwright() as p:
            browser = launch(p)
            dialogs: list[str] = []
            errors: list[str] = []

            def page_of():
                return watch(browser.new_context(viewport={"width": 1400, "height": 900}).new_page(), dialogs, errors)

            def rows(page):
                page.wait_for_selector("#alert-rows tr", timeout=30_000)
                return sorted(page.eval_on_selector_all("#alert-rows tr", "trs => trs.map(t => t.dataset.rule)"))

            try:
                # anonymous: the page sends it to the login page, the API refuses it
                page = page_of()
                page.goto(base + "/console/#/alert/" + burst["alert_id"])
                page.wait_for_url(lambda u: urllib.parse.urlsplit(u).path == "/console/login", timeout=30_000)
                page.wait_for_selector("#login:not([hidden])", timeout=30_000)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "console-login.png"))
                assert page.request.get(base + "/api/alerts").status == 401
                assert page.request.get(base + f"/api/alerts/{burst['alert_id']}").status == 401

                # the desk: both alerts; the hostile account id reads as text on the list and its page
                page = page_of()
                browser_login(page, base, "desk1")
                assert rows(page) == ["order_rate_1s", "sell_burst_1m"]
                assert f"SSE:{IMG}" in page.locator("#alert-rows").inner_text()
                page.goto(base + f"/console/#/account/SSE/{q(IMG, safe='')}")
                page.wait_for_selector("#account-title", timeout=30_000)
                assert page.locator("#account-title").inner_text() == "Account SSE:" + IMG
                assert SCRIPT in page.locator("#detail").inner_text()  # its broker and owner, as text

                # a broker user whose firm id is HTML: only its firm's copy of the burst
                page = page_of()
                browser_login(page, base, "firm-img")
                assert page.locator("#user").inner_text().startswith(f"firm-img (broker {IMG})")
                assert rows(page) == ["sell_burst_1m"]
                page.click("#alert-rows tr")
                page.wait_for_selector("#by-account", timeout=60_000)
                assert page.locator("#by-account td:first-child").all_inner_texts() == [f"SSE:{SCRIPT}"]
                assert f"SZSE:{IMG}" not in page.locator("#detail").inner_text()  # firm SCRIPT's account
                page.screenshot(path=str(ARTIFACTS / "console-broker.png"))
                # direct API calls for the other firm's alert and account: 404, as unknown ones
                for path in (f"/api/alerts/{rate['alert_id']}", f"/api/accounts/SSE/{q(IMG, safe='')}",
                             f"/api/accounts/SZSE/{q(IMG, safe='')}"):
                    r = page.request.get(base + path)
                    assert r.status == 404, (path, r.status, r.text())
                page.goto(base + f"/console/#/account/SSE/{q(IMG, safe='')}")
                page.wait_for_selector("#detail .warn", timeout=30_000)
                assert "no such account of member firm" in page.locator("#detail").inner_text()

                # the other firm: the order rate alert on its account SSE:<IMG>, and its copy of the burst
                page = page_of()
                browser_login(page, base, "firm-script")
                assert rows(page) == ["order_rate_1s", "sell_burst_1m"]
                page.goto(base + f"/console/#/account/SSE/{q(IMG, safe='')}")
                page.wait_for_selector("#account-title", timeout=30_000)
                assert page.locator("#account-title").inner_text() == "Account SSE:" + IMG
                page.goto(base + "/console/")
                page.click('#alert-rows tr[data-rule="sell_burst_1m"]')
                page.wait_for_selector("#by-account", timeout=60_000)
                assert page.locator("#by-account td:first-child").all_inner_texts() == [f"SZSE:{IMG}"]
                page.wait_for_timeout(300)
                assert dialogs == [] and errors == []
                assert page.locator("#detail img, #list img, #header img, #user img, #detail script").count() == 0
            finally:
                browser.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
