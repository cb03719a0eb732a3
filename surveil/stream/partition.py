"""The partition stage: per-account rules on the feed partition that owns the account.

One :class:`PartitionState` per feed partition. It runs the per-account rules and forwards to the
owner stage what owner-level rules need: the partition's sell trades (owner and broker filled in,
routed by owner), its per-second market sell value, its index levels, and its progress. It is pure:
records in, records out; the worker moves them to and from Kafka.
"""

from __future__ import annotations

import pickle
import time
import zlib
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
from surveil.events.schema import INDEX, SIDE_S, TRADE, trading_day_index
from surveil.rules.base import Segment
from surveil.rules.market import MarketContext
from surveil.stream.envelope import feed_kind, pack, pack_seconds

ACCOUNT_RULES = ("order_rate_1s", "daily_orders_20k")
#: a partition tells the owner stage its progress at most this often (wall time), and at a new trading day
PROGRESS_EVERY_S = 0.05
OWNER_RULES = ("sell_burst_1m",)


def owner_partition(owner: str, n: int) -> int:
    return (murmur2(owner.encode("utf-8")) & 0x7FFFFFFF) % n


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
        self.engine = Engine(params, refdata, self.reg, rules=ACCOUNT_RULES, on_segment=self._export)
        self.offset = -1  # the last input offset this state reflects
        self.progress_sent: int | None = None
        self._progress_at = 0.0
        self._out = Output()
        self._owner_msgs: list[tuple[int | None, dict, bytes]] = []

    # -- checkpoint ---------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        d = self.__dict__.copy()
        d["_out"] = Output()
        d["_owner_msgs"] = []
        return d

    def dumps(self) -> bytes:
        """The checkpoint: this state (engine included) as of ``self.offset``; reference data is not part
        of it (it is shared by the worker and comes from its own topic)."""
        ref = self.engine.ref
        self.engine.ref = None
        try:
            return zlib.compress(pickle.dumps(self, protocol=5), 1)
        finally:
            self.engine.ref = ref

    @staticmethod
    def loads(data: bytes, refdata: RefData) -> PartitionState:
        st: PartitionState = pickle.loads(zlib.decompress(data))
        st.engine.ref = refdata
        st.engine._ref_version = -1  # reference data may have changed meanwhile: resolve owners again
        return st

    # -- processing ---------------------------------------------------------------------------------
    def handle(self, value: bytes, offset: int, topic: str, partition: int) -> Output:
        """Process one feed record (frame, JSON array, JSON event or progress marker)."""
        self._out = out = Output()
        self._owner_msgs: list[tuple[int | None, dict, bytes]] = []
        eng = self.engine
        rejects: list[Reject] = []
        kind = feed_kind(value)
        try:
            if kind == "frame":
                batch, _ = binary.decode_frame_at(value, 0, self.reg, f"{topic}:{partition}@{offset}", 0, rejects)
                out.counts = np.bincount(batch.venue.astype(np.int64) * 4 + batch.etype, minlength=12)
                eng.process(batch, f"{topic}:{partition}@{offset}")
            elif kind == "progress":
                ts = orjson.loads(value).get("ts")
                if type(ts) is not int:
                    raise EventFormatError(f"progress marker ts={ts!r}: not an integer timestamp")
                eng.advance(ts)
            else:
                batch = jsonl.decode_json_frame(value, self.reg, f"{topic}:{partition}@{offset}", rejects)
                out.counts = np.bincount(batch.venue.astype(np.int64) * 4 + batch.etype, minlength=12)
                eng.process(batch, f"{topic}:{partition}@{offset}")
        except (EventFormatError, orjson.JSONDecodeError) as e:
            rejects.append(Reject(source=f"{topic}:{partition}", location=offset, field="record", value=None,
                                  reason=str(e), raw=value[:4096].hex(), extra={"kind": "binary"}))
        rejects.extend(eng.rejects)
        eng.rejects = []
        for r in rejects:
            d = r.to_dict()
            d.update(topic=topic, partition=partition, offset=offset)
            d["original"] = value.hex() if kind == "frame" else value.decode("utf-8", "replace")
            out.rejects.append(d)
        out.alerts = eng.drain()
        self.offset = offset
        self._progress(force=False)
        # number the owner-topic records of this input offset: a restarted source re-sends the same data
        # records with the same numbers (progress, which may or may not be sent, always comes last)
        out.owner = [(p, pack({**h, "source": self.source, "offset": offset, "seq": i}, payload))
                     for i, (p, h, payload) in enumerate(self._owner_msgs)]
        self._owner_msgs = []
        return out

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

    def pending_progress(self) -> list[tuple[int | None, bytes]]:
        """Progress not sent yet (input paused): the worker calls this when it is idle."""
        self._owner_msgs = []
        self._progress(force=True)
        out = [(p, pack({**h, "source": self.source, "offset": self.offset, "seq": 1_000_000}, payload))
               for p, h, payload in self._owner_msgs]
        self._owner_msgs = []
        return out

    def _export(self, seg: Segment, part: Batch) -> None:
        msgs = self._owner_msgs
        ctx = self.engine.ctx
        m = (seg.etype == TRADE) & (seg.side == SIDE_S)
        if m.any():
            sub = part.take(m)
            keys = seg.key[m]
            owners = ctx.owners_of_keys(keys).astype(np.int32)
            sub.owner = owners
            sub.broker = ctx.brokers_of_keys(keys).astype(np.int32)
            names = self.reg.owners.names
            parts = np.array([owner_partition(names[o], self.owner_partitions) for o in owners.tolist()])
            for p in np.unique(parts).tolist():
                frame = binary.encode_frame(sub.take(parts == p), self.reg)
                msgs.append((p, {"kind": "trades"}, frame))
        secs, vals = MarketContext.seconds_of(seg)
        if len(secs):
            msgs.append((None, {"kind": "market", "day": seg.day}, pack_seconds(secs, vals)))
        mi = seg.etype == INDEX
        if mi.any():
            msgs.append((None, {"kind": "index"}, binary.encode_frame(part.take(mi), self.reg)))
