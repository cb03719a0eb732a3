"""The console's own reader of the alert and recommendation topics.

A bare aiokafka consumer **without a consumer group**: every partition of both topics is assigned and read
from the beginning, so every worker's console shows the whole cluster's alerts (each worker publishes only
the alerts of the partitions it holds). The topics are compacted and keyed by id, so reading them from the
beginning gives each id's latest state. A record that is not an alert or recommendation the console can
show (:func:`surveil.web.store.check_alert`) is counted (``bad_records``, and by reason) and skipped, never
fatal. Kafka errors are retried with a back-off, as the worker does.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from surveil.stream import topics
from surveil.stream.settings import Settings
from surveil.web.exceptions import RecordError
from surveil.web.store import Store

log = logging.getLogger("surveil.console")


class AlertFeed:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.s = settings
        self.store = store
        self.consumer: AIOKafkaConsumer | None = None

    async def run(self) -> None:
        """Read until cancelled."""
        delay = 0.5
        while True:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as e:
                log.warning("console: reading %s failed (%r); retrying in %.1f s", self.s.alerts_topic, e, delay)
                await self._close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _partitions(self) -> list[TopicPartition]:
        """Every partition of both topics (waits until a worker has created them), asked of the cluster: a
        consumer has no topic's metadata right after its start, nor of a topic created since."""
        names = [self.s.alerts_topic, self.s.recommendations_topic]
        admin = AIOKafkaAdminClient(**self.s.kafka_kwargs())
        try:
            await admin.start()
            while True:
                found = await topics.partitions(admin, names)
                if len(found) == len(names):
                    return [TopicPartition(t, p) for t in names for p in sorted(found[t])]
                await asyncio.sleep(0.5)
        finally:
            await admin.close()

    async def _run(self) -> None:
        c = self.consumer = AIOKafkaConsumer(**self.s.kafka_kwargs(), enable_auto_commit=False,
                                             auto_offset_reset="earliest")
        await c.start()
        try:
            tps = await self._partitions()
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            end = await c.end_offsets(tps)
            while True:
                got = await c.getmany(timeout_ms=500, max_records=2000)
                for tp, msgs in got.items():
                    for m in msgs:
                        self._apply(tp.topic, m.value)
                if not self.store.caught_up:
                    positions = [await c.position(tp) for tp in tps]
                    if all(p >= end[tp] for p, tp in zip(positions, tps)):
                        self.store.caught_up = True
                        log.info("console: %d alerts, %d recommendations read", len(self.store.alerts),
                                 len(self.store.recos))
        finally:
            await self._close()

    def _apply(self, topic: str, value: bytes | None) -> None:
        if value is None:  # a tombstone: nothing to show
            return
        try:
            try:
                rec = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise self.store.refuse("not JSON") from None
            if topic == self.s.alerts_topic:
                self.store.put_alert(rec)
            else:
                self.store.put_recommendation(rec)
        except RecordError as e:  # counted by the store (/api/meta: counts.bad_records, refused)
            log.warning("console: skipped a record of %s that is not what the workers publish: %s", topic, e)

    async def _close(self) -> None:
        c, self.consumer = self.consumer, None
        if c is not None:
            try:
                await c.stop()
            except Exception:  # noqa: BLE001 - closing on the way out
                log.exception("console: closing the consumer")
