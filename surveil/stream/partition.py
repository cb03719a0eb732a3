"""The partition stage: account-keyed rules on the feed partition that owns the account.

One :class:`PartitionState` per feed partition. It runs the account rules and forwards to each downstream
stage (owner, security; see :mod:`surveil.engine.plan`) what its rules declare: the rows of the event types
and sides they need (owner and broker filled in; routed by owner, or by ``VENUE:symbol``), and, when they
read the market context, the partition's per-second market sell value and index levels, plus its progress.
It is pure: records in, records out; the worker moves them to and from Kafka.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from aiokafka.partitioner import murmur2

from surveil.engine import Engine
from surveil.engine.plan import Plan, plan
from surveil.engine.refdata import RefData
from surveil.engine.securities import Securities
from surveil.events import binary, jsonl
from surveil.events.batch import Batch, Registry
from surveil.events.errors import EventFormatError, Reject
from surveil.events.schema import INDEX, NS_PER_SECOND, TYPES, VENUES, day_start_ns, trading_day_index
from surveil.rules import all_rules
from surveil.rules.base import Segment
from surveil.rules.market_context import MarketContext
from surveil.stream import checkpoint
from surveil.stream.envelope import SECONDS_KEY, feed_kind, pack, pack_rows, pack_seconds
from surveil.stream.rejects import REJECT_KEEP, bounded

#: a progress marker further ahead than this of the wall clock is damaged (a marker says how far a feed has got:
#: never into the future; a quiet partition's marker may be days ahead of its own last event): a reject
MARKER_MAX_AHEAD_NS = 24 * 3600 * 1_000_000_000
#: a released row's position is day * DAY_POSITIONS + its number in the day's release order
DAY_POSITIONS = 1 << 40
#: a partition tells the downstream stages its progress at most this often (wall time), and at a new trading day
PROGRESS_EVERY_S = 0.05


def owner_partitions_of(owners: list[str], n: int) -> np.ndarray:
    """The owner-topic partition of each owner name: Kafka's default partitioner (murmur2 of the key, as
    aiokafka's and the Java client's), compiled when ``surveil.events._svev`` is built (≈ 3 µs per name in
    pure Python; a cold worker meets every owner of its partitions at once)."""
    out = np.empty(len(owners), np.int32)
    if binary.FAST:
        binary._svev.key_partitions(owners, n, out)
    else:
        for i, o in enumerate(owners):
            out[i] = (murmur2(o.encode("utf-8")) & 0x7FFFFFFF) % n
    return out


#: a row's location in a group of records: (record offset << _ROW_BITS) + row in the record
_ROW_BITS = 24
_ROW_MASK = (1 << _ROW_BITS) - 1


def _record_text(value: bytes, kind: str) -> str:
    part = value[:REJECT_KEEP]
    return part.hex() if kind == "frame" else part.decode("utf-8", "replace")


def _reject(r: Reject, topic: str, partition: int, offset: int, value: bytes, kind: str,
            digest: str, size: int | None = None) -> dict[str, Any]:
    """A reject for the rejects topic: the bad event's own bytes (or, for a bad record, the record's), bounded,
    with where the record is and its length and hash, never a copy of the whole record per bad event. Every
    field is bounded (``surveil.stream.rejects``): the value, reason and message quote the input too.
    ``size``: the record's length when ``value`` is not at hand (an event of an earlier record: its own text)."""
    d = r.to_dict()
    own = d.pop("raw", "") or ""
    if r.field == "record" or not own:
        original, whole = _record_text(value, kind), len(value)
    else:
        original, whole = own[:REJECT_KEEP], len(own)
    d.update(topic=topic, partition=partition, offset=offset, original=original,
             original_truncated=whole > REJECT_KEEP, record_bytes=len(value) if size is None else size,
             record_sha256=digest)
    d = bounded(d)
    d["original_truncated"] = bool(whole > REJECT_KEEP or d.get("original_truncated"))
    return d


