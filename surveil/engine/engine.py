"""The engine: runs every rule over event-time-ordered segments of one trading day.

Ordering. Rules see events sorted by timestamp; events with equal timestamps are
simultaneous and are never split across two segments. An input event is *late*
when its timestamp is earlier than an event seen before it (in input order) by more
than the reorder tolerance (default 0): a late event is rejected with that reason
(kept, counted), never silently dropped. Events within the tolerance are reordered.
Because lateness depends only on input order, never on how the input is cut into
batches, the same input in other batch sizes or files gives byte-identical alerts.

Trading days are calendar days in Asia/Shanghai; at a day change every rule
finalises the day's alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from surveil.engine.alerts import alert_record
from surveil.engine.refdata import RefData
from surveil.engine.securities import Securities, Security
from surveil.events.batch import Batch, Registry
from surveil.events.errors import Reject
from surveil.events.schema import VENUES, ns_to_iso, trading_day_index
from surveil.rules import RULES
from surveil.rules.base import AlertDraft, Context, Param, Segment, grow
from surveil.rules.config import ConfigError, load_toml, resolve
from surveil.rules.market import MarketContext

ENGINE_PARAMS = (
    Param("reorder_tolerance_ms", 0, int, False, "chosen",
          "events up to this much earlier than one already seen are reordered; earlier ones are rejected as late",
          lambda v: None if v >= 0 else "must be >= 0"),
)


def sections(extra: dict[str, tuple[Param, ...]] | None = None) -> dict[str, tuple[Param, ...]]:
    s = {cls.meta.id: cls.meta.params for cls in RULES}
    s["engine"] = ENGINE_PARAMS
    s.update(extra or {})
    return s


def load_config(path: str | Path | None = None, extra: dict[str, tuple[Param, ...]] | None = None,
                overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Resolved parameters of every section: defaults, then the rules file, then ``overrides``."""
    secs = sections(extra)
    data = load_toml(path) if path else {}
    cfg = resolve(secs, data, str(path) if path else "defaults")
    if overrides:
        cfg2 = resolve(secs, overrides, "overrides")
        for sec, vals in overrides.items():
            for k in vals:
                cfg[sec][k] = cfg2[sec][k]
    return cfg


