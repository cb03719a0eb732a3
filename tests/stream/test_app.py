"""The Faust app (``python -m surveil.stream.app``) as a real process on a real Kafka broker: web views,
live equals replay, a clean stop on SIGTERM with a final checkpoint, and no Faust topic or group."""

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from test_recovery import env_of
from test_worker import canonical, read_topic, settings, wait_for_finals

from surveil.engine.refdata import RefData
from surveil.feed import feed
from surveil.kafka_local import free_ports
from surveil.replay import replay
from surveil.stream.app import APP_ID, DEFAULT_WEB_BIND, create_app
from surveil.stream.owner import KeyedState
from surveil.stream.partition import PartitionState
from surveil.stream.settings import Settings


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    from surveil.sim import simulate

    d = tmp_path_factory.mktemp("app")
    return simulate(d / "day.svb", events=50_000, accounts=1_000, seed=3)


def app_process(env, log_path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "surveil.stream.app", "--log-level", "info"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)


async def get(http, url):
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
            return r.status, await r.read()
    except (TimeoutError, aiohttp.ClientError):
        return None, b""


async def wait_healthy(http, base, proc, log_path, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, "the app exited:\n" + log_path.read_text()[-3000:]
        status, body = await get(http, base + "/health")
        if status == 200:
            assert body == b"ok\n"
            return
        assert status in (None, 503), (status, body)
        await asyncio.sleep(0.2)
    raise AssertionError("/health never answered 200:\n" + log_path.read_text()[-3000:])


async def end_offsets(bootstrap, topics, partitions):
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        c.assign(tps)
        return {f"{tp.topic}:{tp.partition}": off for tp, off in (await c.end_offsets(tps)).items()}
    finally:
        await c.stop()


@pytest.mark.kafka
def test_the_app_runs_the_worker_serves_status_and_stops_cleanly(kafka_bootstrap, day, tmp_path):
    asyncio.run(asyncio.wait_for(_app(kafka_bootstrap, day, tmp_path), 300))


async def _app(bootstrap, day, tmp_path):
    want = replay([day.events_path], accounts=day.accounts_path)
    (port,) = free_ports(1)
    # no periodic checkpoint: every checkpoint on the topic at the end is the final one, written at SIGTERM
    s = dataclasses.replace(settings(bootstrap, accounts_csv=str(day.accounts_path), web_port=port),
                            checkpoint_interval_ms=3_600_000)
    log_path = tmp_path / "app.log"
    base = f"http://127.0.0.1:{port}"
    proc = app_process(env_of(s), log_path)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base, proc, log_path)
            await feed([day.events_path], s, speed="max")
            finals = await wait_for_finals(bootstrap, s.alerts_topic, len(want.alerts), timeout=120)
            assert canonical(finals) == canonical(want.alerts)

            # /status lists every partition, and every feed partition has been read to its end
            ends = await end_offsets(bootstrap, s.feed_topics, s.feed_partitions)
            owner = {f"{s.owner_topic}:{p}" for p in range(s.owner_partitions)}
            deadline = time.monotonic() + 30
            while True:
                code, body = await get(http, base + "/status")
                assert code == 200
                st = orjson.loads(body)["states"]
                if set(st) == set(ends) | owner and all(st[k]["offset"] == ends[k] - 1 for k in ends):
                    break
                assert time.monotonic() < deadline, (st, ends)
                await asyncio.sleep(0.3)
            owner_offsets = {k: st[k]["offset"] for k in owner}

            # /metrics: Prometheus text with bounded labels
            code, body = await get(http, base + "/metrics")
            assert code == 200
            from prometheus_client.parser import text_string_to_metric_families

            samples = {(x.name, tuple(sorted(x.labels.items()))): x.value
                       for fam in text_string_to_metric_families(body.decode()) for x in fam.samples}
            events = sum(v for (n, _), v in samples.items() if n == "surveil_events_total")
            assert events == want.events  # every event counted once, by venue and type
            finals: dict = {}
            for (n, k), v in samples.items():
                if n == "surveil_alerts_total" and dict(k)["status"] == "final":
                    finals[dict(k)["rule"]] = finals.get(dict(k)["rule"], 0) + v
            assert finals.get("sell_burst_1m") == sum(a["rule"] == "sell_burst_1m" for a in want.alerts)
            records = sum(v for (n, _), v in samples.items() if n == "surveil_records_total")
            passes = samples[("surveil_processing_seconds_count", ())]  # one per partition per poll
            assert records > 0 and 0 < passes <= records
            text = body.decode()
            assert "LINGJUN" not in text and "A9000001" not in text  # never an owner or account id

        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        rc = await asyncio.to_thread(proc.wait, 30)
        log = log_path.read_text()
        assert rc == 0, log[-3000:]
        assert time.monotonic() - t0 < 30
        assert "final checkpoint written (11 partitions)" in log, log[-3000:]
        assert "final checkpoint failed" not in log and "Traceback" not in log, log[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    # the final checkpoint reflects everything the worker had read
    cps, keys = {}, {}
    for m in await read_topic(bootstrap, s.checkpoint_topic, settle=1.0):
        cps[m.key.decode().split("|", 1)[1]] = m.value
        keys[m.key.decode().split("|", 1)[1]] = m.key  # what each checkpoint's HMAC is bound to
    assert set(cps) == set(ends) | owner
    for k, end in ends.items():
        assert PartitionState.loads(cps[k], RefData(), binding=keys[k]).offset == end - 1, k
    for k, off in owner_offsets.items():
        assert KeyedState.loads(cps[k], binding=keys[k]).offset >= off, k

    # Faust itself touched nothing on the broker: no topic (leader, changelogs), no consumer group
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Faust's own topics would be "<app id>-__assignor-__leader" and "<app id>-<table>-changelog"
        # (other tests share this broker and may create topics of their own with other names)
        faust_topics = [t for t in await admin.list_topics()
                        if t.startswith(APP_ID + "-__") or (t.startswith(APP_ID + "-") and t.endswith("-changelog"))]
        assert not faust_topics
        assert APP_ID not in {g[0] for g in await admin.list_consumer_groups()}
    finally:
        await admin.close()


def test_bad_settings_fail_before_faust_starts():
    env = {**os.environ, "SURVEIL_FEED_PARTITIONS": "four"}
    r = subprocess.run([sys.executable, "-m", "surveil.stream.app"], env=env, capture_output=True, timeout=60)
    assert r.returncode == 2
    assert b"SURVEIL_FEED_PARTITIONS='four': expected an integer" in r.stderr
    assert b"Starting" not in r.stdout + r.stderr


def test_create_app_has_no_side_effect_and_carries_the_settings():
    s = Settings(bootstrap_servers="127.0.0.1:1,127.0.0.2:2", web_port=7077, security_protocol="SASL_PLAINTEXT",
                 sasl_mechanism="SCRAM-SHA-256", sasl_username="u", sasl_password="p")
    app = create_app(s)  # nothing listens on these addresses: building the app must not connect
    assert [str(u) for u in app.conf.broker] == ["kafka://127.0.0.1:1", "kafka://127.0.0.2:2"]
    assert app.conf.broker_credentials.username == "u"
    assert app.conf.broker_credentials.mechanism.value == "SCRAM-SHA-256"
    assert app.conf.web_port == 7077 and app.conf.web_bind == DEFAULT_WEB_BIND
    assert not app.conf.autodiscover
    paths = {r.resource.canonical for r in app.web.web_app.router.routes()}
    assert {"/status", "/health"} <= paths
    assert app.surveil_worker.worker.s is s and not app.surveil_worker.running


def test_faust_reads_no_environment_variable(monkeypatch):
    monkeypatch.setenv("WEB_PORT", "1234")
    monkeypatch.setenv("WEB_BIND", "0.0.0.0")
    app = create_app(Settings(web_port=7078))
    assert app.conf.web_port == 7078 and app.conf.web_bind == DEFAULT_WEB_BIND
