"""``surveil feed``: push a historical day of events through the live system, as an exchange gateway would.

Files (JSON Lines, ``.jsonl.gz`` or binary ``.svb``; several files are merged by event time) are
cut into **frames** and produced to the feed topics of :class:`~surveil.stream.settings.Settings`:

* **Topic**: venue ``i`` (0 SSE, 1 SZSE, 2 BSE) goes to ``feed_topics[i]`` when there are three feed
  topics, otherwise every event goes to ``feed_topics[0]``.
* **Partition**: ``murmur2(b"<venue>:<account>") % partitions`` (``<venue>:<symbol>`` for index events),
  exactly what Kafka's default partitioner (Java client) picks for that key; see :func:`partition_for`.
  So a (venue, account)'s events all land in one partition, in input order.
* **Record value**: a self-contained SVEV binary frame (``--format binary``) or a JSON array of event
  objects in contract field order (``--format json``). Record key: ``<venue>:<account>`` of the frame's
  first event (informational; the partition is explicit). Record timestamps are the wall clock (event
  time would make Kafka's time-based retention delete a historical day at once).
* **Progress markers**: a record whose value is ``{"kind":"progress","ts":T}`` (``T`` integer ns) means
  "no later record in this partition carries an event earlier than ``T``". Every partition of every
  feed topic gets one whenever its last marker is at least one *progress interval* behind the input
  (100 ms of event time when paced, 10 min at ``--speed max``; ``progress_interval_ms`` overrides), and
  at the end a final marker at 00:00 Asia/Shanghai of the day after the last event's trading day (the
  trading day is over). Only markers count as progress (a frame's events do not), so a worker may
  rely on markers alone. Two limits against flooding: paced, a partition gets at most one marker per
  10 ms of wall time (so the interval is ``max(100 ms, speed x 10 ms)`` of event time: 1 s at 100x);
  at ``--speed max``, a partition that has received nothing for 100 ms of wall time (*idle*) gets a
  marker as soon as it is 100 ms of event time behind, without waiting for the 1 s interval.

Cost of the defaults on sparse input: sending a marker flushes the partition's pending frame, so at
``--speed max`` a day with ~10 events per partition per second gives frames of ~10 events plus one
marker per partition per second (2.1M simulated events: 162k frames + 179k markers). A larger
``progress_interval_ms`` gives larger frames and fewer records.

How a marker ``T`` for a partition is emitted (:meth:`_Feeder._due`):

1. ``T`` is the timestamp of the next unread event (paced: the virtual clock, which is earlier): input
   is in event-time order, so every event earlier than ``T`` has been read.
2. The partition's pending frame is sent first (it holds every event read for that partition), then
   the marker, on the same producer: Kafka keeps their order within the partition.
3. Markers of a partition are strictly increasing; an event read later that is earlier than a marker
   already sent (input not in event-time order) is still sent, and counted as ``late`` in the summary.

Speeds: ``max`` sends as fast as possible; ``1x``, ``10x``, ``<N>x`` pace the events by event time
relative to the first event (pending frames are sent at the latest 50 ms of wall time after their
first event; idle stretches of input still advance the markers).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import orjson

from surveil.events import binary, jsonl
from surveil.events.batch import Batch, Registry
from surveil.events.errors import EventFormatError, Reject
from surveil.events.io import InputError, check_inputs, read_events
from surveil.events.schema import MF_HAS_MATCH_ID, NS_PER_SECOND, VENUES, day_start_ns, trading_day_index
from surveil.exceptions import SurveilError
from surveil.stream.settings import Settings, SettingsError

__all__ = [
    "FeedError",
    "FeedStats",
    "MARKER_KIND",
    "feed",
    "feed_command",
    "is_marker",
    "marker_ts",
    "marker_value",
    "parse_speed",
    "partition_for",
    "rejects_path_for",
    "venue_topics",
]

MARKER_KIND = "progress"
#: progress interval when paced (event time)
PACED_PROGRESS_NS = 100_000_000
#: progress interval at ``--speed max`` (event time). A marker flushes its partition's pending frame, so a
#: short interval makes frames tiny on sparse partitions (and workers pay per record); at max speed
#: markers only matter for idle partitions, since workers also take progress from the frames.
MAX_PROGRESS_NS = 600 * NS_PER_SECOND
#: paced: a pending frame is sent at the latest this long (wall time) after its first event
FRAME_WALL_S = 0.05
#: paced: a partition gets at most one marker per this much wall time (caps markers at high speed factors)
MIN_MARKER_WALL_S = 0.01
#: ``--speed max``: a partition that received nothing for this long (wall time) is idle and gets a marker as
#: soon as it is ``PACED_PROGRESS_NS`` behind, without waiting for the (longer) max-speed interval
IDLE_WALL_S = 0.1
#: an encoded frame larger than this is split (the broker's default ``message.max.bytes`` is 1 MiB)
MAX_FRAME_BYTES = 1_000_000
#: ``--speed max``: the idle check runs at least every this many events
MAX_CHUNK = 16_384
MIN_SLEEP_S = 0.002
DEFAULT_CONNECT_TIMEOUT_S = 15.0
_PROG_NONE = -(2**62)


class FeedError(SurveilError):
    """The feed cannot run or could not deliver (broker unreachable, topic missing, delivery failed)."""


# --------------------------------------------------------------------------------------------------
# small public helpers


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java client) picks for ``key``:
    ``toPositive(murmur2(key)) % partitions``."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def marker_value(ts: int) -> bytes:
    """The record value of a progress marker."""
    return b'{"kind":"progress","ts":%d}' % ts


def marker_ts(value: bytes | None) -> int | None:
    """``T`` of a progress marker record value, else None (an event frame or a single event)."""
    if not value or value[:1] != b"{" or b'"progress"' not in value:
        return None
    try:
        o = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if isinstance(o, dict) and o.get("kind") == MARKER_KIND and type(o.get("ts")) is int:
        return o["ts"]
    return None


def is_marker(value: bytes | None) -> bool:
    return marker_ts(value) is not None


def parse_speed(speed: str | float | int | None) -> float | None:
    """``"max"`` -> None (as fast as possible); ``"1x"``, ``"10x"``, ``"2.5x"`` (or a number) -> the factor."""
    if speed is None:
        return None
    if isinstance(speed, (int, float)) and not isinstance(speed, bool):
        factor = float(speed)
    else:
        s = str(speed).strip().lower()
        if s == "max":
            return None
        m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)x?", s)
        if not m:
            raise ValueError(f"--speed {speed!r}: expected max, 1x, 10x or <N>x")
        factor = float(m.group(1))
    if not (factor > 0 and math.isfinite(factor)):
        raise ValueError(f"--speed {speed!r}: the factor must be a positive number")
    return factor


def venue_topics(settings: Settings) -> tuple[list[str], list[int]]:
    """The feed topics in use and, per venue code, the index of its topic in that list."""
    if len(settings.feed_topics) == 3:
        topics: list[str] = []
        for t in settings.feed_topics:
            if t not in topics:
                topics.append(t)
        return topics, [topics.index(t) for t in settings.feed_topics]
    return [settings.feed_topics[0]], [0] * len(VENUES)


def rejects_path_for(paths: Sequence[str | os.PathLike]) -> Path:
    return Path(f"{paths[0]}.feed-rejects.jsonl")


_STR_COLS = ("account", "symbol", "owner", "broker")


def encode_binary_frames(events: Batch, bounds: Sequence[int], reg: Registry) -> list[bytes]:
    """SVEV frames of ``events[bounds[i]:bounds[i+1]]``, byte-identical to
    :func:`surveil.events.binary.encode_frame` of each slice, but vectorised over the frames: the
    per-frame cost of ``encode_frame`` (four ``np.unique`` and a record array each) dominates when a
    feed sends many small frames (a sparse day at ``--speed max`` flushes every partition each second)."""
    n = len(events)
    nf = len(bounds) - 1
    b = np.asarray(bounds, dtype=np.int64)
    sizes = np.diff(b)
    frame_of = np.repeat(np.arange(nf, dtype=np.int64), sizes)
    # records with match ids (RECORD_MATCH) in the frames where an event has one, as encode_frame writes them
    has_mid = (events.mflags & MF_HAS_MATCH_ID) != 0 if events.mflags is not None else np.zeros(n, bool)
    cs = np.concatenate([[0], np.cumsum(has_mid)])
    frame_mid = cs[b[1:]] > cs[b[:-1]]
    rec = np.zeros(n, dtype=binary.RECORD_MATCH if frame_mid.any() else binary.RECORD)
    for f in ("ts", "price", "qty", "seq", "venue", "etype", "side", "flags"):
        rec[f] = getattr(events, f)
    rec["order_id"] = events.order_ids_bytes()
    if frame_mid.any():
        rec["match_id"] = events.match_ids_bytes()
        rec["mflags"] = events.mflags
    interners = (reg.accounts, reg.symbols, reg.owners, reg.brokers)
    tables = []
    for col, interner in zip(_STR_COLS, interners):
        ids = getattr(events, col).astype(np.int64)
        present = ids >= 0
        width = len(interner) + 1
        ukeys, inv = np.unique(frame_of[present] * width + ids[present], return_inverse=True)
        ufr = ukeys // width
        first = np.searchsorted(ufr, np.arange(nf + 1))  # each frame's block in ukeys (sorted by id within)
        local = np.full(n, binary.ABSENT, dtype=np.uint32)
        local[present] = inv.reshape(-1) - first[frame_of[present]]
        rec[col] = local
        names = interner.names
        tables.append((first.tolist(), [names[i] for i in (ukeys % width).tolist()]))
    raw = rec.tobytes()
    size = rec.itemsize
    raw_short = rec[list(binary.RECORD.names)].astype(binary.RECORD).tobytes() if frame_mid.any() else raw
    short = binary.RECORD.itemsize
    out = []
    pack = binary.pack_frame  # version 5: with the checksums of the header and of the strings and records
    bl = b.tolist()
    for f in range(nf):
        strs: list[str] = []
        counts = []
        for first, names in tables:
            lo, hi = first[f], first[f + 1]
            strs.extend(names[lo:hi])
            counts.append(hi - lo)
        blob = "\x00".join(strs).encode("utf-8")
        sz, data = (size, raw) if frame_mid[f] else (short, raw_short)
        out.append(pack(binary.VERSION, sz, bl[f + 1] - bl[f], counts, blob, data[bl[f] * sz:bl[f + 1] * sz]))
    return out


# --------------------------------------------------------------------------------------------------
# statistics


@dataclass
class FeedStats:
    events: int = 0
    frames: int = 0
    markers: int = 0
    bytes: int = 0
    rejects: int = 0
    rejects_path: Path | None = None
    late: int = 0
    seconds: float = 0.0
    first_ts: int | None = None
    last_ts: int | None = None
    final_marker_ts: int | None = None
    fmt: str = "binary"
    speed: str = "max"
    topics: dict[str, int] = field(default_factory=dict)  # topic -> partitions
    created_topics: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        topics = ", ".join(f"{t}[{n}]" for t, n in self.topics.items())
        s = (f"feed: {self.events:,} events sent in {self.frames:,} {self.fmt} frames + {self.markers:,} progress "
             f"markers to {topics}; {self.rejects:,} rejects; {self.seconds:.2f} s, "
             f"{self.events_per_second:,.0f} events/s")
        if self.rejects and self.rejects_path:
            s += f"; rejects written to {self.rejects_path}"
        if self.late:
            s += (f"; WARNING: {self.late:,} events were earlier than a progress marker already sent to their "
                  f"partition (input not in event-time order)")
        return s


# --------------------------------------------------------------------------------------------------
# partitioning


class _Partitioner:
    """Global partition index (``offset[topic] + partition``) of every event, cached per (venue, account)."""

    def __init__(self, reg: Registry, topic_of_venue: list[int], offsets: list[int], nparts: list[int]):
        self.reg = reg
        self.topic_of_venue = topic_of_venue
        self.offsets = offsets
        self.nparts = nparts
        self._acct = [np.empty(0, np.int32) for _ in VENUES]
        self._sym = [np.empty(0, np.int32) for _ in VENUES]

    def _lookup(self, tabs: list[np.ndarray], v: int, ids: np.ndarray, names: list[str]) -> np.ndarray:
        tab = tabs[v]
        if len(tab) < len(names):
            tab = np.concatenate([tab, np.full(len(names) - len(tab) + 1024, -1, np.int32)])
            tabs[v] = tab
        out = tab[ids]
        miss = out < 0
        if miss.any():
            ti = self.topic_of_venue[v]
            off, n = self.offsets[ti], self.nparts[ti]
            for i in np.unique(ids[miss]).tolist():
                tab[i] = off + partition_for(f"{VENUES[v]}:{names[i]}".encode(), n)
            out = tab[ids]
        return out

    def __call__(self, b: Batch) -> np.ndarray:
        gp = np.zeros(len(b), np.int32)
        for v in np.unique(b.venue).tolist():
            mv = b.venue == v
            acct = b.account[mv]
            has = acct >= 0
            part = np.empty(len(acct), np.int32)
            if has.any():
                part[has] = self._lookup(self._acct, v, acct[has], self.reg.accounts.names)
            if not has.all():
                sym = b.symbol[mv][~has]
                ok = sym >= 0
                ps = np.full(len(sym), self.offsets[self.topic_of_venue[v]], np.int32)  # no key: first partition
                if ok.any():
                    ps[ok] = self._lookup(self._sym, v, sym[ok], self.reg.symbols.names)
                part[~has] = ps
            gp[mv] = part
        return gp


# --------------------------------------------------------------------------------------------------
# the feeder


class _Input:
    """The merged input with a cursor and one batch of look-ahead (for the next unread event's time)."""

    def __init__(self, batches: Iterator[Batch]):
        self._it = (b for b in batches if len(b))
        self.cur: Batch | None = None
        self.nxt: Batch | None = next(self._it, None)
        self.pos = 0

    def advance(self) -> bool:
        """Make the next batch current; False at the end of the input."""
        self.cur = self.nxt
        self.pos = 0
        if self.cur is None:
            return False
        self.nxt = next(self._it, None)
        return True

    def next_ts(self) -> int | None:
        if self.cur is not None and self.pos < len(self.cur):
            return int(self.cur.ts[self.pos])
        if self.nxt is not None:
            return int(self.nxt.ts[0])
        return None


class _Feeder:
    def __init__(self, producer, reg: Registry, targets: list[tuple[str, int]], partitioner: _Partitioner,
                 fmt: str, frame_size: int, speed: float | None, interval_ns: int, bar, who: str = "ANONYMOUS"):
        self.producer = producer
        self.who = who  # the principal, for an error Kafka's authorizer gives
        self.reg = reg
        self.targets = targets
        self.part = partitioner
        self.fmt = fmt
        self.frame_size = frame_size
        self.speed = speed
        self.interval = interval_ns
        self.bar = bar
        n = len(targets)
        self.pending: list[list[list[Any]]] = [[] for _ in range(n)]  # per partition: [sorted batch, lo, hi]
        self.pend_n = np.zeros(n, np.int64)
        self.pend_wall = np.full(n, np.inf)
        self.prog = np.full(n, _PROG_NONE, np.int64)  # last marker sent
        self.last_wall = np.full(n, time.monotonic())  # wall time of the last record sent
        self.stats = FeedStats(fmt=fmt)
        self._futs: deque = deque()
        self._hi: int | None = None
        # the current batch, grouped by partition
        self._b: Batch | None = None
        self._gp = np.empty(0, np.int32)
        self._sorted: Batch | None = None
        self._cursor = np.zeros(n, np.int64)

    # -- input ------------------------------------------------------------------------------------

    def _load(self, b: Batch) -> None:
        self._b = b
        self._gp = self.part(b)
        perm = np.argsort(self._gp, kind="stable")
        self._sorted = b.take(perm)
        self._cursor = np.searchsorted(self._gp[perm], np.arange(len(self.targets))).astype(np.int64)

    async def _ingest(self, lo: int, hi: int) -> None:
        """Append events [lo, hi) of the current batch to their partitions' pending frames."""
        b = self._b
        assert b is not None and self._sorted is not None
        gp = self._gp[lo:hi]
        ts = b.ts[lo:hi]
        self.stats.late += int(np.count_nonzero(ts < self.prog[gp]))
        top = int(ts.max())
        if self._hi is None or top > self._hi:
            self._hi = top
        if self.stats.first_ts is None:
            self.stats.first_ts = int(ts[0])
        counts = np.bincount(gp, minlength=len(self.targets))
        now = time.monotonic()
        for g in np.flatnonzero(counts).tolist():
            c = int(counts[g])
            start = int(self._cursor[g])
            self._cursor[g] = start + c
            pend = self.pending[g]
            if pend and pend[-1][0] is self._sorted and pend[-1][2] == start:
                pend[-1][2] = start + c
            else:
                pend.append([self._sorted, start, start + c])
            if self.pend_n[g] == 0:
                self.pend_wall[g] = now
            self.pend_n[g] += c
            while self.pend_n[g] >= self.frame_size:
                await self._send_frames([(g, self._pop(g, self.frame_size), self.frame_size)])
        if self.bar is not None:
            self.bar.update(hi - lo)

    # -- output -----------------------------------------------------------------------------------

    def _pop(self, g: int, k: int) -> list[list[Any]]:
        """The first ``k`` pending events of partition ``g``, as pieces ``[sorted batch, lo, hi]``."""
        out = []
        pend = self.pending[g]
        need = k
        while need:
            piece = pend[0]
            sb, lo, hi = piece
            t = min(need, hi - lo)
            out.append([sb, lo, lo + t])
            if lo + t == hi:
                pend.pop(0)
            else:
                piece[1] = lo + t
            need -= t
        self.pend_n[g] -= k
        self.pend_wall[g] = time.monotonic() if self.pend_n[g] else np.inf
        return out

    @staticmethod
    def _gather(pieces: list[list[Any]]) -> Batch:
        """One batch holding the pieces' events, in the pieces' order."""
        sbs = {id(p[0]): p[0] for p in pieces}
        if len(pieces) == 1:
            sb, lo, hi = pieces[0]
            return sb.take(slice(lo, hi))
        if len(sbs) == 1:
            return pieces[0][0].take(np.concatenate([np.arange(lo, hi) for _, lo, hi in pieces]))
        # pieces from several input batches: take from each once, then put the pieces back in order
        ranges: dict[int, list[np.ndarray]] = {k: [] for k in sbs}
        where = []
        for sb, lo, hi in pieces:
            ranges[id(sb)].append(np.arange(lo, hi))
        offset = 0
        base: dict[int, int] = {}
        for k, rs in ranges.items():
            base[k] = offset
            offset += sum(len(r) for r in rs)
        fill = dict.fromkeys(ranges, 0)
        for sb, lo, hi in pieces:
            k = id(sb)
            where.append(np.arange(base[k] + fill[k], base[k] + fill[k] + hi - lo))
            fill[k] += hi - lo
        combined = Batch.concat([sbs[k].take(np.concatenate(rs)) for k, rs in ranges.items()])
        return combined.take(np.concatenate(where))

    def _encode(self, events: Batch, bounds: list[int]) -> list[bytes]:
        if self.fmt == "binary":
            return encode_binary_frames(events, bounds, self.reg)
        dicts = list(jsonl.event_dicts(events, self.reg))
        return [orjson.dumps(dicts[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def _key(self, events: Batch, i: int) -> bytes:
        a = int(events.account[i])
        s = int(events.symbol[i])
        name = self.reg.accounts.names[a] if a >= 0 else (self.reg.symbols.names[s] if s >= 0 else "")
        return f"{VENUES[int(events.venue[i])]}:{name}".encode()

    async def _send_frames(self, frames: list[tuple[int, list[list[Any]], int]]) -> None:
        """Send frames ``(partition, pieces, n_events)``, encoded together (cheap for many small frames)."""
        if not frames:
            return
        events = self._gather([p for _, pieces, _ in frames for p in pieces])
        bounds = [0]
        for _, _, n in frames:
            bounds.append(bounds[-1] + n)
        values = self._encode(events, bounds)
        for (g, _, n), value, a in zip(frames, values, bounds):
            if len(value) > MAX_FRAME_BYTES and n > 1:  # split a too large frame in halves
                half = n // 2
                part = events.take(slice(a, a + n))
                for lo, hi in ((0, half), (half, n)):
                    sub = part.take(slice(lo, hi))
                    await self._send_frames([(g, [[sub, 0, hi - lo]], hi - lo)])
                continue
            await self._send(g, value, self._key(events, a))
            self.stats.frames += 1
            self.stats.events += n

    async def _flush_many(self, gs: Iterable[int]) -> None:
        """Send every pending event of partitions ``gs`` (frames of at most ``frame_size``)."""
        frames = []
        for g in gs:
            while self.pend_n[g]:
                k = int(min(self.pend_n[g], self.frame_size))
                frames.append((g, self._pop(g, k), k))
        await self._send_frames(frames)

    async def _marker(self, g: int, t: int) -> None:
        await self._send(g, marker_value(t), None)
        self.prog[g] = t
        self.stats.markers += 1

    async def _send(self, g: int, value: bytes, key: bytes | None) -> None:
        topic, p = self.targets[g]
        try:
            fut = await self.producer.send(topic, value, key=key, partition=p)
        except Exception as e:  # noqa: BLE001 - any client error ends the feed with a clear message
            raise self._failed(e, f"cannot send to {topic}[{p}]") from e
        self.stats.bytes += len(value)
        self.last_wall[g] = time.monotonic()
        self._futs.append(fut)
        if len(self._futs) >= 4096:
            self._check_delivered()

    def _check_delivered(self, wait_all: bool = False) -> None:
        futs = self._futs
        while futs and (wait_all or futs[0].done()):
            f = futs.popleft()
            exc = f.exception()
            if exc is not None:
                raise self._failed(exc, "delivery to Kafka failed")

    def _failed(self, exc: BaseException, what: str) -> FeedError:
        """The error that ends the feed: a refused WRITE names the operation, the topics and the principal. The
        other pending deliveries' errors are taken (no "exception was never retrieved" after the message)."""
        from aiokafka.errors import TopicAuthorizationFailedError

        for f in self._futs:
            f.add_done_callback(lambda x: x.cancelled() or x.exception())
        self._futs.clear()
        if isinstance(exc, TopicAuthorizationFailedError):
            topics = ", ".join(sorted({t for t, _ in self.targets}))
            return FeedError(f"Kafka refused WRITE on topic(s) {topics} to User:{self.who} (grant the feed's "
                             "principal the feed role: surveil acl apply, docs/security.md)")
        return FeedError(f"{what}: {type(exc).__name__}: {exc}")

    async def _due(self, t: int, now: float, idle: bool) -> None:
        """Flush and mark every partition whose last marker is ``interval`` (or, if idle, 100 ms) behind ``t``."""
        lag = t - self.prog
        due = lag >= self.interval
        if idle:
            due |= ((now - self.last_wall) >= IDLE_WALL_S) & (lag >= PACED_PROGRESS_NS)
        gs = np.flatnonzero(due).tolist()
        await self._flush_many(gs)
        for g in gs:
            await self._marker(g, t)

    # -- main loops -------------------------------------------------------------------------------

    async def run_max(self, src: _Input) -> None:
        while src.advance():
            b = src.cur
            assert b is not None
            self._load(b)
            ts = b.ts
            n = len(b)
            while src.pos < n:
                pos = src.pos
                nd = int(self.prog.min()) + self.interval
                k = pos + int(np.searchsorted(ts[pos:pos + MAX_CHUNK], nd, side="left"))
                if k > pos:
                    await self._ingest(pos, k)
                    src.pos = k
                t = src.next_ts()
                if t is None:
                    break
                await self._due(t, time.monotonic(), idle=True)
            await asyncio.sleep(0)  # let the producer's sender run
            self._check_delivered()

    async def run_paced(self, src: _Input) -> None:
        if not src.advance():
            return
        assert src.cur is not None
        self._load(src.cur)
        t0 = int(src.cur.ts[0])
        rate = self.speed * NS_PER_SECOND  # event ns per wall second
        wall0 = time.monotonic()
        while True:
            now = time.monotonic()
            v = t0 + int((now - wall0) * rate)
            done = False
            while True:  # ingest every event up to the virtual clock
                b = src.cur
                assert b is not None
                k = src.pos + int(np.searchsorted(b.ts[src.pos:], v, side="right"))
                if k > src.pos:
                    await self._ingest(src.pos, k)
                    src.pos = k
                if k < len(b):
                    break
                if not src.advance():
                    done = True
                    break
                self._load(src.cur)
            if done:
                break
            nxt = src.next_ts()
            assert nxt is not None
            t = min(v, nxt)
            now = time.monotonic()
            await self._due(t, now, idle=False)
            await self._flush_many(np.flatnonzero(self.pend_wall + FRAME_WALL_S <= now).tolist())
            self._check_delivered()
            # sleep until the next event is due, a pending frame ages out, or a marker is due
            wake = wall0 + (nxt - t0) / rate
            if self.pend_n.any():
                wake = min(wake, float(self.pend_wall.min()) + FRAME_WALL_S)
            wake = min(wake, wall0 + (int(self.prog.min()) + self.interval - t0) / rate)
            now = time.monotonic()
            await asyncio.sleep(max(wake - now, MIN_SLEEP_S))

    async def finish(self) -> None:
        """Flush every pending frame, then the end-of-day marker to every partition; wait for delivery."""
        await self._flush_many(range(len(self.targets)))
        if self._hi is not None:
            final = day_start_ns(int(trading_day_index(self._hi)) + 1)
            for g in range(len(self.targets)):
                await self._marker(g, max(final, int(self.prog[g]) + 1))
            self.stats.last_ts = self._hi
            self.stats.final_marker_ts = final
        try:
            await self.producer.flush()
        except Exception as e:  # noqa: BLE001
            raise self._failed(e, "delivery to Kafka failed") from e
        self._check_delivered(wait_all=True)


# --------------------------------------------------------------------------------------------------
# Kafka set-up


#: how long the feed keeps retrying a batch while the broker is unreachable (a restart), before it gives up
RIDE_OUT_S = 120.0


class RateLimitedLog(logging.Filter):
    """Lets through the first record of each message template, then at most one every ``every_s`` seconds,
    saying how many were held back (a client reconnecting to a restarting broker logs many a second)."""

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self.every_s = every_s
        self.seen: dict[str, list[float]] = {}  # template -> [last time let through, held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        now = time.monotonic()
        key = f"{record.name}:{record.msg}"
        last = self.seen.get(key)
        if last is None or now - last[0] >= self.every_s:
            held = int(last[1]) if last else 0
            self.seen[key] = [now, 0]
            if held:
                record.msg = f"{record.msg} ({held} more like this in the last {self.every_s:g} s)"
            return True
        last[1] += 1
        return False


async def _with_timeout(coro, timeout: float, what: str, settings: Settings):
    try:
        return await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        raise FeedError(f"Kafka at {settings.bootstrap_servers} did not answer within {timeout:.0f} s ({what})") \
            from None
    except FeedError:
        raise
    except Exception as e:  # noqa: BLE001 - connection errors of every kind
        raise FeedError(f"cannot reach Kafka at {settings.bootstrap_servers} ({what}): "
                        f"{type(e).__name__}: {e}") from None


async def _prepare_topics(settings: Settings, topics: list[str], create: bool, timeout: float
                          ) -> tuple[dict[str, int], list[str]]:
    """Partition counts of the feed topics, creating missing ones when ``create``."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError, for_code

    admin = AIOKafkaAdminClient(**settings.kafka_kwargs(), request_timeout_ms=int(timeout * 1000))
    created: list[str] = []
    try:
        await _with_timeout(admin.start(), timeout, "connecting", settings)
        existing = set(await _with_timeout(admin.list_topics(), timeout, "listing topics", settings))
        missing = [t for t in topics if t not in existing]
        if missing and not create:
            raise FeedError(f"feed topic(s) {', '.join(missing)} do not exist on {settings.bootstrap_servers} "
                            f"(create them, or let the feed create them)")
        if missing:
            cluster = await _with_timeout(admin.describe_cluster(), timeout, "describing the cluster", settings)
            replication = max(1, min(3, len(cluster.get("brokers") or [])))
            resp = await _with_timeout(
                admin.create_topics([NewTopic(t, settings.feed_partitions, replication) for t in missing]),
                timeout, "creating topics", settings)
            for item in resp.topic_errors:
                topic, code = item[0], item[1]
                if for_code(code) is TopicAuthorizationFailedError:
                    who = settings.sasl_username or "ANONYMOUS"
                    raise FeedError(f"Kafka refused CREATE on topic {topic!r} to User:{who}: it does not exist, "
                                    "or this principal may not see it (grant the feed role: surveil acl apply)")
                if code and for_code(code) is not TopicAlreadyExistsError:
                    msg = item[2] if len(item) > 2 and item[2] else for_code(code).__name__
                    raise FeedError(f"cannot create topic {topic}: {msg}")
                if not code:
                    created.append(topic)
        # partition counts, and wait until every partition has a leader (fresh topics take a moment)
        deadline = time.monotonic() + timeout
        while True:
            desc = await _with_timeout(admin.describe_topics(topics), timeout, "describing topics", settings)
            counts: dict[str, int] = {}
            ready = True
            for d in desc:
                if d.get("error_code") and for_code(d["error_code"]) is TopicAuthorizationFailedError:
                    raise FeedError(f"Kafka refused DESCRIBE on topic {d['topic']!r} to User:"
                                    f"{settings.sasl_username or 'ANONYMOUS'} (WRITE includes it; grant the feed "
                                    "role: surveil acl apply)")
                parts = d.get("partitions") or []
                if d.get("error_code") or not parts or any(p.get("leader", -1) < 0 for p in parts):
                    ready = False
                counts[d["topic"]] = len(parts)
            if ready and all(counts.get(t) for t in topics):
                result = {t: counts[t] for t in topics}
                if created:
                    await _wait_writable(settings, {t: result[t] for t in created}, deadline)
                return result, created
            if time.monotonic() > deadline:
                raise FeedError(f"feed topics {', '.join(topics)} have no leader for every partition after "
                                f"{timeout:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _wait_writable(settings: Settings, counts: dict[str, int], deadline: float) -> None:
    """Until every partition's leader answers: the metadata of a fresh topic names its leader a moment
    before that broker accepts records (the producer would retry, logging a warning per partition)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
    consumer = AIOKafkaConsumer(**settings.kafka_kwargs(), group_id=None, enable_auto_commit=False)
    try:
        await _with_timeout(consumer.start(), max(1.0, deadline - time.monotonic()), "starting a consumer", settings)
        while True:
            try:
                await consumer.end_offsets(tps)
                return
            except Exception:  # noqa: BLE001 - not ready yet
                if time.monotonic() > deadline:
                    return  # the producer's own retries take over
                await asyncio.sleep(0.05)
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------------------------------
# the entry point


def _batches(paths: list[Path], reg: Registry, rejects: list[Reject]) -> Iterator[Batch]:
    from surveil.replay.run import merged_batches

    streams = [read_events(p, reg, rejects) for p in paths]
    try:
        yield from merged_batches(streams)
    except (OSError, EOFError, EventFormatError) as e:
        raise FeedError(f"reading the input failed: {e}") from None


def _write_rejects(rejects: list[Reject], path: Path) -> None:
    rows = sorted(rejects, key=lambda r: (r.source, r.location))
    path.write_bytes(b"".join(orjson.dumps(r.to_dict()) + b"\n" for r in rows))


async def feed(paths: Iterable[str | os.PathLike], settings: Settings, speed: str | float | None = "max",
               frame_size: int = 2000, fmt: str = "binary", progress: bool = False, create_topics: bool = True,
               *, progress_interval_ms: int | None = None,
               connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> FeedStats:
    """Produce the events of ``paths`` to the feed topics (see the module docstring).

    Raises InputError (missing/unreadable input), ValueError (bad argument), FeedError (Kafka)."""
    from aiokafka import AIOKafkaProducer

    if fmt not in ("binary", "json"):
        raise ValueError(f"format {fmt!r}: expected binary or json")
    if frame_size < 1:
        raise ValueError(f"frame size {frame_size}: expected at least 1")
    factor = parse_speed(speed)
    if progress_interval_ms is not None:
        if progress_interval_ms < 1:
            raise ValueError(f"progress interval {progress_interval_ms} ms: expected at least 1")
        interval = progress_interval_ms * 1_000_000
    else:
        interval = MAX_PROGRESS_NS if factor is None else PACED_PROGRESS_NS
    if factor is not None:  # at high speed factors, 100 ms of event time is too little wall time per marker
        interval = max(interval, int(factor * MIN_MARKER_WALL_S * NS_PER_SECOND))
    path_list = check_inputs(paths)
    if not path_list:
        raise InputError("no input file given")
    t_start = time.perf_counter()

    topics, topic_of_venue = venue_topics(settings)
    counts, created = await _prepare_topics(settings, topics, create_topics, connect_timeout)
    nparts = [counts[t] for t in topics]
    offsets = [int(x) for x in np.cumsum([0] + nparts[:-1])]
    targets = [(t, p) for t in topics for p in range(counts[t])]

    # idempotent, and patient: a batch is retried for up to RIDE_OUT_S (a broker restart of a minute costs
    # nothing, and nothing twice); the client's reconnect messages are logged at a bounded rate meanwhile
    producer = AIOKafkaProducer(**settings.kafka_kwargs(), enable_idempotence=True, acks="all", linger_ms=5,
                                max_request_size=8 << 20, max_batch_size=512 << 10, compression_type=None,
                                request_timeout_ms=int(max(RIDE_OUT_S, connect_timeout) * 1000))
    quiet = RateLimitedLog(every_s=10.0)
    for name in ("aiokafka", "kafka"):
        logging.getLogger(name).addFilter(quiet)
    await _with_timeout(producer.start(), connect_timeout, "starting the producer", settings)
    reg = Registry()
    rejects: list[Reject] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="ev", unit_scale=True, desc="feed", file=sys.stderr, leave=False)
    feeder = _Feeder(producer, reg, targets, _Partitioner(reg, topic_of_venue, offsets, nparts), fmt, frame_size,
                     factor, interval, bar, who=settings.sasl_username or "ANONYMOUS")
    ok = False
    try:
        src = _Input(_batches(path_list, reg, rejects))
        if factor is None:
            await feeder.run_max(src)
        else:
            await feeder.run_paced(src)
        await feeder.finish()
        ok = True
    finally:
        for name in ("aiokafka", "kafka"):
            logging.getLogger(name).removeFilter(quiet)
        if bar is not None:
            bar.close()
        try:
            await asyncio.wait_for(producer.stop(), 30 if ok else 5)
        except Exception:  # noqa: BLE001 - the original error (if any) matters more
            if ok:
                raise
    stats = feeder.stats
    stats.seconds = time.perf_counter() - t_start
    stats.speed = "max" if factor is None else f"{factor:g}x"
    stats.topics = counts
    stats.created_topics = created
    stats.rejects = len(rejects)
    rp = rejects_path_for(path_list)
    if rejects:
        _write_rejects(rejects, rp)
        stats.rejects_path = rp
    elif rp.exists():
        rp.unlink()  # a stale file of an earlier run would be misleading
    return stats


# --------------------------------------------------------------------------------------------------
# command line


def _speed_param(ctx, param, value):
    try:
        parse_speed(value)
    except ValueError as e:
        raise click.BadParameter(str(e).split(": ", 1)[-1]) from None
    return value


@click.command(name="feed")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--speed", default="max", show_default=True, callback=_speed_param,
              help="max (as fast as possible), or 1x, 10x, <N>x: paced by event time.")
@click.option("--format", "fmt", type=click.Choice(["binary", "json"]), default="binary", show_default=True,
              help="Record values: SVEV binary frames or JSON arrays of events.")
@click.option("--frame-size", default=2000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Events per record (at most).")
@click.option("--bootstrap", default=None, metavar="HOST:PORT[,...]",
              help="Kafka bootstrap servers (default: $SURVEIL_BOOTSTRAP_SERVERS or 127.0.0.1:9092).")
@click.option("--partitions", type=int, default=None,
              help="Partitions of feed topics the feed creates (default: $SURVEIL_FEED_PARTITIONS or 4).")
@click.option("--create-topics/--no-create-topics", default=True, show_default=True,
              help="Create missing feed topics.")
@click.option("--progress-interval-ms", type=click.IntRange(1), default=None,
              help="Event time between progress markers of a partition (default: 100 paced, 600000 at max).")
@click.option("--timeout", "connect_timeout", type=click.FloatRange(0.1), default=DEFAULT_CONNECT_TIMEOUT_S,
              show_default=True, help="Seconds to wait for the broker.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def feed_command(inputs, speed, fmt, frame_size, bootstrap, partitions, create_topics, progress_interval_ms,
                 connect_timeout, progress) -> None:
    """Push event files (JSONL, .jsonl.gz or binary .svb; several are merged by event time) to the feed
    topics, as an exchange gateway would, with progress markers for the workers' watermarks."""
    try:
        settings = Settings.from_env(bootstrap_servers=bootstrap, feed_partitions=partitions)
    except SettingsError as e:
        raise click.ClickException(f"bad settings: {e}") from None
    show = sys.stderr.isatty() if progress is None else progress
    try:
        stats = asyncio.run(feed(list(inputs), settings, speed=speed, frame_size=frame_size, fmt=fmt,
                                 progress=show, create_topics=create_topics,
                                 progress_interval_ms=progress_interval_ms, connect_timeout=connect_timeout))
    except (InputError, FeedError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(stats.summary(), err=True)
