"""Samples, once a second while a load runs: the worker group's consumer lag and the worker process's memory.

- **Lag** (public aiokafka APIs only): the feed partitions' end offsets (``AIOKafkaConsumer.end_offsets``)
  minus the worker group's committed offsets (``AIOKafkaAdminClient.list_consumer_group_offsets``), in
  records, and in events through the generator's record metadata (:meth:`load_tests.generator.Sent.events_before`).
  The worker commits its input offsets after each checkpoint (``SURVEIL_CHECKPOINT_INTERVAL_MS``, 2 s by
  default), so the committed lag is a step curve that overstates the true lag by up to one interval's
  events; it is what a Kafka lag exporter would show.
- **Memory**: ``VmRSS`` of ``/proc/<pid>/status`` of the worker process (and of the broker's, when given).
- **Alive**: whether the worker process is still running (``Popen.poll()``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from load_tests.generator import Sent
from surveil.stream.settings import Settings

__all__ = ["Monitor", "rss_mib"]


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of a process in MiB (None when it is gone)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def loadavg() -> list[float]:
    """The 1, 5 and 15-minute load averages (the machine is shared: every figure is recorded with them)."""
    a = Path("/proc/loadavg").read_text().split()
    return [float(a[0]), float(a[1]), float(a[2])]


@dataclass
class Monitor:
    settings: Settings
    targets: list[tuple[str, int]]
    sent: Sent
    proc: object  # subprocess.Popen of the worker
    broker_pid: int | None = None
    interval: float = 1.0
    samples: list[dict] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    async def _sample(self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient, tps: list[TopicPartition]) -> dict:
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(self.settings.group_id, partitions=tps)
        lag_records = lag_events = 0
        for g, tp in enumerate(tps):
            md = committed.get(tp)
            c = md.offset if md is not None and md.offset >= 0 else 0
            lag_records += max(0, ends[tp] - c)
            lag_events += max(0, self.sent.events_in(g) - self.sent.events_before(g, c))
        return {"t": round(time.monotonic() - self.t0, 3), "sent_events": self.sent.events,
                "lag_records": lag_records, "lag_events": lag_events,
                "committed_events": sum(self.sent.events_before(g, (committed.get(tp).offset
                                                                    if committed.get(tp) is not None else 0))
                                        for g, tp in enumerate(tps)),
                "worker_rss_mib": rss_mib(self.proc.pid), "broker_rss_mib": rss_mib(self.broker_pid),
                "worker_alive": self.proc.poll() is None, "loadavg_1m": loadavg()[0]}

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every ``interval`` seconds until ``stop`` is set (one last sample then)."""
        kw = self.settings.kafka_kwargs()
        consumer = AIOKafkaConsumer(**kw, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(**kw)
        await consumer.start()
        await admin.start()
        tps = [TopicPartition(t, p) for t, p in self.targets]
        try:
            while True:
                t = time.monotonic()
                try:
                    self.samples.append(await self._sample(consumer, admin, tps))
                except Exception as e:  # noqa: BLE001 - a sample that failed is recorded, the run goes on
                    self.samples.append({"t": round(t - self.t0, 3), "error": f"{type(e).__name__}: {e}"})
                if stop.is_set():
                    return
                try:
                    await asyncio.wait_for(stop.wait(), max(0.0, self.interval - (time.monotonic() - t)))
                except TimeoutError:
                    pass
        finally:
            await consumer.stop()
            await admin.close()

    def latest(self) -> dict:
        for s in reversed(self.samples):
            if "error" not in s:
                return s
        return {}