class _Ctx(Context):
    def __init__(self, eng: Engine):
        self.e = eng

    def key_info(self, key: int) -> dict[str, Any]:
        e = self.e
        venue, acc = key & 3, e.reg.accounts.names[key >> 2]
        ref = e.ref.get(venue, acc)
        owner = self.owner_name(int(self.owners_of_keys(np.array([key]))[0]))
        b = int(e.key_broker[key]) if key < len(e.key_broker) else -1
        broker = e.reg.brokers.names[b] if b >= 0 else (ref.broker if ref else None)
        return {"venue": VENUES[venue], "account": acc, "owner": owner, "broker": broker,
                "reported": ref.reported if ref else None}

    def _ref_changed(self) -> None:
        """Reference data changed: owners and brokers resolved from it are looked up again."""
        e = self.e
        if e._ref_version != e.ref.version:
            e.key_owner_ref[:] = -2
            e.key_broker_ref[:] = -2
            e._ref_version = e.ref.version

    def _from_ref(self, cache: np.ndarray, keys: np.ndarray, interner, name_of) -> None:
        """Fill ``cache`` (-2: not looked up yet) at the accounts of ``keys`` not looked up yet with the id in
        ``interner`` of ``name_of(reference record or None, venue, account)`` (None: -1), in one intern_list
        (a cold start looks up every account)."""
        miss = keys[cache[keys] == -2]
        if len(miss) > 256:  # a cold start: sorted distinct keys by marking them (no sort of the rows)
            mark = np.zeros(len(cache), bool)
            mark[miss] = True
            new = np.flatnonzero(mark)
        else:
            new = np.unique(miss)
        if len(new):
            venues = (new & 3).tolist()
            accs = list(map(self.e.reg.accounts.names.__getitem__, (new >> 2).tolist()))
            refs = self.e.ref.get_many(venues, accs)
            cache[new] = interner.intern_list(list(map(name_of, refs, venues, accs)))

    def owners_of_keys(self, keys: np.ndarray) -> np.ndarray:
        e = self.e
        self._ref_changed()
        top = int(keys.max()) + 1 if len(keys) else 0
        e.key_owner_ref = grow(e.key_owner_ref, top, -2)
        e.key_owner_evt = grow(e.key_owner_evt, top, -1)
        self._from_ref(e.key_owner_ref, keys, e.reg.owners,
                       lambda r, venue, acc: r.owner if r and r.owner else f"{VENUES[venue]}:{acc}")
        ref = e.key_owner_ref[keys]
        evt = e.key_owner_evt[keys]
        return np.where(evt >= 0, evt, ref)

    def owner_name(self, owner: int) -> str:
        return self.e.reg.owners.names[owner]

    def account_names(self, keys: np.ndarray) -> list[str]:
        names = self.e.reg.accounts.names
        return [names[int(k) >> 2] for k in keys.tolist()]

    def brokers_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """Broker ids (``reg.brokers``) of account keys: the events' broker, else reference data, else -1."""
        e = self.e
        self._ref_changed()
        top = int(keys.max()) + 1 if len(keys) else 0
        e.key_broker = grow(e.key_broker, top, -1)
        out = e.key_broker[keys].copy()
        missing = out < 0
        if missing.any():  # from reference data, resolved once per account
            e.key_broker_ref = grow(e.key_broker_ref, top, -2)
            self._from_ref(e.key_broker_ref, keys[missing], e.reg.brokers,
                           lambda r, venue, acc: r.broker if r else None)
            out[missing] = e.key_broker_ref[keys[missing]]
        return out

    def symbol_id(self, code: str) -> int:
        return self.e.reg.symbols.ids.get(code, -1)

    def security(self, venue: int, symbol: int) -> Security | None:
        """The securities reference record (prev_close, risk_warning, price limits) of a symbol id
        (``reg.symbols``) on a venue code, or None (not in the securities data, or no symbol)."""
        names = self.e.reg.symbols.names
        securities = getattr(self.e, "securities", None)  # None: an engine of a checkpoint from before
        if securities is None or not 0 <= symbol < len(names):
            return None
        return securities.get(venue, names[symbol])


