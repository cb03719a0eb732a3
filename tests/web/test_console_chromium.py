"""The live console in a real headless Chromium (Debian's ``chromium``), on a real worker and a real Kafka:
open the console, THEN feed a simulated day; the Lingjun alert appears in the list without a reload; open
it, the chart is drawn and names the accounts, venues and indexes; open the owner and account pages.
Screenshots go to ``out/test-artifacts/console-*.png``."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from browser import CHROMIUM, NEEDS, launch
from console_kit import browser_login
from kafkatools import settings

from surveil.feed import feed
from surveil.kafka_local import free_ports
from surveil.sim import simulate

ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts"
LINGJUN_ROW = '#alert-rows tr[data-rule="sell_burst_1m"][data-subject="LINGJUN"]'

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _chromium():
    # a missing browser fails the test (never a silent skip): `make test` installs it
    assert CHROMIUM.exists(), NEEDS


def wait_healthy(base, proc, log_path, timeout=90.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, "the worker exited:\n" + log_path.read_text()[-3000:]
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("/health never answered 200:\n" + log_path.read_text()[-3000:])


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = tmp_path_factory.mktemp("console")
    return simulate(d / "day.svb", events=50_000, accounts=1_000, seed=3)


def test_console_shows_the_lingjun_alert_live(kafka_bootstrap, day, tmp_path, users_file):
    from playwright.sync_api import sync_playwright

    (port,) = free_ports(1)
    s = settings(kafka_bootstrap, accounts_csv=str(day.accounts_path), web_port=port,
                 console_users_file=str(users_file))
    log_path = tmp_path / "worker.log"
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "surveil.stream.app", "--log-level", "info"],
                                env=s.to_env(os.environ), stdout=log, stderr=subprocess.STDOUT)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    fed: dict = {}
    try:
        wait_healthy(base, proc, log_path)
        with sync_playwright() as p:
            browser = launch(p)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 950})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                browser_login(page, base, "desk1")  # an anonymous visitor is sent to the login page
                page.wait_for_selector("#conn.on", timeout=30_000)  # the live stream is open
                assert page.locator("#alert-rows tr").count() == 0  # nothing fed yet
                page.evaluate("window.__notReloaded = true")

                # feed the day now, while the page is open
                def run_feed():
                    try:
                        fed["result"] = asyncio.run(feed([day.events_path], s, speed="max"))
                    except BaseException as e:  # noqa: BLE001 - reported by the test below
                        fed["error"] = e

                t = threading.Thread(target=run_feed)
                t.start()
                page.wait_for_selector(LINGJUN_ROW, timeout=180_000)
                assert page.evaluate("window.__notReloaded") is True  # arrived live, no reload
                t.join(120)
                assert "error" not in fed, fed.get("error")

                # filters: another venue hides it, its own venue shows it
                page.select_option("#filters [name=venue]", "BSE")
                page.wait_for_selector(LINGJUN_ROW, state="detached", timeout=10_000)
                page.select_option("#filters [name=venue]", "SZSE")
                page.wait_for_selector(LINGJUN_ROW, timeout=10_000)
                page.select_option("#filters [name=venue]", "")

                # the final state replaces the raised one (live), then open it: one click
                page.wait_for_selector(LINGJUN_ROW + " td.status-final", timeout=180_000)
                page.click(LINGJUN_ROW)
                page.wait_for_selector("#chart svg", timeout=60_000)
                assert page.locator("#alert-title").inner_text().startswith("sell_burst_1m: LINGJUN")
                desc = page.locator("#chart svg desc").text_content()
                accounts = page.locator("#by-account td:first-child").all_inner_texts()
                assert len(accounts) == 4, accounts
                for name in accounts:
                    assert f"account {name}" in desc, (name, desc)
                assert "venue SSE" in desc and "venue SZSE" in desc
                assert "index SSE:000001" in desc and "index SZSE:399001" in desc
                assert page.locator("#chart svg g[id^=patch]").count() > 100  # the bars are drawn
                page.wait_for_selector("#detail .measure", timeout=60_000)  # the recommendation arrived
                assert "restrict_trading" in page.locator("#detail").inner_text()
                shot = ARTIFACTS / "console-alert.png"
                page.screenshot(path=str(shot))
                print(f"screenshot: {shot}")

                # the owner page (second click from the alert), then one of its accounts
                page.click("#alert-title a")
                page.wait_for_selector("#owner-title", timeout=30_000)
                text = page.locator("#detail").inner_text()
                assert "Owner LINGJUN" in text and "restrict_trading" in text
                for name in accounts:
                    assert name in text
                shot = ARTIFACTS / "console-owner.png"
                page.screenshot(path=str(shot))
                print(f"screenshot: {shot}")
                page.click(f"#owner-accounts a:text('{accounts[0]}')")
                page.wait_for_selector("#account-title", timeout=30_000)
                text = page.locator("#detail").inner_text()
                assert "LINGJUN" in text and "Today's counts" in text
                # one worker holds every partition: the counts are here
                assert "this worker" in text, text
                shot = ARTIFACTS / "console-account.png"
                page.screenshot(path=str(shot))
                print(f"screenshot: {shot}")
                assert not errors, errors

                # the worker stops cleanly and quickly while a console's live stream is still open
                page.goto(base + "/console/")
                page.wait_for_selector("#conn.on", timeout=30_000)
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                rc = proc.wait(60)
                assert time.monotonic() - t0 < 30
                log = log_path.read_text()
                assert rc == 0, log[-3000:]
                assert "Traceback" not in log, log[-3000:]
                assert "final checkpoint written" in log, log[-3000:]
            finally:
                browser.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
