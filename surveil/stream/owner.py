"""The owner stage: owner-level rules behind a watermark.

One :class:`OwnerState` per partition of the owner topic. It receives, from every feed partition
(a *source*), sell trades of the owners routed here, the market's per-second sell value, index
levels and progress. It evaluates the owner-level rules on the trades that every source has passed:
the watermark is the smallest progress over all sources, so the rules see exactly the trades, in
event-time order, that the in-process replay sees. What a source sends again after it restarted from
a checkpoint is recognised and skipped: trades and index rows by their position in the source's
release order (``PartitionState._export``), market seconds by their (day, second), which a source
sends once each, in order.
"""

from __future__ import annotations

import pickle
import zlib
from typing import Any

import numpy as np

from surveil.engine import Engine
from surveil.engine.refdata import RefData
from surveil.events import binary
from surveil.events.batch import Batch, Registry
from surveil.events.errors import EventFormatError, Reject
from surveil.events.schema import trading_day_index
from surveil.stream.envelope import SECONDS_KEY, EnvelopeError, unpack, unpack_bundle, unpack_rows, unpack_seconds
from surveil.stream.partition import OWNER_RULES, Output


def _bad_record(topic: str, partition: int, offset: int, reason: str, value) -> dict[str, Any]:
    return {"topic": topic, "partition": partition, "offset": offset, "field": "record", "reason": reason,
            "original": bytes(value[:4096]).hex()}


class OwnerState:
    def __init__(self, source: str, params: dict, sources: list[str]):
        self.source = source
        self.reg = Registry()
        self.engine = Engine(params, RefData(), self.reg, rules=OWNER_RULES, market_from_events=False)
        self.progress: dict[str, int | None] = {s: None for s in sources}
        # per source: the last trade position, index position and market (day, second) key applied
        self.applied: dict[str, list[int]] = {}
        self.pending: list[Batch] = []
        self.offset = -1
        self.watermark: int | None = None
        self.duplicates = 0  # rows and seconds skipped because a restarted source sent them again

    def dumps(self) -> bytes:
        self._merge_pending()
        return zlib.compress(pickle.dumps(self, protocol=5), 1)

    def _merge_pending(self) -> None:
        """One batch instead of thousands of small ones (cheaper to keep, to release and to checkpoint)."""
        if len(self.pending) > 1:
            self.pending = [Batch.concat(self.pending)]

    @staticmethod
    def loads(data: bytes) -> OwnerState:
        return pickle.loads(zlib.decompress(data))

    def add_sources(self, sources: list[str]) -> None:
        for s in sources:
            self.progress.setdefault(s, None)

    def handle(self, value: bytes, offset: int, topic: str, partition: int) -> Output:
        return self.handle_many([(offset, value)], topic, partition)

    def handle_many(self, records, topic: str, partition: int) -> Output:
        """Apply owner-topic records (offset, value) in order; release once, at the end."""
        out = Output()
        progressed = False
        for offset, value in records:
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
            for item in items:
                progressed |= self._apply(item, offset, topic, partition, out)
        if progressed:
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

    def _new_rows(self, payload, src: str, kind: int, rejects: list[Reject]) -> Batch:
        """The rows of a trades (kind 0) or index (kind 1) record not applied yet."""
        pos, frame = unpack_rows(payload)
        b, _ = binary.decode_frame_at(frame, 0, self.reg, src, 0, rejects)
        if len(b) != len(pos):
            raise EventFormatError(f"{len(pos)} row positions for {len(b)} rows")
        keep = self._fresh(src, kind, pos)
        return b if keep is None else b.take(keep)

    def _apply(self, value, offset: int, topic: str, partition: int, out: Output) -> bool:
        """Apply one record; True when it was progress (the caller releases once per poll)."""
        try:
            header, payload = unpack(value)
            kind, src = header["kind"], header["source"]
        except (EnvelopeError, KeyError, ValueError, TypeError) as e:
            out.rejects.append(_bad_record(topic, partition, offset, f"bad owner-topic record: {e}", value))
            return False
        rejects: list[Reject] = []
        progressed = False
        try:
            if kind == "trades":
                b = self._new_rows(payload, src, 0, rejects)
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
                ts = int(header["ts"])
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

    def _release(self, out: Output) -> None:
        if not self.progress or any(v is None for v in self.progress.values()):
            return
        wm = min(v for v in self.progress.values() if v is not None)
        if self.watermark is not None and wm <= self.watermark:
            return
        self.watermark = wm
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
        return {"watermark": self.watermark, "pending": sum(len(b) for b in self.pending),
                "sources": len(self.progress), "waiting_for": [s for s, v in self.progress.items() if v is None],
                "slowest": sorted(s for s, v in self.progress.items() if v is not None and v == low),
                "duplicates": self.duplicates, "active_bursts": len(self.engine.rules[0].active)}
