"""Stream workers on a real Kafka broker: live equals replay, broker topics, rejects, reference data."""

import asyncio
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from surveil.engine.alerts import dumps, sort_key
from surveil.feed import feed
from surveil.replay import replay
from surveil.sim import simulate
from surveil.stream.settings import Settings
from surveil.stream.worker import Worker

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = tmp_path_factory.mktemp("live")
    return simulate(d / "day.svb", events=100_000, accounts=2_000, seed=4)


def settings(bootstrap, **kw) -> Settings:
    p = f"t{uuid.uuid4().hex[:8]}."
    return Settings(bootstrap_servers=bootstrap, feed_topics=(p + "feed.sse", p + "feed.szse", p + "feed.bse"),
                    feed_partitions=3, owner_partitions=2, alerts_topic=p + "alerts",
                    recommendations_topic=p + "recommendations", broker_topic_prefix=p + "alerts.broker.",
                    rejects_topic=p + "rejects", ref_topic=p + "ref", owner_topic=p + "owner",
                    checkpoint_topic=p + "checkpoints", group_id=p + "workers", checkpoint_interval_ms=500, **kw)


async def read_topic(bootstrap, topic, settle=1.5, timeout=10.0):
    """Every record of a topic (until no new record for ``settle`` seconds)."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    out = []
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        last = loop.time()
        while loop.time() < end and loop.time() - last < settle:
            got = await c.getmany(timeout_ms=200)
            for msgs in got.values():
                out.extend(msgs)
                last = loop.time()
    finally:
        await c.stop()
    return out


def latest_finals(records):
    latest = {}
    for m in records:
        latest[m.key] = orjson.loads(m.value)
    return sorted((a for a in latest.values() if a["status"] == "final"), key=sort_key)


async def wait_for_finals(bootstrap, topic, n, timeout=90.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        finals = latest_finals(await read_topic(bootstrap, topic, settle=0.5, timeout=5))
        if len(finals) >= n:
            return finals
        await asyncio.sleep(0.5)
    raise AssertionError(f"only {len(finals)} of {n} final alerts on {topic}")


def canonical(alerts):
    return b"".join(dumps(a) + b"\n" for a in sorted(alerts, key=sort_key))


async def run_worker(s, **kw):
    w = Worker(s, **kw)
    task = asyncio.create_task(w.run())
    return w, task


async def stop_worker(w, task):
    w.stop.set()
    await asyncio.wait_for(task, 30)


def test_live_equals_replay_and_broker_topics(kafka_bootstrap, day):
    asyncio.run(asyncio.wait_for(_live_equals_replay(kafka_bootstrap, day), 240))


async def _live_equals_replay(kafka_bootstrap, day):
    want = replay([day.events_path], accounts=day.accounts_path)
    s = settings(kafka_bootstrap, accounts_csv=str(day.accounts_path))
    w, task = await run_worker(s)
    try:
        await asyncio.wait_for(w.ready.wait(), 60)
        await feed([day.events_path], s, speed="max")
        finals = await wait_for_finals(kafka_bootstrap, s.alerts_topic, len(want.alerts))
        assert canonical(finals) == canonical(want.alerts)
        # recommendations equal replay's too
        recs = {orjson.loads(m.value)["recommendation_id"]: orjson.loads(m.value)
                for m in await read_topic(kafka_bootstrap, s.recommendations_topic)}
        assert sorted(recs.values(), key=sort_key) == sorted(want.recommendations, key=sort_key)
        # a broker's topic carries only its own accounts
        lingjun = next(a for a in finals if a["subject"] == {"owner": "LINGJUN"})
        brokers = {x["broker"] for x in lingjun["evidence"]["by_account"]}
        assert len(brokers) >= 2
        b = sorted(brokers)[0]
        views = latest_finals(await read_topic(kafka_bootstrap, s.broker_topic(b)))
        assert views, "the broker topic is empty"
        for v in views:
            ev = v["evidence"]
            if "by_account" in ev:
                assert {x["broker"] for x in ev["by_account"]} == {b}
            else:
                assert ev["broker"] == b
        lj = next(v for v in views if v["subject"] == {"owner": "LINGJUN"})
        assert lj["alert_id"] == lingjun["alert_id"] and len(lj["evidence"]["by_account"]) < len(
            lingjun["evidence"]["by_account"])
    finally:
        await stop_worker(w, task)
