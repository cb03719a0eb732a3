"""The load generator: a simulated market day produced to the feed topics at a target rate (events/s).

The day (a ``surveil simulate`` file) is cut **once** into what ``surveil feed`` would send: events in
event-time order, in *chunks* of ``chunk_events`` (24,000 by default: with 12 feed partitions about 2,000
events per frame, the feed's default frame size), each chunk's events grouped by their partition (the feed's
partitioning: ``murmur2(b"VENUE:account") % partitions``, :func:`surveil.feed.partition_for`) into binary
frames (:func:`surveil.feed.encode_binary_frames`, frames of at most ``frame_size`` events). After each chunk
every feed partition gets a progress marker (:func:`surveil.feed.marker_value`) at the next chunk's first
event time: every event before it has been sent. Encoding is done before the run, so the generator's own
cost while it produces is small (the machine's two cores are shared with the broker and the worker).

The run repeats the day for as long as its schedule lasts: repetition ``k`` is the same day with every
event time moved by ``k`` days (the frames' timestamps rewritten and their checksums computed anew with
:func:`surveil.events.binary.reseal`), so the workers see consecutive trading days. Each day ends with
the markers of the next day's first chunk (at the very end: 00:00 of the day after the last, as
``surveil feed`` ends).

Pacing: a schedule is a list of phases ``(seconds, events per second)``. A chunk is sent when the number
of events due (the integral of the rate since the start) reaches its end, so the achieved rate follows the
target at chunk granularity (24,000 events: 48 ms at 500 k events/s). When the producer cannot keep up
(its buffer full, the broker slow), ``send`` waits and the achieved rate falls below the target: the
result records the achieved rate of every second, never the target as if it had been reached.

Why not ``surveil feed`` itself: it paces by event time (``--speed 10x``), so its rate follows the day's
intraday profile (380 k events/s at the open for a 100 k events/s mean, docs/benchmarks.md), while a load test
needs a target rate in events/s that it can hold, raise to 2x and drop; and it encodes frames while it sends
(``encode_binary_frames``: 0.28 s for 0.5 M events here, ≈ 0.6 µs an event), a third of a core at 500 k
events/s on a machine whose two cores also run the worker and the broker. Its pieces are reused: the
partitioner (``partition_for``, ``venue_topics``), the frame encoder and the progress markers.

For the measurements every record's metadata is kept: the offset (so that lag in records converts to
lag in events) and the record's timestamp, which on a feed topic created with ``LogAppendTime`` is the
broker's append time (the alert latency's start, :mod:`load_tests.runs`).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from surveil.events import binary
from surveil.events.batch import Batch, Registry
from surveil.events.io import read_events
from surveil.events.schema import NS_PER_DAY, VENUES, day_start_ns, trading_day_index
from surveil.feed import encode_binary_frames, marker_value, partition_for, venue_topics
from surveil.stream.settings import Settings

__all__ = ["Day", "Generator", "Phase", "shift_frame"]

#: events per chunk: 12 partitions x the feed's default frame size (2,000)
CHUNK_EVENTS = 24_000
FRAME_SIZE = 2_000
MIN_SLEEP_S = 0.002


@dataclass(frozen=True)
class Phase:
    seconds: float
    rate: float  # events/s; math.inf: as fast as the producer goes


def shift_frame(frame: bytes, delta_ns: int) -> bytes:
    """``frame`` (a self-contained SVEV frame, docs/events.md) with every event time moved by ``delta_ns``,
    its checksums computed anew."""
    if not delta_ns:
        return frame
    _, _, rec_size, n, _, _, _, _, slen = binary.HEADER.unpack_from(frame, 0)
    buf = bytearray(frame)
    at = binary.header_size(binary.HEADER.unpack_from(frame, 0)[1]) + slen
    ts = np.ndarray((n,), dtype="<i8", buffer=buf, offset=at, strides=(rec_size,))
    ts += delta_ns
    return binary.reseal(bytes(buf))


class Day:
    """A day's events cut into chunks of frames per feed partition (see the module docstring)."""

    def __init__(self, path: str | Path, settings: Settings, chunk_events: int = CHUNK_EVENTS,
                 frame_size: int = FRAME_SIZE):
        """``settings``: the feed topics' layout (how many, their partitions); the frames do not depend on the
        topics' names, so one Day serves runs on fresh topics of the same layout (:meth:`targets_for`)."""
        self.path = Path(path)
        topics, topic_of_venue = venue_topics(settings)
        nparts = settings.feed_partitions
        self.layout = (len(topics), nparts)
        self._topic_of_venue = topic_of_venue
        self.targets = self.targets_for(settings)
        reg = Registry()
        rejects: list = []
        b = Batch.concat(list(read_events(self.path, reg, rejects)))
        if rejects or not len(b):
            raise ValueError(f"{self.path}: {len(rejects)} rejects, {len(b)} events")
        if np.any(np.diff(b.ts) < 0):
            raise ValueError(f"{self.path}: not in event-time order")
        self.events = len(b)
        self.first_ts = int(b.ts[0])
        self.last_ts = int(b.ts[-1])
        self.day = int(trading_day_index(self.first_ts))
        if int(trading_day_index(self.last_ts)) != self.day:
            raise ValueError(f"{self.path}: more than one trading day")
        gp = self._partitions(b, reg, topic_of_venue, nparts)
        n = len(b)
        chunk_of = np.arange(n) // chunk_events
        order = np.lexsort((gp, chunk_of))  # stable within (chunk, partition): event-time order
        sb = b.take(order)
        sgp = gp[order]
        sch = chunk_of[order]
        # frames: runs of equal (chunk, partition), cut at frame_size
        change = np.flatnonzero((np.diff(sgp) != 0) | (np.diff(sch) != 0)) + 1
        starts = np.concatenate([[0], change]).tolist()
        ends = np.concatenate([change, [n]]).tolist()
        bounds = [0]
        for lo, hi in zip(starts, ends):
            for a in range(lo, hi, frame_size):
                bounds.append(min(a + frame_size, hi))
        frames = encode_binary_frames(sb, bounds, reg)
        names = reg.accounts.names
        self.n_chunks = int(chunk_of[-1]) + 1
        self.chunks: list[list[tuple[int, bytes, int, bytes]]] = [[] for _ in range(self.n_chunks)]
        for i, value in enumerate(frames):
            a = bounds[i]
            acct = int(sb.account[a])
            key = f"{VENUES[int(sb.venue[a])]}:{names[acct] if acct >= 0 else ''}".encode()
            self.chunks[int(sch[a])].append((int(sgp[a]), value, bounds[i + 1] - a, key))
        self.chunk_first_ts = np.array([int(b.ts[i * chunk_events]) for i in range(self.n_chunks)], np.int64)
        self.chunk_events = np.array([sum(f[2] for f in c) for c in self.chunks], np.int64)
        self.bytes = sum(len(f) for f in frames)
        self.frames = len(frames)

    @staticmethod
    def _partitions(b: Batch, reg: Registry, topic_of_venue: list[int], nparts: int) -> np.ndarray:
        """Global partition (topic index x partitions + partition) of every event, as ``surveil feed`` picks it:
        the key ``VENUE:account``, or ``VENUE:symbol`` for events without an account (index levels)."""
        gp = np.zeros(len(b), np.int64)
        for col, names in ((b.account, reg.accounts.names), (b.symbol, reg.symbols.names)):
            todo = (col >= 0) if col is b.account else ((b.account < 0) & (col >= 0))
            if not todo.any():
                continue
            pair = b.venue[todo].astype(np.int64) * (1 << 32) + col[todo].astype(np.int64)
            upairs, inv = np.unique(pair, return_inverse=True)
            parts = np.array([topic_of_venue[int(p >> 32)] * nparts
                              + partition_for(f"{VENUES[int(p >> 32)]}:{names[int(p & 0xFFFFFFFF)]}".encode(), nparts)
                              for p in upairs.tolist()], np.int64)
            gp[todo] = parts[inv.reshape(-1)]
        none = (b.account < 0) & (b.symbol < 0)  # no key at all: the first partition of the venue's topic
        gp[none] = np.array(topic_of_venue, np.int64)[b.venue[none]] * nparts
        return gp

    def targets_for(self, settings: Settings) -> list[tuple[str, int]]:
        """(topic, partition) of every global partition index, for ``settings``' feed topics."""
        topics, _ = venue_topics(settings)
        if (len(topics), settings.feed_partitions) != getattr(self, "layout", (len(topics), settings.feed_partitions)):
            raise ValueError("the settings' feed topics are not laid out as this day's frames")
        return [(t, p) for t in topics for p in range(settings.feed_partitions)]

    def partition_of(self, venue: str, account: str) -> int:
        """The global partition index of an account's events."""
        v = VENUES.index(venue)
        return self._topic_of_venue[v] * self.layout[1] + partition_for(f"{venue}:{account}".encode(), self.layout[1])

    def marker_after(self, rep: int, chunk: int) -> int:
        """The progress marker after chunk ``chunk`` of repetition ``rep``: the next chunk's first event time
        (the next repetition's first, after the last chunk)."""
        if chunk + 1 < self.n_chunks:
            return int(self.chunk_first_ts[chunk + 1]) + rep * NS_PER_DAY
        return int(self.chunk_first_ts[0]) + (rep + 1) * NS_PER_DAY

    def locate(self, ts: int) -> tuple[int, int]:
        """(repetition, chunk) of an event time of the run."""
        rep = int(trading_day_index(ts)) - self.day
        return rep, max(0, int(np.searchsorted(self.chunk_first_ts, ts - rep * NS_PER_DAY, "right")) - 1)


