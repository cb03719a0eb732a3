"""The local Kafka bootstrap against a real broker (see conftest.py)."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import defaultdict
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from surveil import kafka_local

pytestmark = pytest.mark.kafka

MESSAGES = 1000
PARTITIONS = 3
KEYS = 50
TEST_TIMEOUT_S = 90.0

# Utils.murmur2 of kafka-clients 3.9.2 (Java), i.e. what a Java producer's
# default partitioner hashes; aiokafka must agree for keyed placement to match.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"acct-000": 662407158,
    b"acct-001": 933848893,
}


def run(coro: Coroutine[Any, Any, Any], timeout: float = TEST_TIMEOUT_S) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_aiokafka_hashes_keys_like_java() -> None:
    for key, java_value in JAVA_MURMUR2.items():
        assert murmur2(key) == java_value & 0xFFFFFFFF, key


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
        while True:  # until the metadata shows all partitions with a leader
            (described,) = await admin.describe_topics([topic])
            parts = described.get("partitions", [])
            if described.get("error_code") == 0 and len(parts) == PARTITIONS and all(p["leader"] >= 0 for p in parts):
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str) -> dict[int, tuple[bytes, int, int]]:
    """value -> (key, partition, offset) as acknowledged by the broker."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        pending = []
        for i in range(MESSAGES):
            key = f"acct-{i % KEYS:03d}".encode()
            pending.append((i, key, await producer.send(topic, key=key, value=str(i).encode())))
        await producer.flush()
        acked = {}
        for i, key, future in pending:
            meta = await future
            acked[i] = (key, meta.partition, meta.offset)
        return acked
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        records: list[Any] = []
        while len(records) < MESSAGES:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                records.extend(messages)
        await asyncio.sleep(0.5)  # anything beyond MESSAGES would be a duplicate
        for messages in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(messages)
        await consumer.commit()  # exercises the group coordinator (__consumer_offsets)
        return records
    finally:
        await consumer.stop()


def test_keyed_messages_round_trip_with_stable_partitions(kafka_bootstrap: str) -> None:
    topic = f"surveil-test-{uuid.uuid4().hex[:10]}"

    async def scenario() -> tuple[dict[int, tuple[bytes, int, int]], list[Any]]:
        await _create_topic(kafka_bootstrap, topic)
        acked = await _produce(kafka_bootstrap, topic)
        return acked, await _consume(kafka_bootstrap, topic)

    acked, records = run(scenario())

    # every message exactly once, with its key, where the producer was told it went
    assert len(records) == MESSAGES
    values = [int(r.value) for r in records]
    assert sorted(values) == list(range(MESSAGES))
    for r in records:
        key, partition, offset = acked[int(r.value)]
        assert (r.key, r.partition, r.offset) == (key, partition, offset)

    # one partition per key, the one Java's default partitioner would choose
    partitions_by_key: dict[bytes, set[int]] = defaultdict(set)
    for r in records:
        partitions_by_key[r.key].add(r.partition)
    assert len(partitions_by_key) == KEYS
    for key, partitions in partitions_by_key.items():
        assert partitions == {java_partition(key, PARTITIONS)}, key
    assert {r.partition for r in records} == set(range(PARTITIONS))

    # per-key order is the production order
    by_key: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    for r in records:
        by_key[r.key].append((r.offset, int(r.value)))
    for key, pairs in by_key.items():
        in_offset_order = [value for _, value in sorted(pairs)]
        assert in_offset_order == sorted(in_offset_order), key


def _local_only(broker: Any) -> None:
    if broker.external:
        pytest.skip(f"using the external broker from ${kafka_local.BOOTSTRAP_ENV}")


def test_status_reports_running_broker(kafka_broker: Any) -> None:
    _local_only(kafka_broker)
    st = kafka_local.status(kafka_broker.data_dir)
    assert st["running"] is True
    assert st["ready"] is True
    assert st["pid"] == kafka_broker.pid
    assert st["bootstrap"] == kafka_broker.bootstrap


def test_start_is_idempotent_for_the_same_folder(kafka_broker: Any) -> None:
    _local_only(kafka_broker)
    st = kafka_local.status(kafka_broker.data_dir)
    info = kafka_local.start(kafka_broker.data_dir, port=st["port"], controller_port=st["controller_port"], timeout=30)
    assert info.already_running
    assert info.pid == kafka_broker.pid
    assert info.bootstrap == kafka_broker.bootstrap


def test_busy_port_is_a_clear_error(kafka_broker: Any, tmp_path: Path) -> None:
    _local_only(kafka_broker)
    st = kafka_local.status(kafka_broker.data_dir)
    with pytest.raises(kafka_local.PortBusy, match=f"port {st['port']} .* in use"):
        kafka_local.start(tmp_path / "other", port=st["port"], controller_port=st["port"] + 1)
    assert not (tmp_path / "other" / "kafka.pid").exists()


def test_cached_libs_need_no_maven(kafka_broker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _local_only(kafka_broker)
    real_which = shutil.which
    monkeypatch.setattr(
        kafka_local.shutil, "which", lambda name, *a, **k: None if name == "mvn" else real_which(name, *a, **k)
    )
    lib = kafka_local.ensure_kafka_libs()
    assert (lib / f"kafka_2.13-{kafka_local.kafka_version()}.jar").is_file()


def test_start_status_stop_cycle(kafka_broker: Any, tmp_path: Path, free_port_pair: tuple[int, int]) -> None:
    _local_only(kafka_broker)
    data_dir = tmp_path / "cycle"
    port, controller_port = free_port_pair
    try:
        info = kafka_local.start(data_dir, port=port, controller_port=controller_port, timeout=60, die_with_parent=True)
        assert not info.already_running
        assert kafka_local.status(data_dir)["running"]
    finally:
        result = kafka_local.stop(data_dir, timeout=30)
    assert result["was_running"] and not result["killed"]
    st = kafka_local.status(data_dir)
    assert st["running"] is False and st["pid"] is None
    assert not (data_dir / "kafka.pid").exists()
