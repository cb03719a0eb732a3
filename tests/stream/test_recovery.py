"""Recovery without loss, on a real Kafka broker: kill -9 of a worker, a broker restart, a worker leaving.

Workers run as real processes (``surveil worker``, configured by SURVEIL_* variables); the feed is paced so
that the failure happens in the middle of the trading day.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import orjson
import pytest
from test_worker import canonical, read_topic, settings, wait_for_finals

from surveil import kafka_local
from surveil.feed import feed
from surveil.kafka_local import free_ports
from surveil.replay import replay

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    from surveil.sim import simulate

    d = tmp_path_factory.mktemp("recovery")
    return simulate(d / "day.svb", events=100_000, accounts=2_000, seed=6)


def env_of(s) -> dict[str, str]:
    return s.to_env(os.environ)


class Proc:
    def __init__(self, s, log_path):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        env = env_of(s)
        env["SURVEIL_WEB_PORT"] = str(free_ports(1)[0])  # each worker its own web server
        self.p = subprocess.Popen([sys.executable, "-m", "surveil.cli", "worker"], env=env,
                                  stdout=self.log, stderr=subprocess.STDOUT)

    async def wait_assigned(self, timeout=90):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if b"assigned" in self.log_path.read_bytes():
                return
            assert self.p.poll() is None, self.log_path.read_text()[-3000:]
            await asyncio.sleep(0.2)
        raise AssertionError("worker not assigned: " + self.log_path.read_text()[-3000:])

    def kill9(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def terminate(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()


def assert_same(got, want) -> None:
    """Equal canonical bytes; on a difference, name the alert and the evidence fields that differ."""
    if canonical(got) != canonical(want):
        g = {a["alert_id"]: a for a in got}
        w = {a["alert_id"]: a for a in want}
        diffs = {k: sorted(f for f in set(g[k]["evidence"]) | set(w[k]["evidence"])
                           if g[k]["evidence"].get(f) != w[k]["evidence"].get(f)) + [
            f for f in ("value", "window_end", "severity") if g[k][f] != w[k][f]]
            for k in g.keys() & w.keys() if g[k] != w[k]}
        raise AssertionError(f"missing {w.keys() - g.keys()}, extra {g.keys() - w.keys()}, differing {diffs}; "
                             + str({k: (g[k]["rule"], {f: (g[k]["evidence"].get(f), w[k]["evidence"].get(f))
                                                        for f in v if f in g[k]["evidence"]})
                                    for k, v in diffs.items()})[:3000])


def one_final_content_per_id(records) -> None:
    """Every id has one final content, and once final, never goes back to raised (records of one key are
    in one partition, in order)."""
    contents = defaultdict(set)
    back_to_raised = []
    for m in records:
        a = orjson.loads(m.value)
        if a["status"] == "final":
            contents[a["alert_id"]].add(m.value)
        elif a["alert_id"] in contents:
            back_to_raised.append(a["alert_id"])
    assert contents and all(len(v) == 1 for v in contents.values()), {k: len(v) for k, v in contents.items()}
    assert not back_to_raised, back_to_raised


def test_kill_9_in_the_middle_of_the_day_loses_nothing(kafka_bootstrap, day, tmp_path):
    asyncio.run(asyncio.wait_for(_kill9(kafka_bootstrap, day, tmp_path), 300))


async def _kill9(bootstrap, day, tmp_path):
    want = replay([day.events_path], accounts=day.accounts_path)
    s = settings(bootstrap, accounts_csv=str(day.accounts_path))
    w1 = Proc(s, tmp_path / "w1.log")
    await w1.wait_assigned()
    feeding = asyncio.create_task(feed([day.events_path], s, speed=2500))  # the day in about 8 s
    await asyncio.sleep(4)
    w1.kill9()
    assert not feeding.done()
    w2 = Proc(s, tmp_path / "w2.log")
    try:
        await feeding
        finals = await wait_for_finals(bootstrap, s.alerts_topic, len(want.alerts), timeout=120)
        assert_same(finals, want.alerts)
        one_final_content_per_id(await read_topic(bootstrap, s.alerts_topic))
        assert b"assigned" in (tmp_path / "w2.log").read_bytes()
    finally:
        w2.terminate()


def test_a_worker_leaving_hands_over_its_partitions(kafka_bootstrap, day, tmp_path):
    asyncio.run(asyncio.wait_for(_two_workers(kafka_bootstrap, day, tmp_path), 300))


async def _two_workers(bootstrap, day, tmp_path):
    want = replay([day.events_path], accounts=day.accounts_path)
    s = settings(bootstrap, accounts_csv=str(day.accounts_path))
    w1 = Proc(s, tmp_path / "a.log")
    await w1.wait_assigned()
    w2 = Proc(s, tmp_path / "b.log")
    try:
        await w2.wait_assigned()
        feeding = asyncio.create_task(feed([day.events_path], s, speed=2500))
        await asyncio.sleep(4)
        w1.terminate()  # leaves the group: checkpoints, the other takes over
        await feeding
        finals = await wait_for_finals(bootstrap, s.alerts_topic, len(want.alerts), timeout=120)
        assert_same(finals, want.alerts)
        one_final_content_per_id(await read_topic(bootstrap, s.alerts_topic))
        assert (tmp_path / "b.log").read_bytes().count(b"assigned") >= 2  # it took partitions over
    finally:
        w1.terminate()
        w2.terminate()


def test_broker_restart_while_workers_run(day, tmp_path):
    if kafka_local.external_bootstrap():
        pytest.skip("needs a broker of its own to restart (SURVEIL_KAFKA_BOOTSTRAP points to an external one)")
    port, cport = free_ports(2)
    kdir = tmp_path / "kafka"
    info = kafka_local.start(kdir, port, cport)
    bootstrap = info.bootstrap
    try:
        asyncio.run(asyncio.wait_for(_broker_restart(bootstrap, kdir, port, cport, day, tmp_path), 300))
    finally:
        kafka_local.stop(kdir)


async def _broker_restart(bootstrap, kdir, port, cport, day, tmp_path):
    want = replay([day.events_path], accounts=day.accounts_path)
    s = settings(bootstrap, accounts_csv=str(day.accounts_path))
    w = Proc(s, tmp_path / "w.log")
    try:
        await w.wait_assigned()
        feeding = asyncio.create_task(feed([day.events_path], s, speed=2500))
        await asyncio.sleep(3)
        await asyncio.to_thread(kafka_local.stop, kdir)
        await asyncio.sleep(2)
        await asyncio.to_thread(kafka_local.start, kdir, port, cport)
        await feeding
        finals = await wait_for_finals(bootstrap, s.alerts_topic, len(want.alerts), timeout=150)
        assert_same(finals, want.alerts)
        one_final_content_per_id(await read_topic(bootstrap, s.alerts_topic))
        assert w.p.poll() is None  # the worker rode through the restart
    finally:
        w.terminate()