def _tail(topic: str, partition: int, offset: int, value: bytes, end: int) -> Reject:
    """A frame whose record holds more bytes than its header announces (a header damaged in its record count,
    or bytes appended): the frame's records are read, the rest is this reject."""
    n = binary.HEADER.unpack_from(value, 0)[3]
    return Reject(source=f"{topic}:{partition}", location=offset, field="record", value=end,
                  reason=f"{len(value) - end} bytes after the frame's {n} records (from byte {end} of {len(value)}) "
                         "are not announced by its header: not read", extra={"kind": "binary"})


def _digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def _new_export() -> dict[str, Any]:
    return {"rows": {}, "market": [], "index": []}


@dataclass
class Output:
    counts: Any = None  # events by venue * 4 + type (12 numbers), for metrics
    alerts: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    # records for the downstream stages: stage key ("owner", "security") -> [(partition, None = all; record)]
    routed: dict[str, list[tuple[int | None, bytes]]] = field(default_factory=dict)

    @property
    def owner(self) -> list[tuple[int | None, bytes]]:
        """The owner stage's records."""
        return self.routed.get("owner", [])


class PartitionState:
    def __init__(self, source: str, params: dict, refdata: RefData, owner_partitions: int,
                 security_partitions: int | None = None, securities: Securities | None = None):
        self.source = source
        self.partitions = {"owner": owner_partitions,
                           "security": owner_partitions if security_partitions is None else security_partitions}
        self.reg = Registry()
        self.plan: Plan = plan()
        # the symbols of every event are decoded only when a downstream stage's rules read them (the partition
        # stage's own rules and the market context need those of index events only)
        self._symbols = any(e.symbol for e in self.plan.exports) or any(
            "symbol" in c.meta.inputs.fields for c in all_rules() if c.meta.id in self.plan.rules["account"])
        # no market context here: the account rules do not use it, and the downstream stages build their own
        # from what _export sends
        self.engine = Engine(params, refdata, self.reg, rules=self.plan.rules["account"], market_from_events=False,
                             on_segment=self._export, keep_finals=False, securities=securities)
        self.offset = -1  # the last input offset this state reflects
        self.progress_sent: int | None = None
        self._progress_at = 0.0
        self._msgs: list[tuple[str, int | None, dict, bytes]] = []  # (stage, partition, header, payload)
        self._ex = _new_export()
        self._released = 0  # rows of the current trading day the engine has released (the next one's position)
        self._released_day: int | None = None
        self._market = (np.empty(0, np.int64), np.empty(0, np.int64))  # seconds not complete yet: key, value
        self._owner_part = np.empty(0, np.int32)  # the owner-stage partition of each owner id (a cache)
        self._security_part: dict[int, int] = {}  # the security-stage partition of each venue << 32 | symbol id
        self.book = None  # the worker's RecommendationBook for this partition's alerts
        # the records of the events waiting as suspects in the engine: offset -> (length, sha256), for their
        # rejects (a suspect is decided by later records, maybe in a later call or after a restart)
        self._waiting: dict[int, tuple[int, str]] = {}

    def mark(self) -> tuple:
        """What a declaration may change: how far the engine has released rows, and the progress sent."""
        return (self._released_day, self._released, self.progress_sent)

    @property
    def owner_partitions(self) -> int:
        return self.partitions["owner"]

    # -- checkpoint ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """This stage's state as plain data, as of ``self.offset`` (engine and rules included). Reference
        data is not part of it (it is shared by the worker and comes from its own topic)."""
        return {"stage": "partition", "source": self.source, "offset": self.offset,
                "engine": self.engine.state(),
                "progress_sent": self.progress_sent, "released": self._released,
                "released_day": self._released_day,
                "market": [self._market[0].tolist(), self._market[1].tolist()],
                "book": self.book.state() if self.book is not None else None,
                "waiting": [[k, n, h] for k, (n, h) in sorted(self._waiting.items())]}

    def packed(self) -> bytes:
        """The checkpoint before ``checkpoint.seal`` (taken now; the worker seals it later, in a thread)."""
        return checkpoint.pack(self.state())

    def dumps(self, key: bytes = checkpoint.UNKEYED, binding: bytes = b"") -> bytes:
        """The checkpoint (see :mod:`surveil.stream.checkpoint`)."""
        return checkpoint.seal(self.packed(), key, binding)

    @classmethod
    def loads(cls, data: bytes, refdata: RefData, params: dict | None = None, owner_partitions: int = 1,
              security_partitions: int | None = None, notes: list[str] | None = None,
              key: bytes = checkpoint.UNKEYED, binding: bytes = b"",
              securities: Securities | None = None) -> PartitionState:
        """A state from its checkpoint, under the current ``params`` (default: the defaults) and partition
        counts. What differs from the checkpoint's configuration is appended to ``notes`` (for the log)."""
        from surveil.engine import load_config
        from surveil.stream.views import RecommendationBook

        d = checkpoint.unseal(data, "partition", key, binding)
        st = cls(d["source"], params or load_config(), refdata, owner_partitions, security_partitions, securities)
        try:
            got = st.engine.restore(d["engine"])
            st.reg = st.engine.reg
            st.offset, st.progress_sent, st._released = d["offset"], d["progress_sent"], d["released"]
            st._released_day = d["released_day"]
            st._market = (np.array(d["market"][0], np.int64), np.array(d["market"][1], np.int64))
            if d["book"] is not None:
                st.book = RecommendationBook.from_state(d["book"])
            st._waiting = {int(k): (int(n), str(h)) for k, n, h in d.get("waiting", [])}  # absent before 2026-12
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise checkpoint.CheckpointError(f"partition checkpoint of {d.get('source')!r}: {e!r}") from e
        if notes is not None:
            notes.extend(got)
        st.engine._ref_version = -1  # reference data may have changed meanwhile: resolve owners again
        return st

    # -- processing ---------------------------------------------------------------------------------
    def handle(self, value: bytes, offset: int, topic: str, partition: int) -> Output:
        """Process one feed record (frame, JSON array, JSON event or progress marker)."""
        return self.handle_many([(offset, value)], topic, partition)

    def handle_many(self, records: Sequence[tuple[int, bytes]], topic: str, partition: int) -> Output:
        """Process consecutive feed records (offset, value) of this partition in one engine pass.

        Any grouping of the same records gives the same rows to the owner stage, in the same order and
        with the same positions (see ``_export``): a worker may group a partition's records as each poll
        happens to deliver them, and group them differently after a restart."""
        out = Output()
        self._msgs = []
        eng = self.engine
        counts = np.zeros(len(VENUES) * len(TYPES), np.int64)
        run: list[Batch] = []
        # the frames of this call are decoded into one block: consecutive ones go to the engine without a copy
        rows = sum(binary.frame_rows(v) for _, v in records if v is not None) if binary.FAST else 0
        block = binary.FrameBlock.reused(rows) if rows else None
        spans: list[tuple[int, int] | None] = []  # block rows of each batch of ``run`` (None: not in the block)
        values: dict[int, tuple[bytes, str]] = {}
        # A progress marker between two frames is applied only when the next frame has an event earlier
        # than it (then it decides which events are late); otherwise the next frame implies it, and the
        # frames go to the engine in one pass (a paced feed sends a marker after nearly every frame). The
        # engine's output does not depend on how its input is cut, so the result is the same.
        marker: int | None = None
        for offset, value in records:
            rejects: list[Reject] = []
            if value is None:  # a tombstone: no events, and nothing to decode (a reject, never a crash)
                out.rejects.append({"source": f"{topic}:{partition}", "topic": topic, "partition": partition,
                                    "offset": offset, "field": "record", "value": None,
                                    "reason": "null value (a tombstone): a feed record must carry events",
                                    "original": "", "record_bytes": 0})
                values[offset] = (b"", "json")
                continue
            kind = feed_kind(value)
            try:
                batch = None
                span = None
                if kind == "frame":
                    lo = block.row if block is not None else 0
                    batch, end = binary.decode_frame_at(value, 0, self.reg, f"{topic}:{partition}@{offset}", 0,
                                                        rejects, into=block, index_symbols_only=not self._symbols)
                    if end < len(value):  # bytes the header does not announce: not read, so said
                        rejects.append(_tail(topic, partition, offset, value, end))
                    if block is not None and block.row - lo == len(batch):  # in the block, every row valid
                        span = (lo, block.row)
                elif kind == "progress":
                    ts = orjson.loads(value).get("ts")
                    if type(ts) is not int:
                        raise EventFormatError(f"progress marker ts={ts!r}: not an integer timestamp")
                    if ts > time.time_ns() + MARKER_MAX_AHEAD_NS:  # a marker is about the past and present
                        raise EventFormatError(f"progress marker ts={ts}: more than a day in the future (a damaged "
                                               "marker would make every later event late); ignored")
                    marker = ts if marker is None else max(marker, ts)
                else:
                    batch = jsonl.decode_json_frame(value, self.reg, f"{topic}:{partition}@{offset}", rejects)
                if batch is not None and len(batch):
                    if marker is not None:
                        if int(batch.ts.min()) < marker:
                            self._run(run, spans, block, topic, partition)
                            eng.advance(marker)
                        marker = None
                    counts += np.bincount(batch.venue.astype(np.int64) * len(TYPES) + batch.etype,
                                          minlength=len(VENUES) * len(TYPES))
                    batch.src += offset << _ROW_BITS  # the record of each row, for late rejects
                    run.append(batch)
                    spans.append(span)
            except (EventFormatError, orjson.JSONDecodeError) as e:
                rejects.append(Reject(source=f"{topic}:{partition}", location=offset, field="record", value=None,
                                      reason=str(e), raw=value[:4096].hex(), extra={"kind": "binary"}))
            values[offset] = (value, kind)
            if rejects:
                digest = _digest(value)
                for r in rejects:
                    out.rejects.append(_reject(r, topic, partition, offset, value, kind, digest))
        self._run(run, spans, block, topic, partition)
        if marker is not None:
            eng.advance(marker)
        out.rejects += self._engine_rejects(values, topic, partition)
        out.counts = counts
        out.alerts = eng.drain()
        if records:
            self.offset = records[-1][0]
        self._flush_export()
        self._progress(force=False)
        out.routed = self._take_msgs()
        return out

    def _engine_rejects(self, values: dict[int, tuple[bytes, str]], topic: str, partition: int) -> list[dict]:
        """The engine's rejects (late events, and events ahead of event time that were not corroborated), whose
        location is (record offset << _ROW_BITS) + row in the record. An event that waited as a suspect may be
        of a record handled by an earlier call (or before a restart): its record's length and hash were kept
        (``_waiting``). Then the records of the suspects still waiting are kept, the others forgotten."""
        eng = self.engine
        out = []
        digests: dict[int, str] = {}
        for r in eng.rejects:
            off, r.location = r.location >> _ROW_BITS, r.location & _ROW_MASK
            r.source = f"{topic}:{partition}@{off}"
            if off in values:
                value, kind = values[off]
                if off not in digests:
                    digests[off] = _digest(value)
                out.append(_reject(r, topic, partition, off, value, kind, digests[off]))
            else:
                size, digest = self._waiting.get(off, (None, None))
                out.append(_reject(r, topic, partition, off, b"", "json", digest, size))
        eng.rejects = []
        waiting = {int(b.src[0]) >> _ROW_BITS for b in eng.suspects}
        kept: dict[int, tuple[int, str]] = {}
        for off in waiting:
            if off in self._waiting:
                kept[off] = self._waiting[off]
            elif off in values:
                value = values[off][0]
                kept[off] = (len(value), digests.get(off) or _digest(value))
        self._waiting = kept
        return out

    def _take_msgs(self, **extra) -> dict[str, list[tuple[int | None, bytes]]]:
        """The downstream stages' records collected so far, packed with this source, its offset and ``extra``."""
        out: dict[str, list[tuple[int | None, bytes]]] = {}
        for stage, p, h, payload in self._msgs:
            out.setdefault(stage, []).append(
                (p, pack({**h, "source": self.source, "offset": self.offset, **extra}, payload)))
        self._msgs = []
        return out

    def _broadcast(self, header: dict, payload: bytes = b"", market: bool = False) -> None:
        """A record for every partition of every downstream stage (``market``: of those reading the market)."""
        for e in self.plan.exports:
            if e.market or not market:
                self._msgs.append((e.key, None, header, payload))

    def _run(self, run: list[Batch], spans: list, block, topic: str, partition: int) -> None:
        if run:
            if len(run) == 1:
                batch = run[0]
            elif all(a is not None and b is not None and a[1] == b[0] for a, b in zip(spans, spans[1:])):
                batch = block.batch(spans[0][0], spans[-1][1])  # consecutive rows of the block: no copy
            else:
                batch = Batch.concat(run)
            self.engine.process(batch, f"{topic}:{partition}")
            run.clear()
            spans.clear()

    def _progress(self, force: bool) -> None:
        eng = self.engine
        if eng.max_seen is None:
            return
        progress = eng.max_seen - eng.tol
        if eng.vouched is not None and eng.vouched > progress:  # a progress marker: everything before it is out
            progress = eng.vouched
        sent = self.progress_sent
        if sent is not None and progress <= sent:
            return
        now = time.monotonic()
        new_day = sent is None or trading_day_index(progress) != trading_day_index(sent)
        if force or new_day or now - self._progress_at >= PROGRESS_EVERY_S:
            self.progress_sent = progress
            self._progress_at = now
            self._broadcast({"kind": "progress", "ts": progress})

    def declare_idle(self) -> Output:
        """The worker found this partition caught up (nothing left to read) and silent for the allowed
        lateness. The first declaration releases what the engine held back for a later event (the events at
        the newest timestamp), as a progress marker just past them would: an event that arrives later with
        that same timestamp or an earlier one is late (a reject with the reason). Only the rest of that
        second stays open (its market value is sent once the second is complete). Every declaration tells
        the owner stage that this source is idle, so that owner-level rules may stop waiting for it; they
        wait for it again at its next record. The worker checkpoints the state after a declaration that
        changed it."""
        self._msgs = []
        eng = self.engine
        out = Output()
        eng.settle(final=False)  # events ahead of event time that nothing contradicts: the partition went quiet
        topic, _, part = self.source.rpartition(":")
        out.rejects = self._engine_rejects({}, topic, int(part))  # accepted suspects may be late among themselves
        if eng.max_seen is not None:
            held = eng.held
            upto = int(held.ts[-1]) + 1 if held is not None and len(held) else eng.max_seen - eng.tol
            if self.progress_sent is None or upto > self.progress_sent:
                eng.release_until(upto)
                out.alerts = eng.drain()
                self._flush_export()
                self.progress_sent = upto
                self._progress_at = time.monotonic()
        self._broadcast({"kind": "progress", "ts": self.progress_sent})
        # every record of the declaration says so: released rows are not new activity of the source
        out.routed = self._take_msgs(idle=True)
        return out

    def pending_progress(self) -> dict[str, list[tuple[int | None, bytes]]]:
        """Progress not sent yet (input paused): the worker calls this when it is idle."""
        self._msgs = []
        self._progress(force=True)
        return self._take_msgs()

    def _route(self, stage: str, rows: Batch) -> np.ndarray:
        """The partition of each exported row in ``stage``: Kafka's default partitioner on the owner's name, or
        on ``VENUE:symbol`` (once per name, then a table lookup)."""
        n = self.partitions[stage]
        if stage == "owner":
            names = self.reg.owners.names
            table = self._owner_part
            if len(table) < len(names):
                table = self._owner_part = np.concatenate([table, owner_partitions_of(names[len(table):], n)])
            return table[rows.owner]
        # a security is (venue, symbol): one cached partition per venue and symbol id
        cache = self._security_part
        pairs = rows.venue.astype(np.int64) << 32 | (rows.symbol.astype(np.int64) & 0xFFFFFFFF)  # no symbol: -1
        uniq, inv = np.unique(pairs, return_inverse=True)
        missing = [u for u in uniq.tolist() if u not in cache]
        if missing:
            names = self.reg.symbols.names
            keys = [f"{VENUES[u >> 32]}:{names[u & 0xFFFFFFFF] if (u & 0xFFFFFFFF) < len(names) else ''}"
                    for u in missing]
            cache.update(zip(missing, owner_partitions_of(keys, n).tolist()))
        return np.array([cache[u] for u in uniq.tolist()], np.int32)[inv.reshape(-1)]

    def _export(self, seg: Segment, part: Batch) -> None:
        """Collect what the downstream stages need from a released segment (sent by ``_flush_export``).

        Every row the engine releases gets a position: its trading day (times 2**40) and the number of rows of
        that day released before it. The engine releases rows in (event time, arrival) order whatever the
        grouping of its input, and rejects the same late rows, so a row's position is the same in any run over
        the same records, and in a run that started at the day's first record (a partition rebuilt from the
        trading day's start): a downstream stage skips rows at positions it has already applied."""
        ex = self._ex
        if seg.day != self._released_day:
            self._released_day, self._released = seg.day, 0
        base = seg.day * DAY_POSITIONS + self._released
        self._released += len(part)
        market = False
        for e in self.plan.exports:
            # row numbers, not boolean masks: a take then touches the selected rows only (sells ≈ 1 row in 10)
            rows = e.rows(seg.etype, seg.side)
            market |= e.market
            if len(rows):
                sub = part.take(rows)
                if not e.symbol:
                    sub.symbol[:] = -1  # no rule there reads it: fewer strings to send and to intern there
                # owner and broker as of each event's time (and the valid_from of the row that gave them,
                # when reference data has validity): the downstream stage takes them as they are
                sub.owner, sub.broker, sub.ref_from = self.engine.ctx.refs_of_rows(seg, rows)
                ex["rows"].setdefault(e.key, []).append((sub, base + rows))
        if not market:
            return
        secs, vals = MarketContext.seconds_of(seg)
        if len(secs):
            ex["market"].append((seg.day * SECONDS_KEY + secs, vals))
        ri = np.flatnonzero(seg.etype == INDEX)
        if len(ri):
            ex["index"].append((part.take(ri), base + ri))

    def _flush_export(self) -> None:
        ex = self._ex
        msgs = self._msgs
        for stage, chunks in ex["rows"].items():
            sub = Batch.concat([b for b, _ in chunks])
            pos = np.concatenate([q for _, q in chunks])
            parts = self._route(stage, sub)
            # grouped by partition in one take (stable: each group keeps the rows' order), then sliced
            order = np.argsort(parts, kind="stable")
            sub, pos, parts = sub.take(order), pos[order], parts[order]
            bounds = np.flatnonzero(parts[1:] != parts[:-1]) + 1
            for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(parts)]):
                frame = binary.encode_frame_fast(sub.take(slice(lo, hi)), self.reg)
                if sub.ref_from is None:
                    msgs.append((stage, int(parts[lo]), {"kind": "trades"}, pack_rows(pos[lo:hi], frame)))
                else:
                    msgs.append((stage, int(parts[lo]), {"kind": "trades", "ref_from": True},
                                 pack_rows(pos[lo:hi], frame, sub.ref_from[lo:hi])))
        if ex["index"]:
            sub = Batch.concat([b for b, _ in ex["index"]])
            pos = np.concatenate([q for _, q in ex["index"]])
            self._broadcast({"kind": "index"}, pack_rows(pos, binary.encode_frame_fast(sub, self.reg)), market=True)
        # market sell value per second: a second is sent once it is complete (every later event of this
        # partition is at or after the engine's release bound), so each second is sent once, whole
        keys, vals = self._market
        if ex["market"]:
            keys = np.concatenate([keys] + [k for k, _ in ex["market"]])
            vals = np.concatenate([vals] + [v for _, v in ex["market"]])
            keys, inv = np.unique(keys, return_inverse=True)
            summed = np.zeros(len(keys), np.int64)
            np.add.at(summed, inv.reshape(-1), vals)
            vals = summed
        eng = self.engine
        if len(keys) and eng.max_seen is not None:
            bound = eng.max_seen - eng.tol
            day = keys // SECONDS_KEY
            end_ns = day_start_ns(day) + (keys % SECONDS_KEY + 1) * NS_PER_SECOND
            done = end_ns <= bound
            if done.any():
                self._broadcast({"kind": "market"}, pack_seconds(keys[done], vals[done]), market=True)
                keys, vals = keys[~done], vals[~done]
        self._market = (keys, vals)
        self._ex = _new_export()
