"""The owner stage: owner-level rules behind a watermark.

One :class:`KeyedState` per partition of the owner topic. It receives, from every feed partition
(a *source*), sell trades of the owners routed here, the market's per-second sell value, index
levels and progress. It evaluates the owner-level rules on the trades that every source has passed:
the watermark is the smallest progress over all sources it waits for, so the rules see exactly the
trades, in event-time order, that the in-process replay sees.

Bounded lateness: a source that its worker found caught up and silent for the allowed lateness says it
is *idle* (``PartitionState.declare_idle``, repeated while it stays so). The watermark stops waiting for
an idle source once other sources have been active for the allowed lateness since its last record, or
since activity resumed after a pause of every source (so a market resuming after a break, or a feed
starting, is waited for whole). Time here is the owner-topic records' timestamps, so a stage restored
from a checkpoint decides the same again. A trade that arrives below the watermark is late: a reject
with the reason, counted, not applied (the only way live output can differ from replay).

What a source sends again after it restarted from a checkpoint is recognised and skipped: trades and
index rows by their position in the source's release order (``PartitionState._export``), market
seconds by their (day, second), which a source sends once each, in order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from surveil.engine import Engine
from surveil.engine.engine import batch_data, batch_from_data
from surveil.engine.plan import plan
from surveil.engine.refdata import RefData
from surveil.engine.securities import Securities
from surveil.events import binary
from surveil.events.batch import Batch, Registry
from surveil.events.errors import EventFormatError, Reject
from surveil.events.schema import VENUES, ns_to_iso, trading_day_index
from surveil.stream import checkpoint
from surveil.stream.envelope import (
    SECONDS_KEY,
    EnvelopeError,
    unpack,
    unpack_bundle,
    unpack_rows,
    unpack_seconds,
)
from surveil.stream.partition import Output


def _bad_record(topic: str, partition: int, offset: int, reason: str, value) -> dict[str, Any]:
    return {"topic": topic, "partition": partition, "offset": offset, "field": "record", "reason": reason,
            "original": bytes(value[:4096]).hex() if value is not None else None}


class KeyedState:
    """One partition of a downstream stage: ``owner`` (rows routed by owner) or ``security`` (by venue and
    symbol). It runs the rules of that key (see :mod:`surveil.engine.plan`)."""

    def __init__(self, source: str, params: dict, sources: list[str], lateness_ms: int = 2000,
                 stage: str = "owner", securities: Securities | None = None):
        self.source = source
        self.stage = stage
        self.reg = Registry()
        self.engine = Engine(params, RefData(), self.reg, rules=plan().rules[stage], market_from_events=False,
                             keep_finals=False, guard=False,  # the partition stages guarded event time
                             securities=securities)
        self.progress: dict[str, int | None] = {s: None for s in sources}
        # per source: the last trade position, index position and market (day, second) key applied
        self.applied: dict[str, list[int]] = {}
        self.pending: list[Batch] = []
        self.offset = -1
        self.watermark: int | None = None
        self.released: int | None = None  # the watermark the rules have been given
        self.duplicates = 0  # rows and seconds skipped because a restarted source sent them again
        self.idle: set[str] = set()  # sources whose latest record says they are idle
        self.late = 0  # trades rejected because they arrived below the watermark
        # record-timestamp clock (ms): now, each source's last activity, and when activity last resumed
        self.lateness_ms = lateness_ms
        self.now: int | None = None
        self.seen_at: dict[str, int] = {}
        self.last_activity: int | None = None
        self.resume: int | None = None
        self.idle_at: dict[str, int] = {}  # each idle source's latest declaration (a lease of one lateness)
        self.book = None  # the worker's RecommendationBook for this partition's alerts

    # -- checkpoint ---------------------------------------------------------------------------------
    _FIELDS = ("offset", "watermark", "released", "duplicates", "late", "now", "last_activity", "resume",
               "progress", "applied", "seen_at", "idle_at")

    def state(self) -> dict[str, Any]:
        """This stage's state as plain data (see :mod:`surveil.stream.checkpoint`)."""
        self._merge_pending()
        return {"stage": self.stage, "source": self.source, "engine": self.engine.state(),
                "pending": [batch_data(b) for b in self.pending],
                "idle": sorted(self.idle), "book": self.book.state() if self.book is not None else None,
                **{k: getattr(self, k) for k in self._FIELDS}}

    def packed(self) -> bytes:
        return checkpoint.pack(self.state())

    def dumps(self, key: bytes = checkpoint.UNKEYED, binding: bytes = b"") -> bytes:
        return checkpoint.seal(self.packed(), key, binding)

    def _merge_pending(self) -> None:
        """One batch instead of thousands of small ones (cheaper to keep, to release and to checkpoint)."""
        if len(self.pending) > 1:
            self.pending = [Batch.concat(self.pending)]

    @classmethod
    def loads(cls, data: bytes, params: dict | None = None, lateness_ms: int = 2000,
              stage: str | None = None, notes: list[str] | None = None,
              key: bytes = checkpoint.UNKEYED, binding: bytes = b"",
              securities: Securities | None = None) -> KeyedState:
        """A state from its checkpoint, under the current ``params`` (default: the defaults) and lateness."""
        from surveil.engine import load_config
        from surveil.stream.views import RecommendationBook

        d = checkpoint.unseal(data, stage or ("owner", "security"), key, binding)
        st = cls(d["source"], params or load_config(), [], lateness_ms, d["stage"], securities)
        try:
            got = st.engine.restore(d["engine"])
            st.reg = st.engine.reg
            st.pending = [batch_from_data(b) for b in d["pending"]]
            st.idle = set(d["idle"])
            for k in cls._FIELDS:
                setattr(st, k, d[k])
            if d["book"] is not None:
                st.book = RecommendationBook.from_state(d["book"])
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise checkpoint.CheckpointError(f"{d.get('stage')} checkpoint of {d.get('source')!r}: {e!r}") from e
        if notes is not None:
            notes.extend(got)
        return st

    def add_sources(self, sources: list[str]) -> None:
        for s in sources:
            self.progress.setdefault(s, None)

    def handle(self, value: bytes, offset: int, topic: str, partition: int) -> Output:
        return self.handle_many([(offset, value)], topic, partition)

    def handle_many(self, records, topic: str, partition: int) -> Output:
        """Apply owner-topic records (offset, value[, timestamp ms]) in order. The watermark (and with it which
        trades are late) is decided after each record, so any grouping into polls decides the same; the
        trades below it go to the rules once, at the end (the engine's output does not depend on how its
        input is cut, and a poll of a long backlog is not sorted again for every record)."""
        out = Output()
        for rec in records:
            offset, value = rec[0], rec[1]
            ts_ms = rec[2] if len(rec) > 2 else None
            if ts_ms is not None and (self.now is None or ts_ms > self.now):
                self.now = ts_ms
            self.offset = offset
            try:
                header, payload = unpack(value)
                if header.get("kind") == "bundle":
                    items = unpack_bundle(payload)
                else:
                    items = [memoryview(value)]
            except (EnvelopeError, ValueError, TypeError) as e:
                out.rejects.append(_bad_record(topic, partition, offset, f"bad owner-topic record: {e}", value))
                continue
            progressed = False
            for item in items:
                progressed |= self._apply(item, offset, topic, partition, out, ts_ms)
            if progressed or self.idle:
                self._advance_watermark()
        self._release(out)
        return out

    def _fresh(self, src: str, kind: int, pos: np.ndarray) -> np.ndarray | None:
        """The mask of positions not applied yet (None: all new), and remember the last one."""
        done = self.applied.setdefault(src, [-1, -1, -1])
        last = done[kind]
        if not len(pos):
            return None
        done[kind] = max(last, int(pos[-1]))
        if pos[0] > last:
            return None
        keep = pos > last
        self.duplicates += int(len(pos) - keep.sum())
        return keep

    def _new_rows(self, payload, src: str, kind: int, rejects: list[Reject], ref_from: bool = False) -> Batch:
        """The rows of a trades (kind 0) or index (kind 1) record not applied yet (``ref_from``: the record carries
        each row's reference-row valid_from)."""
        if ref_from:
            pos, frame, rf = unpack_rows(payload, True)
        else:
            pos, frame = unpack_rows(payload)
        b, _ = binary.decode_frame_at(frame, 0, self.reg, src, 0, rejects)
        if len(b) != len(pos):
            raise EventFormatError(f"{len(pos)} row positions for {len(b)} rows")
        if ref_from:
            b.ref_from = rf.copy()
        keep = self._fresh(src, kind, pos)
        return b if keep is None else b.take(keep)

    def _apply(self, value, offset: int, topic: str, partition: int, out: Output, ts_ms: int | None = None) -> bool:
        """Apply one record; True when it was progress (the caller releases once per poll)."""
        try:
            header, payload = unpack(value)
            kind, src = header["kind"], header["source"]
        except (EnvelopeError, KeyError, ValueError, TypeError) as e:
            out.rejects.append(_bad_record(topic, partition, offset, f"bad owner-topic record: {e}", value))
            return False
        rejects: list[Reject] = []
        progressed = False
        if not header.get("idle"):  # activity: the watermark waits for this source
            self.idle.discard(src)
            if ts_ms is not None:
                if self.last_activity is None or ts_ms - self.last_activity >= self.lateness_ms:
                    self.resume = ts_ms  # every source was quiet for the allowed lateness: a new start
                self.last_activity = ts_ms if self.last_activity is None else max(self.last_activity, ts_ms)
                self.seen_at[src] = ts_ms
        try:
            if kind == "trades":
                b = self._new_rows(payload, src, 0, rejects, bool(header.get("ref_from")))
                if len(b) and self.watermark is not None:
                    b = self._late(b, src, topic, partition, offset, out)
                if len(b):
                    self.pending.append(b)
                    if len(self.pending) > 256:
                        self._merge_pending()
            elif kind == "market":
                keys, vals = unpack_seconds(payload)
                keep = self._fresh(src, 2, keys)
                if keep is not None:
                    keys, vals = keys[keep], vals[keep]
                days = keys // SECONDS_KEY
                for d in np.unique(days).tolist():
                    sel = days == d
                    self.engine.market.add_seconds(d, keys[sel] % SECONDS_KEY, vals[sel])
            elif kind == "index":
                b = self._new_rows(payload, src, 1, rejects)
                days = trading_day_index(b.ts)
                for d in np.unique(days).tolist():
                    sel = days == d
                    self.engine.market.add_index(d, b.venue[sel], b.symbol[sel], b.ts[sel], b.price[sel])
            elif kind == "progress":
                ts = header["ts"]
                if header.get("idle"):  # the last record of an idle declaration
                    self.idle.add(src)
                    if ts_ms is not None:
                        self.idle_at[src] = ts_ms
                    self.progress.setdefault(src, None)
                if ts is not None:
                    ts = int(ts)
                    if self.progress.get(src) is None or ts > self.progress[src]:
                        self.progress[src] = ts
                progressed = True
            else:
                raise EventFormatError(f"unknown owner-topic record kind {kind!r}")
        except (EventFormatError, EnvelopeError, KeyError, ValueError, TypeError) as e:
            out.rejects.append(_bad_record(topic, partition, offset, str(e), value))
        for r in rejects:
            out.rejects.append({**r.to_dict(), "topic": topic, "partition": partition, "offset": offset})
        return progressed

    def skipped(self) -> set[str]:
        """Idle sources the watermark does not wait for. Only a declaration younger than the allowed lateness
        counts (a lease: a worker that died stops renewing it). While sources are active, an idle source is
        skipped once the others have been active for the allowed lateness after its last activity (or
        after activity resumed following a pause of every source, when it has been quiet since). When
        every source has been quiet for the allowed lateness, the ones active in the last lateness before
        the newest activity still bound the watermark, and only the others are skipped: partitions that
        pause together are waited for together. Allowed lateness 0: every source is waited for."""
        lat = self.lateness_ms
        if not self.idle or self.now is None or self.last_activity is None or lat <= 0:
            return set()
        now, last = self.now, self.last_activity
        start = self.resume if self.resume is not None else last
        fresh = {s for s in self.idle if now - self.idle_at.get(s, now - lat) < lat}
        if now - last < lat:
            return {s for s in fresh if last - max(self.seen_at.get(s, start), start) >= lat}
        recent = max(last - lat, start)
        return {s for s in fresh if self.seen_at.get(s, start - 1) < recent}

    def _late(self, b: Batch, src: str, topic: str, partition: int, offset: int, out: Output) -> Batch:
        """Trades below the watermark (their source was idle and the rules went on without it) are rejects."""
        wm = self.watermark
        late = b.ts < wm
        if not late.any():
            return b
        accounts, brokers = self.reg.accounts.names, self.reg.brokers.names
        for i in np.flatnonzero(late).tolist():
            ts = int(b.ts[i])
            row = {"ts": ts, "venue": VENUES[int(b.venue[i])], "account": accounts[int(b.account[i])],
                   "price": int(b.price[i]), "qty": int(b.qty[i]),
                   "broker": brokers[int(b.broker[i])] if b.broker[i] >= 0 else None}
            out.rejects.append({
                "topic": topic, "partition": partition, "offset": offset, "source": src, "field": "ts", "value": ts,
                "reason": (f"late for owner-level rules: sell trade at {ns_to_iso(ts)} from {src} arrived after "
                           f"the owner watermark had passed {ns_to_iso(wm)} (the source had been idle for longer "
                           "than the allowed lateness)"),
                "original": orjson.dumps(row).decode()})
        self.late += int(late.sum())
        return b.take(~late)

    def _advance_watermark(self) -> None:
        if not self.progress:
            return
        skipped = self.skipped()
        active = [v for s, v in self.progress.items() if s not in skipped]
        if not active or any(v is None for v in active):
            return  # a source not heard from yet (and not skipped)
        wm = min(active)
        if self.watermark is None or wm > self.watermark:
            self.watermark = wm

    def _release(self, out: Output) -> None:
        """Give the rules the trades below the watermark, and let them finalise up to it."""
        wm = self.watermark
        if wm is None or wm == self.released:
            return
        self.released = wm
        ready, keep = [], []
        for b in self.pending:
            m = b.ts < wm
            if m.all():
                ready.append(b)
            elif m.any():
                ready.append(b.take(m))
                keep.append(b.take(~m))
            else:
                keep.append(b)
        self.pending = keep
        eng = self.engine
        if ready:
            batch = Batch.concat(ready)
            eng.process(batch.take(np.argsort(batch.ts, kind="stable")), self.source)
        eng.advance(wm)
        out.alerts.extend(eng.drain())

    def status(self) -> dict[str, Any]:
        low = min((v for v in self.progress.values() if v is not None), default=None)
        skipped = self.skipped()
        return {"watermark": self.watermark, "pending": sum(len(b) for b in self.pending),
                "sources": len(self.progress),
                "waiting_for": [s for s, v in self.progress.items() if v is None and s not in skipped],
                "slowest": sorted(s for s, v in self.progress.items() if v is not None and v == low),
                "duplicates": self.duplicates, "open_alerts": sum(r.open_alerts() for r in self.engine.rules),
                "idle": sorted(self.idle), "not_waited_for": sorted(skipped), "late": self.late}
