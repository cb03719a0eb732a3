"""Two workers in one group on a real Kafka: each worker's console shows the whole cluster's alerts (its
reader has no group and reads every partition), and each account's counts are on exactly one of them."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from console_kit import Session
from kafkatools import settings

from surveil.feed import feed
from surveil.kafka_local import free_ports
from surveil.replay import replay
from surveil.sim import simulate

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except OSError:
        return None, None


def test_every_console_shows_the_cluster(kafka_bootstrap, tmp_path, users_file):
    day = simulate(tmp_path / "day.svb", events=20_000, accounts=500, seed=8)
    want = replay([day.events_path], accounts=day.accounts_path)
    s = settings(kafka_bootstrap, accounts_csv=str(day.accounts_path), console_users_file=str(users_file))
    ports = free_ports(2)
    procs = []
    try:
        for i, port in enumerate(ports):
            env = s.to_env(os.environ)
            env["SURVEIL_WEB_PORT"] = str(port)
            log = open(tmp_path / f"w{i}.log", "ab")
            procs.append(subprocess.Popen([sys.executable, "-m", "surveil.stream.app"], env=env, stdout=log,
                                          stderr=subprocess.STDOUT))
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        # both workers hold feed partitions before the day is fed
        deadline = time.monotonic() + 120
        while True:
            states = [get(b + "/status")[1] for b in bases]
            held = [{k for k in (st or {}).get("states", {}) if ".feed." in k} for st in states]
            if all(held) and sum(len(h) for h in held) == 3 * s.feed_partitions:
                break
            assert time.monotonic() < deadline, states
            assert all(p.poll() is None for p in procs)
            time.sleep(0.5)
        asyncio.run(feed([day.events_path], s, speed="max"))
        consoles = [Session(b, "desk1") for b in bases]  # a desk user logged in to each worker's console
        n_final = len(want.alerts)
        deadline = time.monotonic() + 120
        while True:
            lists = [c.get("/api/alerts?status=final")[1] for c in consoles]
            if all(x and x["total"] == n_final for x in lists):
                break
            assert time.monotonic() < deadline, lists
            time.sleep(0.5)
        ids = {a["alert_id"] for a in want.alerts}
        for x in lists:
            assert {a["alert_id"] for a in x["alerts"]} == ids
        lj = next(a for a in want.alerts if a["subject"] == {"owner": "LINGJUN"})
        for acct in lj["evidence"]["by_account"]:
            pages = [c.get(f"/api/accounts/{acct['venue']}/{acct['account']}")[1] for c in consoles]
            assert sum(p["activity"]["held_here"] for p in pages) == 1, pages
            assert len({p["activity"]["partition"] for p in pages}) == 1
            assert all(p["alerts"][0]["alert_id"] == lj["alert_id"] for p in pages)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                assert p.wait(60) == 0
            finally:
                if p.poll() is None:
                    p.kill()
