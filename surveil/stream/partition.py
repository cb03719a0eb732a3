"""The partition stage: per-account rules on the feed partition that owns the account.

One :class:`PartitionState` per feed partition. It runs the per-account rules and forwards to the
owner stage what owner-level rules need: the partition's sell trades (owner and broker filled in,
routed by owner), its per-second market sell value, its index levels, and its progress. It is pure:
records in, records out; the worker moves them to and from Kafka.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from aiokafka.partitioner import murmur2

from surveil.engine import Engine
from surveil.engine.refdata import RefData
from surveil.events import binary, jsonl
from surveil.events.batch import Batch, Registry
from surveil.events.errors import EventFormatError, Reject
from surveil.events.schema import INDEX, NS_PER_SECOND, SIDE_S, TRADE, TYPES, VENUES, day_start_ns, trading_day_index
from surveil.rules.base import Segment
from surveil.rules.market import MarketContext
from surveil.stream.envelope import SECONDS_KEY, feed_kind, pack, pack_rows, pack_seconds, seal, unseal

ACCOUNT_RULES = ("order_rate_1s", "daily_orders_20k")
#: a partition tells the owner stage its progress at most this often (wall time), and at a new trading day
PROGRESS_EVERY_S = 0.05
OWNER_RULES = ("sell_burst_1m",)


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


def _reject(r: Reject, topic: str, partition: int, offset: int, value: bytes, kind: str) -> dict[str, Any]:
    d = r.to_dict()
    d.update(topic=topic, partition=partition, offset=offset)
    d["original"] = value.hex() if kind == "frame" else value.decode("utf-8", "replace")
    return d


def _new_export() -> dict[str, Any]:
    return {"trades": [], "market": [], "index": []}


@dataclass
class Output:
    counts: Any = None  # events by venue * 4 + type (12 numbers), for metrics
    alerts: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    owner: list[tuple[int | None, bytes]] = field(default_factory=list)  # (owner partition, None = all)


class PartitionState:
    def __init__(self, source: str, params: dict, refdata: RefData, owner_partitions: int):
        self.source = source
        self.owner_partitions = owner_partitions
        self.reg = Registry()
        # no market context here: the per-account rules do not use it, and the owner stage builds its own from
        # what _export sends (kept here, it cost a pass per segment and two days of per-second arrays and the
        # day's index levels in every checkpoint)
        self.engine = Engine(params, refdata, self.reg, rules=ACCOUNT_RULES, market_from_events=False,
                             on_segment=self._export, keep_finals=False)
        self.offset = -1  # the last input offset this state reflects
        self.progress_sent: int | None = None
        self._progress_at = 0.0
        self._owner_msgs: list[tuple[int | None, dict, bytes]] = []
        self._ex = _new_export()
        self._released = 0  # rows the engine has released (the position of the next one)
        self._market = (np.empty(0, np.int64), np.empty(0, np.int64))  # seconds not complete yet: key, value

    # -- checkpoint ---------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        d = self.__dict__.copy()
        d["_owner_msgs"] = []
        d["_ex"] = _new_export()
        return d

    def dumps(self) -> bytes:
        """The checkpoint: this state (engine included) as of ``self.offset``; reference data is not part
        of it (it is shared by the worker and comes from its own topic)."""
        return seal(self.pickled())

    def pickled(self) -> bytes:
        """The checkpoint before ``seal`` (the state as of now; the worker seals it later, in a thread)."""
        ref = self.engine.ref
        self.engine.ref = None
        try:
            return pickle.dumps(self, protocol=5)
        finally:
            self.engine.ref = ref

    @staticmethod
    def loads(data: bytes, refdata: RefData) -> PartitionState:
        st: PartitionState = pickle.loads(unseal(data))
        if st.engine.market.from_events:  # a checkpoint of an earlier version: drop its unused market context
            st.engine.market = MarketContext(from_events=False)
        st.engine.restored_for_stream()
        st.engine.ref = refdata
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
        self._owner_msgs = []
        eng = self.engine
        counts = np.zeros(len(VENUES) * len(TYPES), np.int64)
        run: list[Batch] = []
        # the frames of this call are decoded into one block: consecutive ones go to the engine without a copy
        rows = sum(binary.frame_rows(v) for _, v in records) if binary.FAST else 0
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
            kind = feed_kind(value)
            try:
                batch = None
                span = None
                if kind == "frame":
                    lo = block.row if block is not None else 0
                    batch, _ = binary.decode_frame_at(value, 0, self.reg, f"{topic}:{partition}@{offset}", 0,
                                                      rejects, into=block, index_symbols_only=True)
                    if block is not None and block.row - lo == len(batch):  # in the block, every row valid
                        span = (lo, block.row)
                elif kind == "progress":
                    ts = orjson.loads(value).get("ts")
                    if type(ts) is not int:
                        raise EventFormatError(f"progress marker ts={ts!r}: not an integer timestamp")
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
            for r in rejects:
                out.rejects.append(_reject(r, topic, partition, offset, value, kind))
        self._run(run, spans, block, topic, partition)
        if marker is not None:
            eng.advance(marker)
        for r in eng.rejects:  # late events: location = (record offset << _ROW_BITS) + row in the record
            off, r.location = r.location >> _ROW_BITS, r.location & _ROW_MASK
            r.source = f"{topic}:{partition}@{off}"
            value, kind = values[off]
            out.rejects.append(_reject(r, topic, partition, off, value, kind))
        eng.rejects = []
        out.counts = counts
        out.alerts = eng.drain()
        if records:
            self.offset = records[-1][0]
        self._flush_export()
        self._progress(force=False)
        out.owner = self._take_owner_msgs()
        return out

    def _take_owner_msgs(self, **extra) -> list[tuple[int | None, bytes]]:
        """The owner-topic records collected so far, packed with this source, its offset and ``extra``."""
        out = [(p, pack({**h, "source": self.source, "offset": self.offset, **extra}, payload))
               for p, h, payload in self._owner_msgs]
        self._owner_msgs = []
        return out

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
        sent = self.progress_sent
        if sent is not None and progress <= sent:
            return
        now = time.monotonic()
        new_day = sent is None or trading_day_index(progress) != trading_day_index(sent)
        if force or new_day or now - self._progress_at >= PROGRESS_EVERY_S:
            self.progress_sent = progress
            self._progress_at = now
            self._owner_msgs.append((None, {"kind": "progress", "ts": progress}, b""))

    def declare_idle(self) -> Output:
        """The worker found this partition caught up (nothing left to read) and silent for the allowed
        lateness. The first declaration releases what the engine held back for a later event (the events at
        the newest timestamp), as a progress marker just past them would: an event that arrives later with
        that same timestamp or an earlier one is late (a reject with the reason). Only the rest of that
        second stays open (its market value is sent once the second is complete). Every declaration tells
        the owner stage that this source is idle, so that owner-level rules may stop waiting for it; they
        wait for it again at its next record. The worker checkpoints the state after a declaration that
        changed it."""
        self._owner_msgs = []
        eng = self.engine
        out = Output()
        if eng.max_seen is not None:
            held = eng.held
            upto = int(held.ts[-1]) + 1 if held is not None and len(held) else eng.max_seen - eng.tol
            if self.progress_sent is None or upto > self.progress_sent:
                eng.release_until(upto)
                out.alerts = eng.drain()
                self._flush_export()
                self.progress_sent = upto
                self._progress_at = time.monotonic()
        self._owner_msgs.append((None, {"kind": "progress", "ts": self.progress_sent}, b""))
        # every record of the declaration says so: released rows are not new activity of the source
        out.owner = self._take_owner_msgs(idle=True)
        return out

    def pending_progress(self) -> list[tuple[int | None, bytes]]:
        """Progress not sent yet (input paused): the worker calls this when it is idle."""
        self._owner_msgs = []
        self._progress(force=True)
        return self._take_owner_msgs()

    def _owner_parts(self, owners: np.ndarray) -> np.ndarray:
        """Owner partition of each owner id (murmur2 once per owner, then a table lookup)."""
        names = self.reg.owners.names
        table = getattr(self, "_opart", None)
        if table is None or len(table) < len(names):
            old = 0 if table is None else len(table)
            new = owner_partitions_of(names[old:], self.owner_partitions)
            table = self._opart = new if table is None else np.concatenate([table, new])
        return table[owners]

    def _export(self, seg: Segment, part: Batch) -> None:
        """Collect what the owner stage needs from a released segment (sent by ``_flush_export``).

        Every row the engine releases gets a position: the number of rows released before it. The engine
        releases rows in (event time, arrival) order whatever the grouping of its input, and rejects the
        same late rows, so a row's position is the same in any run over the same records: the owner stage
        skips rows at positions it has already applied (a source that restarted from a checkpoint)."""
        ex = self._ex
        base = self._released
        self._released = base + len(part)
        # row numbers, not boolean masks: a take then touches the selected rows only (sells are ≈ 1 row in 10)
        rows = np.flatnonzero((seg.etype == TRADE) & (seg.side == SIDE_S))
        if len(rows):
            sub = part.take(rows)
            sub.symbol[:] = -1  # owner-level rules do not use it: fewer strings to send and to intern there
            keys = seg.key[rows]
            sub.owner = self.engine.ctx.owners_of_keys(keys).astype(np.int32)
            sub.broker = self.engine.ctx.brokers_of_keys(keys).astype(np.int32)
            ex["trades"].append((sub, base + rows))
        secs, vals = MarketContext.seconds_of(seg, rows)
        if len(secs):
            ex["market"].append((seg.day * SECONDS_KEY + secs, vals))
        ri = np.flatnonzero(seg.etype == INDEX)
        if len(ri):
            ex["index"].append((part.take(ri), base + ri))

    def _flush_export(self) -> None:
        ex = self._ex
        msgs = self._owner_msgs
        if ex["trades"]:
            sub = Batch.concat([b for b, _ in ex["trades"]])
            pos = np.concatenate([q for _, q in ex["trades"]])
            parts = self._owner_parts(sub.owner)
            # grouped by owner partition in one take (stable: each group keeps the rows' order), then sliced
            order = np.argsort(parts, kind="stable")
            sub, pos, parts = sub.take(order), pos[order], parts[order]
            bounds = np.flatnonzero(parts[1:] != parts[:-1]) + 1
            for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(parts)]):
                frame = binary.encode_frame_fast(sub.take(slice(lo, hi)), self.reg)
                msgs.append((int(parts[lo]), {"kind": "trades"}, pack_rows(pos[lo:hi], frame)))
        if ex["index"]:
            sub = Batch.concat([b for b, _ in ex["index"]])
            pos = np.concatenate([q for _, q in ex["index"]])
            msgs.append((None, {"kind": "index"}, pack_rows(pos, binary.encode_frame_fast(sub, self.reg))))
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
                msgs.append((None, {"kind": "market"}, pack_seconds(keys[done], vals[done])))
                keys, vals = keys[~done], vals[~done]
        self._market = (keys, vals)
        self._ex = _new_export()
