"""The fault suite on a real broker: a tombstone, a future timestamp and a forged checkpoint at the head of a
feed partition cost only themselves. The worker stays ready, rebuilds the partition whose checkpoint it cannot
trust from the trading day's start (yesterday's records are not read again), keeps every bad record as a
reject with the reason, and its final alerts equal replay's."""

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from test_worker import ensure_topics, live_day, read_topic, settings

from surveil.engine import load_config
from surveil.engine.refdata import RefData
from surveil.events import binary, jsonl
from surveil.events.batch import Registry
from surveil.replay import replay
from surveil.sim import simulate
from surveil.stream import checkpoint, topics
from surveil.stream.partition import REJECT_KEEP, PartitionState
from surveil.stream.rejects import REJECT_MAX

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
    await ensure_topics(kafka_bootstrap, s)
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
    async with live_day(kafka_bootstrap, s, [day.events_path], want) as w:
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


BIG_TOPIC_BYTES = 16 << 20  # feed topics that take the 5 MB record (the broker's default is 1 MB)


def _head_frame() -> tuple[bytes, int]:
    """A ≈ 600 KB frame (version 3) of buy orders before the day opens (09:05, 100 accounts of their own: no alert,
    nothing for the owner-level rules) with one byte damaged: a venue code that does not exist in one record."""
    t = 1_708_304_700_000_000_000  # 2024-02-19 09:05:00 +08:00
    evs = [{"ts": t + i * 7_000_000, "venue": "SSE", "type": "order", "account": f"HEAD{i % 100}",
            "symbol": "600000", "side": "B", "price": 10.0, "qty": 100, "order_id": i} for i in range(8_000)]
    reg = Registry()
    b = jsonl.decode_lines([orjson.dumps(e) for e in evs], 1, reg, "head", [])
    # version 3, without checksums (an older gateway's frame): the damage reaches the decoder's own checks (a
    # checked frame with a damaged byte is one checksum reject for the whole record: tests/events)
    frame = bytearray(binary.reseal(binary.encode_frame(b, reg), 3))
    strings = binary.HEADER.unpack_from(frame)[-1]
    row = 4_000
    frame[binary.header_size(3) + strings + row * binary.RECORD.itemsize + binary.RECORD.fields["venue"][1]] = 0x7F
    return bytes(frame), row


def test_oversized_unpublishable_and_corrupt_cost_only_themselves(kafka_bootstrap, day):
    asyncio.run(asyncio.wait_for(_oversized(kafka_bootstrap, day), 240))


async def _oversized(kafka_bootstrap, day):
    """At the head of feed partitions: a 600 KB frame with one bad byte; a 5 MB JSON array of 500 bad events; an
    event whose venue is a 2 MB string (its reject quoted it whole: larger than the rejects topic takes, so the
    worker rewound on it until it gave up); an event nested 300 levels deep (its reject could not be written as
    JSON); and a truncated checkpoint for one of them. The worker stays ready, rebuilds that partition, keeps
    every bad item as a small reject on the rejects topic, and its final alerts equal replay's."""
    want = replay([day.events_path], accounts=day.accounts_path)
    s = settings(kafka_bootstrap, accounts_csv=str(day.accounts_path), checkpoint_key="the group's key")
    sse = s.feed_topics[0]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, s.feed_partitions, 1,
                                            topic_configs={"max.message.bytes": str(BIG_TOPIC_BYTES)})
                                   for t in s.feed_topics])
        await topics.ensure(admin, topics.specs(s))
    finally:
        await admin.close()
    frame, bad_row = _head_frame()
    assert 500_000 < len(frame) < 1_000_000
    array = orjson.dumps([{"ts": 1_708_304_700_000_000_000 + i, "venue": "NYSE", "type": "order",
                           "account": f"X{i}", "pad": "p" * 10_000} for i in range(500)])
    assert len(array) > 5_000_000
    huge = orjson.dumps({"ts": 1_708_304_700_000_000_000, "venue": "V" * 2_000_000, "type": "order"})
    deep = b'{"ts":1708304700000000000,"venue":%s,"type":"order"}' % (b"[" * 300 + b"]" * 300)
    heads = {1: [frame, huge], 2: [array, deep]}
    # partition 1's checkpoint: a real one of that partition, cut in half (a write that did not complete)
    key = f"{s.group_id}|{sse}:1".encode()
    real = PartitionState(f"{sse}:1", load_config(), RefData(), s.owner_partitions)
    real.handle_many([(0, frame)], sse, 1)
    sealed = real.dumps(s.checkpoint_key.encode(), key)
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=BIG_TOPIC_BYTES)
    await p.start()
    try:
        for part, values in heads.items():
            for v in values:
                await p.send_and_wait(sse, v, key=b"SSE:HEAD", partition=part)
        await p.send_and_wait(s.checkpoint_topic, sealed[: len(sealed) // 2], key=key)
    finally:
        await p.stop()
    async with live_day(kafka_bootstrap, s, [day.events_path], want) as w:
        records = await read_topic(kafka_bootstrap, s.rejects_topic)
        assert max(len(m.value) for m in records) <= REJECT_MAX
        rejects = [orjson.loads(m.value) for m in records]
        at = {}
        for r in rejects:
            if r.get("topic") == sse and r.get("offset") in (0, 1) and r.get("partition") in heads:
                at.setdefault((r["partition"], r["offset"]), []).append(r)
        assert sorted(at) == [(1, 0), (1, 1), (2, 0), (2, 1)], sorted(at)
        [one] = at[(1, 0)]  # the frame: one record rejected, its 7,999 others read
        assert (one["field"], one["line" if "line" in one else "record"]) == ("venue", bad_row), one
        assert one["record_bytes"] == len(frame) and len(orjson.dumps(one)) < 4096
        assert len(at[(2, 0)]) == 500  # each bad event of the array, with its own bytes only
        assert all(r["record_bytes"] == len(array) and len(r["original"]) < REJECT_KEEP for r in at[(2, 0)])
        [big] = at[(1, 1)]
        assert big["field"] == "venue" and big.get("value_truncated") and big["record_bytes"] == len(huge)
        [nested] = at[(2, 1)]
        assert nested["field"] == "venue" and nested.get("value_truncated")
        status = w.status()
        assert "authentication" in status["states"][f"{sse}:1"]["rebuilt"]
        assert status["checkpoints_unusable"] == 1
        assert w.readiness() == []  # ready: every assigned partition is processing