class Engine:
    """Feeds batches through the rules; collects alert records and rejects."""

    def __init__(self, params: dict[str, dict[str, Any]] | None = None, refdata: RefData | None = None,
                 registry: Registry | None = None, rules: Sequence[str] | None = None,
                 market_from_events: bool = True,
                 on_segment: Callable[[Segment, Batch], None] | None = None, keep_finals: bool = True,
                 securities: Securities | None = None):
        """``rules``: the rule ids to run (default all). ``market_from_events=False``: market context comes
        from ``self.market.add_*`` (stream workers). ``on_segment`` sees every released segment.
        ``keep_finals=False``: final alerts are only drained (stream stages publish them as they come; kept,
        they would grow a stage's checkpoints day after day)."""
        self.params = params or load_config()
        self.reg = registry or Registry()
        self.ref = refdata or RefData()
        self.securities = securities if securities is not None else Securities()  # surveil/engine/securities.py
        self.tol = int(self.params["engine"]["reorder_tolerance_ms"]) * 1_000_000
        self.ctx = _Ctx(self)
        self.market = MarketContext(from_events=market_from_events)
        self.on_segment = on_segment
        unknown = set(rules or ()) - {cls.meta.id for cls in RULES}
        if unknown:
            raise ConfigError(f"unknown rule(s): {', '.join(sorted(unknown))}")
        self.rules = [cls(self.params[cls.meta.id], self.ctx) for cls in RULES if rules is None or cls.meta.id in rules]
        for r in self.rules:
            if hasattr(r, "market"):
                r.market = self.market
        self.held: Batch | None = None
        self.max_seen: int | None = None
        self.day: int | None = None
        self.records: list[dict[str, Any]] = []  # every alert state in emission order (raised and final)
        self.finals: dict[str, dict[str, Any]] = {}
        self.keep_finals = keep_finals
        self.rejects: list[Reject] = []
        self.events_in = 0
        self.events_processed = 0
        self.key_owner_evt = np.full(0, -1, np.int32)
        self.key_owner_ref = np.full(0, -2, np.int32)
        self.key_broker = np.full(0, -1, np.int32)
        self.key_broker_ref = np.full(0, -2, np.int32)  # brokers from reference data (-2: not looked up yet)
        self._ref_version = self.ref.version

    # -- input ------------------------------------------------------------------------------------
    def process(self, batch: Batch, source: str = "") -> None:
        n = len(batch)
        if not n:
            return
        self.events_in += n
        ts = batch.ts
        prev = self.max_seen if self.max_seen is not None else int(ts[0])
        in_order = bool(ts[0] >= prev) and (n < 2 or bool((ts[1:] >= ts[:-1]).all()))
        if not in_order:
            before = np.maximum.accumulate(np.r_[np.int64(prev), ts[:-1]])
            late = ts < before - self.tol
            if late.any():
                for i in np.flatnonzero(late).tolist():
                    self.rejects.append(Reject(
                        source=source, location=int(batch.src[i]), field="ts", value=int(ts[i]),
                        reason=(f"late event: {ns_to_iso(int(ts[i]))} is earlier than an event already seen "
                                f"({ns_to_iso(int(before[i]))}) by more than the reorder tolerance "
                                f"({self.tol // 1_000_000} ms)"),
                        extra={"kind": "binary" if batch.order_id.dtype.kind == "S" else "jsonl"}))
                batch = batch.take(~late)
                ts = batch.ts
                if not len(ts):
                    return
        self.max_seen = max(prev, int(ts.max()))
        bound = self.max_seen - self.tol  # release every event strictly earlier than this
        held = self.held
        if held is not None and len(held):
            if in_order and held.ts[-1] < ts[0] and held.ts[-1] < bound:
                self._run(held)
                combined = batch
            else:
                combined = Batch.concat([held, batch])
                if not in_order or held.ts[-1] > ts[0]:
                    combined = combined.take(np.argsort(combined.ts, kind="stable"))
        else:
            combined = batch if in_order else batch.take(np.argsort(batch.ts, kind="stable"))
        cut = int(np.searchsorted(combined.ts, bound, "left"))
        if cut:
            self._run(combined.take(slice(0, cut)) if cut < len(combined) else combined)
        if cut < len(combined):
            held = combined.take(slice(cut, None))
            # rows of the caller's batch are copied (few): a view would keep the whole batch alive (a stream
            # worker decodes each poll into a block it reuses when nothing refers to it any more)
            self.held = held.copy() if combined is batch else held
        else:
            self.held = None

    def advance(self, ts: int) -> None:
        """A progress marker: no later input event is earlier than ``ts``. Releases what waits for a later
        event, lets rules finalise up to ``ts`` and, past midnight Asia/Shanghai, ends the trading day."""
        if self.max_seen is None or ts > self.max_seen:
            self.max_seen = ts
        self._release_before(ts - self.tol, ts)

    def release_until(self, upto: int) -> None:
        """Input before ``upto`` is complete (a stream partition found idle): release every held event
        earlier than it, let rules finalise up to it, and from now on treat an event earlier than ``upto``
        as late. Unlike ``advance(upto + tol)``, rules are not flushed past ``upto``, where events within the
        reorder tolerance may still come."""
        if self.max_seen is None:
            return
        self.max_seen = max(self.max_seen, upto + self.tol)
        self._release_before(upto, upto)

    def _release_before(self, bound: int, upto: int) -> None:
        """Run the held events earlier than ``bound``; once none is held, let rules finalise up to ``upto``
        and, past midnight Asia/Shanghai, end the trading day."""
        held = self.held
        if held is not None and len(held):
            cut = int(np.searchsorted(held.ts, bound, "left"))
            if cut:
                self._run(held.take(slice(0, cut)) if cut < len(held) else held)
                self.held = held.take(slice(cut, None)) if cut < len(held) else None
        if self.held is None or not len(self.held):
            drafts: list[AlertDraft] = []
            for r in self.rules:
                drafts.extend(r.flush(upto - 1))
            self._emit(drafts)
            if self.day is not None and int(trading_day_index(upto)) > self.day:
                self._end_day()
                self.day = None

    def restored_for_stream(self) -> None:
        """A stream stage's engine loaded from a checkpoint, maybe of an earlier version: it keeps no final
        alerts (earlier versions kept, and checkpointed, every one) and has every cache of this version."""
        self.keep_finals = False
        self.finals = {}
        self.__dict__.setdefault("key_broker_ref", np.full(0, -2, np.int32))

    def close(self) -> None:
        """End of input: release everything held back and finalise the open trading day."""
        if self.held is not None and len(self.held):
            self._run(self.held)
        self.held = None
        if self.day is not None:
            self._end_day()
            self.day = None

    # -- processing -------------------------------------------------------------------------------
    def _run(self, b: Batch) -> None:
        n = len(b)
        self.events_processed += n
        key = b.account.astype(np.int64) * 4 + b.venue
        top = int(key.max()) + 1
        has_owner = b.owner >= 0
        if has_owner.any():
            self.key_owner_evt = grow(self.key_owner_evt, top, -1)
            self.key_owner_evt[key[has_owner]] = b.owner[has_owner]
        has_broker = b.broker >= 0
        if has_broker.any():
            self.key_broker = grow(self.key_broker, top, -1)
            self.key_broker[key[has_broker]] = b.broker[has_broker]
        days = trading_day_index(b.ts)
        d0, d1 = int(days[0]), int(days[-1])
        cuts = [0, n] if d0 == d1 else [0, *np.searchsorted(days, np.arange(d0 + 1, d1 + 1), "left").tolist(), n]
        for a, z in zip(cuts[:-1], cuts[1:]):
            if a == z:
                continue
            day = int(days[a])
            if self.day is not None and day != self.day:
                self._end_day()
            self.day = day
            part = b if (a, z) == (0, n) else b.take(slice(a, z))
            seg = Segment(ts=part.ts, venue=part.venue, etype=part.etype, side=part.side, flags=part.flags,
                          price=part.price, qty=part.qty, key=key[a:z], symbol=part.symbol, day=day,
                          order_id=part.order_id)
            self.market.update(seg)
            if self.on_segment is not None:
                self.on_segment(seg, part)
            drafts: list[AlertDraft] = []
            for r in self.rules:
                drafts.extend(r.process(seg))
            wm = int(seg.ts[-1])
            for r in self.rules:
                drafts.extend(r.flush(wm))
            self._emit(drafts)

    def _end_day(self) -> None:
        drafts: list[AlertDraft] = []
        for r in self.rules:
            drafts.extend(r.end_day(self.day))
        self._emit(drafts)

    def _emit(self, drafts: list[AlertDraft]) -> None:
        for d in drafts:
            rec = alert_record(d, self.subject(d.subject))
            self.records.append(rec)
            if d.status == "final" and self.keep_finals:
                self.finals[rec["alert_id"]] = rec

    def subject(self, subj: tuple) -> dict[str, str]:
        kind, ident = subj
        if kind == "account":
            return {"venue": VENUES[ident & 3], "account": self.reg.accounts.names[ident >> 2]}
        return {"owner": self.reg.owners.names[ident]}

    def drain(self) -> list[dict[str, Any]]:
        """Alert states emitted since the last drain (raised and final), in emission order."""
        out, self.records = self.records, []
        return out

    def final_alerts(self) -> list[dict[str, Any]]:
        return list(self.finals.values())


__all__ = ["Engine", "load_config", "ConfigError"]
