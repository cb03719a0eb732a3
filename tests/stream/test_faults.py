"""The fault suite on a real broker: a tombstone, a future timestamp and a forged checkpoint at the head of a
feed partition cost only themselves. The worker stays ready, rebuilds the partition whose checkpoint it cannot
trust from the trading day's start (yesterday's records are not read again), keeps every bad record as a
reject with the reason, and its final alerts equal replay's."""

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from test_worker import canonical, read_topic, run_worker, settings, stop_worker, wait_for_finals

from surveil.feed import feed
from surveil.replay import replay
from surveil.sim import simulate
from surveil.stream import checkpoint, topics

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    return simulate(d / "day.svb", events=80_000, accounts=2_000, seed=8)


def test_bad_records_and_a_forged_checkpoint_cost_only_themselves(kafka_bootstrap, day):
    asyncio.run(asyncio.wait_for(_faults(kafka_bootstrap, day), 240))


async def _faults(kafka_bootstrap, day):
    want = replay([day.events_path], accounts=day.accounts_path)
    s = settings(kafka_bootstrap, accounts_csv=str(day.accounts_path), checkpoint_key="the group's key")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await topics.ensure(admin, topics.specs(s))
    finally:
        await admin.close()
    sse = s.feed_topics[0]
    future = {"ts": "2099-01-01T10:00:00+08:00", "venue": "SSE", "type": "order", "account": "FROM_THE_FUTURE",
              "symbol": "600000", "side": "B", "price": 10.0, "qty": 100, "order_id": 1}
    # a forged checkpoint for that partition: well formed, at a high offset (believed, it would skip the input)
    doc = {"stage": "partition", "source": f"{sse}:0", "offset": 10**6}
    forged = checkpoint.seal(checkpoint.pack(doc), checkpoint.UNKEYED, f"{s.group_id}|{sse}:0".encode())
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await p.start()
    try:
        # yesterday's records (their record time): a partition rebuilt from the trading day's start skips them
        yesterday_ms = int(time.time() * 1000) - 36 * 3600 * 1000
        old = {**future, "ts": "2024-02-18T10:00:00+08:00", "account": "YESTERDAY"}
        for _ in range(3):
            await p.send_and_wait(sse, orjson.dumps(old), key=b"SSE:YESTERDAY", partition=0,
                                  timestamp_ms=yesterday_ms)
        await p.send_and_wait(sse, None, key=b"SSE:TOMB", partition=0)  # a tombstone
        await p.send_and_wait(sse, orjson.dumps(future), key=b"SSE:FROM_THE_FUTURE", partition=0)
        await p.send_and_wait(s.checkpoint_topic, forged, key=f"{s.group_id}|{sse}:0".encode())
    finally:
        await p.stop()
    w, task = await run_worker(s)
    try:
        await asyncio.wait_for(w.ready.wait(), 60)
        await feed([day.events_path], s, speed="max")
        finals = await wait_for_finals(kafka_bootstrap, s.alerts_topic, len(want.alerts))
        assert canonical(finals) == canonical(want.alerts)  # nothing else lost
        rejects = [orjson.loads(m.value) for m in await read_topic(kafka_bootstrap, s.rejects_topic)]
        mine = [r for r in rejects if r.get("topic") == sse and r.get("partition") == 0 and r.get("offset") in (3, 4)]
        assert sorted(r["offset"] for r in mine) == [3, 4], rejects[:5]
        tomb = next(r for r in mine if r["offset"] == 3)
        assert "tombstone" in tomb["reason"]
        ahead = next(r for r in mine if r["offset"] == 4)
        assert ahead["field"] == "ts" and "ahead of" in ahead["reason"]
        assert orjson.loads(ahead["original"])["account"] == "FROM_THE_FUTURE"  # kept whole
        status = w.status()
        rebuilt = status["states"][f"{sse}:0"]["rebuilt"]
        assert "authentication" in rebuilt and "from offset 3, the trading day's start" in rebuilt  # not yesterday's
        assert status["checkpoints_unusable"] == 1
        assert w.readiness() == []  # ready: every assigned partition is processing
    finally:
        await stop_worker(w, task)