@dataclass
class Sent:
    """What the generator sent, from the records' metadata."""

    #: per partition: offsets of the records sent and the events before each (lag in records -> events)
    offsets: list[list[int]]
    cum_events: list[list[int]]
    #: (rep, chunk) -> per partition, the append timestamp (ms) of the chunk's last frame there (-1: none)
    frame_ts: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    events: int = 0
    records: int = 0
    markers: int = 0
    bytes: int = 0
    reps: int = 0  # repetitions begun
    last_rep: int = -1
    last_chunk: int = -1
    #: (wall seconds since start, events sent so far), once per second
    progress: list[tuple[float, int]] = field(default_factory=list)
    timestamp_types: set[int] = field(default_factory=set)
    wall0: float = 0.0  # time.time() at the start of the run (record timestamps are wall-clock ms)

    def events_before(self, g: int, offset: int) -> int:
        """Events in partition ``g`` in the records before ``offset`` (a committed offset)."""
        i = bisect.bisect_left(self.offsets[g], offset)
        return self.cum_events[g][i - 1] if i else 0

    def events_in(self, g: int) -> int:
        return self.cum_events[g][-1] if self.cum_events[g] else 0


class Generator:
    """Produces ``day`` repeated, paced by a schedule of phases (see the module docstring)."""

    def __init__(self, day: Day, settings: Settings):
        self.day = day
        self.s = settings
        self.targets = day.targets_for(settings)
        n = len(self.targets)
        self.sent = Sent(offsets=[[] for _ in range(n)], cum_events=[[] for _ in range(n)])
        self._events_in = [0] * n  # events handed to the producer per partition (metadata may come later)
        self._pending: list[asyncio.Future] = []
        self.t0: float | None = None

    async def _send(self, producer, g: int, value: bytes, key: bytes | None, n_events: int, where=None) -> None:
        topic, p = self.targets[g]
        fut = await producer.send(topic, value, key=key, partition=p)
        self._events_in[g] += n_events
        cum = self._events_in[g]
        sent = self.sent
        sent.bytes += len(value)
        sent.records += 1

        def done(f: asyncio.Future) -> None:
            if f.cancelled() or f.exception() is not None:
                return
            md = f.result()
            # metadata arrives in offset order per partition (one producer, idempotent, in-order delivery)
            sent.offsets[g].append(md.offset)
            sent.cum_events[g].append(cum)
            sent.timestamp_types.add(md.timestamp_type)
            if where is not None:
                arr = sent.frame_ts.get(where)
                if arr is None:
                    arr = sent.frame_ts[where] = np.full(len(self.targets), -1, np.int64)
                arr[g] = max(arr[g], md.timestamp)

        fut.add_done_callback(done)
        self._pending.append(fut)
        if len(self._pending) > 8192:
            self._check()

    def _check(self, all_: bool = False) -> None:
        keep = []
        for f in self._pending:
            if f.done():
                if f.exception() is not None:
                    raise RuntimeError(f"delivery failed: {f.exception()!r}")
            elif not all_:
                keep.append(f)
        self._pending = keep

    async def _chunk(self, producer, rep: int, i: int) -> None:
        delta = rep * NS_PER_DAY
        for g, value, n, key in self.day.chunks[i]:
            await self._send(producer, g, shift_frame(value, delta), key, n, (rep, i))
            self.sent.events += n
        t = self.day.marker_after(rep, i)
        mv = marker_value(t)
        for g in range(len(self.targets)):
            await self._send(producer, g, mv, None, 0)
            self.sent.markers += 1
        self.sent.last_rep, self.sent.last_chunk = rep, i

    async def run(self, phases: list[Phase], stop: asyncio.Event | None = None, limit_events: int | None = None
                  ) -> Sent:
        """Send for the phases' total duration (an infinite rate: the whole phase as fast as possible), or until
        ``limit_events`` have been sent (whole chunks); then the end-of-day marker (00:00 after the last day sent)
        to every partition, and wait for every delivery."""
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(**self.s.kafka_kwargs(), enable_idempotence=True, acks="all", linger_ms=5,
                                    max_request_size=8 << 20, max_batch_size=512 << 10, request_timeout_ms=120_000)
        await producer.start()
        try:
            await self._run(producer, phases, stop, limit_events)
            if self.sent.last_rep >= 0:
                final = day_start_ns(self.day.day + self.sent.last_rep + 1)
                for g in range(len(self.targets)):
                    await self._send(producer, g, marker_value(final), None, 0)
                    self.sent.markers += 1
            await producer.flush()
            self._check(all_=True)
        finally:
            await producer.stop()
        return self.sent

    async def _run(self, producer, phases: list[Phase], stop: asyncio.Event | None, limit: int | None) -> None:
        day = self.day
        rep, i = 0, 0
        due_before = 0.0  # events due at the start of the current phase
        t0 = self.t0 = time.monotonic()
        self.sent.wall0 = time.time()
        next_progress = 1.0
        phase_start = t0
        self.sent.progress.append((0.0, 0))
        for ph in phases:
            end = phase_start + ph.seconds
            while True:
                now = time.monotonic()
                if now - t0 >= next_progress:
                    self.sent.progress.append((round(now - t0, 3), self.sent.events))
                    next_progress = int(now - t0) + 1.0
                if (now >= end or (stop is not None and stop.is_set())
                        or (limit is not None and self.sent.events >= limit)):
                    break
                due = due_before + (now - phase_start) * ph.rate if ph.rate != float("inf") else float("inf")
                n = int(day.chunk_events[i])
                if self.sent.events + n <= due:
                    if i == 0:
                        self.sent.reps = rep + 1
                    await self._chunk(producer, rep, i)
                    i += 1
                    if i == day.n_chunks:
                        rep, i = rep + 1, 0
                    await asyncio.sleep(0)  # the producer's sender and the callbacks run
                    continue
                wait = (self.sent.events + n - due) / ph.rate
                await asyncio.sleep(min(max(wait, MIN_SLEEP_S), max(end - now, 0), 0.25))
            if ph.rate != float("inf"):
                due_before += ph.seconds * ph.rate
                # a producer that fell behind does not owe the past phase's events to the next one
                due_before = min(due_before, float(self.sent.events))
            else:
                due_before = float(self.sent.events)
            phase_start = end
        self.sent.progress.append((round(time.monotonic() - t0, 3), self.sent.events))
