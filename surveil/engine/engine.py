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
from surveil.engine.refdata import SINCE_ALWAYS, RefData, valid_from_text
from surveil.engine.securities import Securities, Security
from surveil.events.batch import Batch, Registry
from surveil.events.errors import Reject
from surveil.events.schema import VENUES, ns_to_iso, trading_day_index
from surveil.rules import all_rules
from surveil.rules.base import AlertDraft, Context, Param, Segment, array_data, from_array_data, grow
from surveil.rules.config import ConfigError, load_toml, resolve
from surveil.rules.market_context import MarketContext

ENGINE_PARAMS = (
    Param("reorder_tolerance_ms", 500, int, False,
          "chosen: the default simulated day (surveil simulate) with every 50th line swapped with its neighbour gives "
          "the sorted day's alerts "
          "(docs/events.md); per-account alerts wait at most this much event time",
          "events up to this much earlier than one already seen are reordered; earlier ones are late (kept whole "
          "in the rejects, still counted by whole-day rules)",
          lambda v: None if 0 <= v <= 3_600_000 else "must be 0..3600000"),
    Param("future_jump_ms", 1_800_000, int, False,
          "chosen: longer than any gap inside a session (30 min), shorter than the lunch break (90 min), "
          "so a real gap is followed once corroborated",
          "an event more than this ahead of event time does not move it until later events corroborate it",
          lambda v: None if 1_000 <= v <= 86_400_000 else "must be 1000..86400000"),
    Param("corroboration_events", 2, int, False,
          "chosen: one bad timestamp is never corroborated by itself; two more events are a feed, not a typo",
          "later events within future_jump_ms of an event ahead of event time that accept it (as many events "
          "that keep the current event time reject it)",
          lambda v: None if 1 <= v <= 1000 else "must be 1..1000"),
)
_NEVER = (1 << 63) - 1
#: events ahead of event time waiting for corroboration, at most (the oldest is rejected beyond)
MAX_SUSPECTS = 10_000


def sections(extra: dict[str, tuple[Param, ...]] | None = None) -> dict[str, tuple[Param, ...]]:
    s = {cls.meta.id: cls.meta.params for cls in all_rules()}
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


def _ref_owner(r, venue: int, account: str) -> str:
    """The owner a reference row gives an account: its owner, else the account itself (``VENUE:account``)."""
    return r.owner if r and r.owner else f"{VENUES[venue]}:{account}"


class _Ctx(Context):
    def __init__(self, eng: Engine):
        self.e = eng

    def key_info(self, key: int, ts: int | None = None) -> dict[str, Any]:
        """An account's venue, account, owner, broker, ``reported`` and the ``valid_from`` of the reference row
        that gave them, as of ``ts`` (None: its latest row). An owner or broker its events named (the latest)
        comes first, as for evidence built from events."""
        e = self.e
        venue, acc = key & 3, e.reg.accounts.names[key >> 2]
        ref = e.ref.get(venue, acc, ts)
        evt = int(e.key_owner_evt[key]) if key < len(e.key_owner_evt) else -1
        if evt >= 0:
            owner = self.owner_name(evt)
        elif (venue, acc) in e.ref.timed:
            owner = _ref_owner(ref, venue, acc)
        else:
            owner = self.owner_name(int(self.owners_of_keys(np.array([key]))[0]))
        b = int(e.key_broker[key]) if key < len(e.key_broker) else -1
        broker = e.reg.brokers.names[b] if b >= 0 else (ref.broker if ref else None)
        return {"venue": VENUES[venue], "account": acc, "owner": owner, "broker": broker,
                "reported": ref.reported if ref else None,
                "valid_from": valid_from_text(ref.valid_from) if ref else None}

    def _ref_changed(self) -> None:
        """Reference data changed: owners and brokers resolved from it are looked up again."""
        e = self.e
        if e._ref_version != e.ref.version:
            e.key_owner_ref[:] = -2
            e.key_broker_ref[:] = -2
            e.key_lo = np.full(0, _NEVER, np.int64)
            e.key_hi = np.full(0, SINCE_ALWAYS, np.int64)
            e.key_from = np.full(0, SINCE_ALWAYS, np.int64)
            e._ref_version = e.ref.version

    def _from_ref(self, keys: np.ndarray, *targets) -> None:
        """For each target ``(cache, interner, name_of)``: fill ``cache`` (-2: not looked up yet) at the accounts
        of ``keys`` not looked up yet with the id in ``interner`` of ``name_of(reference record or None, venue,
        account)`` (None: -1). One look-up of reference data for all the targets, one intern_list each (a cold
        start looks up every account)."""
        pending = np.zeros(len(keys), bool)
        for cache, _, _ in targets:
            pending |= cache[keys] == -2
        miss = keys[pending]
        if len(miss) > 256:  # a cold start: sorted distinct keys by marking them (no sort of the rows)
            mark = np.zeros(len(targets[0][0]), bool)
            mark[miss] = True
            new = np.flatnonzero(mark)
        else:
            new = np.unique(miss)
        if len(new):
            venues = (new & 3).tolist()
            accs = list(map(self.e.reg.accounts.names.__getitem__, (new >> 2).tolist()))
            refs = self.e.ref.get_many(venues, accs)
            for cache, interner, name_of in targets:
                cache[new] = interner.intern_list(list(map(name_of, refs, venues, accs)))

    def owners_of_keys(self, keys: np.ndarray) -> np.ndarray:
        e = self.e
        self._ref_changed()
        top = int(keys.max()) + 1 if len(keys) else 0
        e.key_owner_ref = grow(e.key_owner_ref, top, -2)
        e.key_owner_evt = grow(e.key_owner_evt, top, -1)
        self._from_ref(keys, (e.key_owner_ref, e.reg.owners, _ref_owner))
        ref = e.key_owner_ref[keys]
        evt = e.key_owner_evt[keys]
        return np.where(evt >= 0, evt, ref)

    def owner_name(self, owner: int) -> str:
        return self.e.reg.owners.names[owner]

    def broker_name(self, broker: int) -> str | None:
        return self.e.reg.brokers.names[broker] if broker >= 0 else None

    # -- as of each event's time ---------------------------------------------------------------------------
    def _refs_as_of(self, keys: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Reference data's owner id, broker id (-1: none) and row ``valid_from`` (None: every row holds since
        always) of accounts ``keys`` at times ``ts``.

        Reference data without validity (no ``valid_from``, one row per account: ``RefData.timed`` empty) is
        looked up once per account. Otherwise each account's cache holds the interval [key_lo, key_hi) of the
        row it last looked up (a row holds until the account's next row): a row in it is a hit; the others (an
        account's first look-up, a new row's start) are looked up, per account at its latest time, then
        per row for what still misses (an account whose row changes within the segment)."""
        e = self.e
        self._ref_changed()
        top = int(keys.max()) + 1 if len(keys) else 0
        e.key_owner_ref = grow(e.key_owner_ref, top, -2)
        e.key_broker_ref = grow(e.key_broker_ref, top, -2)
        if not e.ref.timed:
            self._from_ref(keys, (e.key_owner_ref, e.reg.owners, _ref_owner),
                           (e.key_broker_ref, e.reg.brokers, lambda r, venue, acc: r.broker if r else None))
            return e.key_owner_ref[keys], e.key_broker_ref[keys], None
        e.key_lo = grow(e.key_lo, top, _NEVER)
        e.key_hi = grow(e.key_hi, top, SINCE_ALWAYS)
        e.key_from = grow(e.key_from, top, SINCE_ALWAYS)
        miss = np.flatnonzero((ts < e.key_lo[keys]) | (ts >= e.key_hi[keys]))
        if not len(miss):
            return e.key_owner_ref[keys], e.key_broker_ref[keys], e.key_from[keys]
        # the hits first: a miss of the same account below moves its cache to another row
        owner, broker, frm = e.key_owner_ref[keys], e.key_broker_ref[keys], e.key_from[keys]
        mk, mt = keys[miss], ts[miss]
        order = np.lexsort((mt, mk))
        last = order[np.r_[mk[order][1:] != mk[order][:-1], True]]
        for k, t in zip(mk[last].tolist(), mt[last].tolist()):
            o, b, f, lo, hi = self._row_at(k, t)
            e.key_owner_ref[k], e.key_broker_ref[k], e.key_from[k], e.key_lo[k], e.key_hi[k] = o, b, f, lo, hi
        inside = (mt >= e.key_lo[mk]) & (mt < e.key_hi[mk])
        owner[miss[inside]] = e.key_owner_ref[mk[inside]]
        broker[miss[inside]] = e.key_broker_ref[mk[inside]]
        frm[miss[inside]] = e.key_from[mk[inside]]
        for i in miss[~inside].tolist():
            owner[i], broker[i], frm[i], _, _ = self._row_at(int(keys[i]), int(ts[i]))
        return owner, broker, frm

    def _row_at(self, key: int, ts: int) -> tuple[int, int, int, int, int]:
        """(owner id, broker id, valid_from, interval start, interval end) of an account's row at ``ts``."""
        e = self.e
        venue, acc = key & 3, e.reg.accounts.names[key >> 2]
        h = e.ref.history(venue, acc)
        if not h:
            return e.reg.owners.intern(f"{VENUES[venue]}:{acc}"), -1, SINCE_ALWAYS, SINCE_ALWAYS, _NEVER
        if len(h) == 1 and h[0].valid_from is None:
            r, lo, hi = h[0], SINCE_ALWAYS, _NEVER
        else:
            r = RefData.as_of(h, ts)
            lo, hi = RefData.until(h, ts)
        owner = _ref_owner(r, venue, acc)
        broker = e.reg.brokers.intern(r.broker) if r and r.broker else -1
        return e.reg.owners.intern(owner), broker, r.since if r else SINCE_ALWAYS, lo, hi

    def refs_of_rows(self, seg: Segment, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Each row's owner id, broker id (-1: none) and the ``valid_from`` of the reference row as of its time
        (None: every row holds since always): the event's own owner and broker when it names them (its own event
        only, whatever the cut of the input), else reference data's as of the event's time (an account without
        an owner is its own owner). A segment that carries ``ref_from`` (an owner stage's: resolved upstream)
        gives it."""
        keys = seg.key[rows]
        own_o = seg.owner[rows] if seg.owner is not None else np.full(len(rows), -1, np.int32)
        own_b = seg.broker[rows] if seg.broker is not None else np.full(len(rows), -1, np.int32)
        frm = seg.ref_from[rows] if seg.ref_from is not None else None
        if (own_o >= 0).all() and (own_b >= 0).all() and (frm is not None or not self.e.ref.timed):
            return own_o.astype(np.int32), own_b.astype(np.int32), frm
        ro, rb, rf = self._refs_as_of(keys, seg.ts[rows])
        return (np.where(own_o >= 0, own_o, ro).astype(np.int32), np.where(own_b >= 0, own_b, rb).astype(np.int32),
                frm if frm is not None else rf)

    def account_names(self, keys: np.ndarray) -> list[str]:
        names = self.e.reg.accounts.names
        return [names[int(k) >> 2] for k in keys.tolist()]

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
                 guard: bool = True, securities: Securities | None = None):
        """``rules``: the rule ids to run (default all). ``market_from_events=False``: market context comes
        from ``self.market.add_*`` (stream workers). ``on_segment`` sees every released segment.
        ``keep_finals=False``: final alerts are only drained (stream stages publish them as they come; kept,
        they would grow a stage's checkpoints day after day). ``guard=False``: no event-time guard (the owner and
        security stages: their input comes from partition stages that guarded it, in watermark order)."""
        self.guard = guard
        self.params = params or load_config()
        self.reg = registry or Registry()
        self.ref = refdata or RefData()
        self.securities = securities if securities is not None else Securities()  # surveil/engine/securities.py
        self.tol = int(self.params["engine"]["reorder_tolerance_ms"]) * 1_000_000
        self.jump = int(self.params["engine"]["future_jump_ms"]) * 1_000_000
        self.corroborate = int(self.params["engine"]["corroboration_events"])
        # events ahead of event time, waiting: one-row batches, and per event [agreeing, contradicting, source]
        self.suspects: list[Batch] = []
        self.votes: list[list] = []
        self.late_rows: list[Batch] = []  # late events the day's rules still count at the day's close
        self.vouched: int | None = None  # the newest progress marker: no later input is earlier than it
        self.ctx = _Ctx(self)
        self.market = MarketContext(from_events=market_from_events)
        self.on_segment = on_segment
        classes = all_rules()
        unknown = set(rules or ()) - {cls.meta.id for cls in classes}
        if unknown:
            raise ConfigError(f"unknown rule(s): {', '.join(sorted(unknown))}")
        self.rules = [cls(self.params[cls.meta.id], self.ctx) for cls in classes
                      if rules is None or cls.meta.id in rules]
        for r in self.rules:
            if r.meta.inputs.market:
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
        # reference data with validity: the interval [lo, hi) of the row cached above, and its valid_from
        self.key_lo = np.full(0, _NEVER, np.int64)
        self.key_hi = np.full(0, SINCE_ALWAYS, np.int64)
        self.key_from = np.full(0, SINCE_ALWAYS, np.int64)
        self._ref_version = self.ref.version

    # -- input ------------------------------------------------------------------------------------
    def process(self, batch: Batch, source: str = "") -> None:
        """Take a batch in input order. Event time is guarded: an event more than ``future_jump_ms`` ahead of
        it (or any event before event time is known) waits as a *suspect* until ``corroboration_events`` later
        events within ``future_jump_ms`` of it accept it (then event time jumps: the lunch break, the next
        trading day, a quiet partition), or as many later events that keep the current event time reject it
        (a reject with the event's content). Decided in input order only, so any cut of the input decides the
        same."""
        n = len(batch)
        if not n:
            return
        self.events_in += n
        if not self.guard or (self.max_seen is not None and not self.suspects
                              and int(batch.ts.max()) <= self.max_seen + self.jump):
            self._accept(batch, source)  # the usual case: nothing ahead of event time
            return
        ts = batch.ts
        i = 0
        while i < n:
            if self.max_seen is not None:
                ahead = np.flatnonzero(ts[i:] > self.max_seen + self.jump)
                j = i + int(ahead[0]) if len(ahead) else n
                if j > i:
                    self._keep_time(batch.take(slice(i, j)) if (i, j) != (0, n) else batch, source)
                    i = j
                    continue
            self._suspect(batch.take(slice(i, i + 1)).copy(), source)
            i += 1

    def _keep_time(self, batch: Batch, source: str) -> None:
        """Events at or below event time + future_jump_ms: processed; each contradicts every suspect."""
        if self.suspects:
            n = len(batch)
            for v in self.votes:
                v[1] += n
            self._reject_suspects([k for k, v in enumerate(self.votes) if v[1] >= self.corroborate],
                                  f"not corroborated: {self.corroborate} later event(s) kept event time")
        self._accept(batch, source)

    def _suspect(self, row: Batch, source: str) -> None:
        """One event ahead of event time: it corroborates the suspects near it, and waits with their votes."""
        t = int(row.ts[0])
        near = [k for k, b in enumerate(self.suspects) if abs(int(b.ts[0]) - t) <= self.jump]
        for k in near:
            self.votes[k][0] += 1
        self.suspects.append(row)
        self.votes.append([len(near), 0, source])
        if len(self.suspects) > MAX_SUSPECTS:
            self._reject_suspects([0], f"more than {MAX_SUSPECTS} events ahead of event time wait for corroboration")
        won = next((k for k, v in enumerate(self.votes) if v[0] >= self.corroborate), None)
        if won is None:
            return
        # accepted: the suspects near the winner (in arrival order) are the new event time
        centre = int(self.suspects[won].ts[0])
        group = [k for k, b in enumerate(self.suspects) if abs(int(b.ts[0]) - centre) <= self.jump]
        # suspects that came before the group and are not later than it are in order with it: the group
        # corroborates that time moved past them (a quiet source's first events, before event time was known)
        top = max(int(self.suspects[k].ts[0]) for k in group)
        group = sorted(set(group) | {k for k in range(group[0]) if int(self.suspects[k].ts[0]) <= top})
        self._accept_suspects(group)
        self._release_suspects_below()

    def _release_suspects_below(self) -> None:
        """Suspects no longer ahead (event time moved up to them): processed, in arrival order."""
        if self.suspects and self.max_seen is not None:
            limit = self.max_seen + self.jump
            self._accept_suspects([k for k, b in enumerate(self.suspects) if int(b.ts[0]) <= limit])

    def _accept_suspects(self, which: list[int]) -> None:
        """Process the suspects at positions ``which``, in arrival order, as events of the first one's source."""
        if which:
            rows = [self.suspects[k] for k in sorted(which)]
            source = self.votes[min(which)][2]
            self._forget_suspects(set(which))
            self._accept(Batch.concat(rows), source)

    def _forget_suspects(self, drop: set[int]) -> None:
        self.suspects = [b for k, b in enumerate(self.suspects) if k not in drop]
        self.votes = [v for k, v in enumerate(self.votes) if k not in drop]

    def settle(self, final: bool) -> None:
        """The input ended (``final``) or went quiet (a stream partition found idle): suspects that no later event
        contradicted are accepted, in arrival order (nothing speaks against them: the first events of a small
        file, a quiet partition's first events); at the end of the input the others are rejected."""
        self._accept_suspects([k for k, v in enumerate(self.votes) if v[1] == 0])
        if final:
            self._reject_suspects(list(range(len(self.suspects))), "contradicted, and not corroborated before the "
                                                                  "end of the input")

    def _reject_suspects(self, which: list[int], why: str) -> None:
        if not which:
            return
        drop = set(which)
        for k in sorted(drop):
            b, source = self.suspects[k], self.votes[k][2]
            t = int(b.ts[0])
            around = (f"event time {ns_to_iso(self.max_seen)}" if self.max_seen is not None
                      else "no event time yet")
            self.rejects.append(Reject(
                source=source, location=int(b.src[0]), field="ts", value=t,
                reason=(f"{ns_to_iso(t)} is more than {self.jump // 60_000_000_000} min ahead of {around} and "
                        f"was {why}"),
                raw=self.event_text(b, 0), extra={"kind": "binary" if b.order_id.dtype.kind == "S" else "jsonl"}))
        self._forget_suspects(drop)

    def event_text(self, b: Batch, i: int) -> str:
        """One event of a batch as a JSON line of the contract (what a reject keeps of it, whole)."""
        import orjson

        from surveil.events.schema import PRICE_SCALE, SIDES, TYPES

        names = self.reg
        def name(interner, k):
            k = int(k)
            return interner.names[k] if 0 <= k < len(interner.names) else None
        d = {"ts": int(b.ts[i]), "venue": VENUES[int(b.venue[i])], "type": TYPES[int(b.etype[i])],
             "account": name(names.accounts, b.account[i]), "symbol": name(names.symbols, b.symbol[i]),
             "owner": name(names.owners, b.owner[i]), "broker": name(names.brokers, b.broker[i]),
             "side": SIDES[int(b.side[i])], "price": int(b.price[i]) / PRICE_SCALE, "qty": int(b.qty[i]),
             "order_id": b.order_id_at(i)}
        return orjson.dumps({k: v for k, v in d.items() if v is not None}).decode()

    def _accept(self, batch: Batch, source: str = "") -> None:
        n = len(batch)
        ts = batch.ts
        prev = self.max_seen if self.max_seen is not None else int(ts[0])
        in_order = bool(ts[0] >= prev) and (n < 2 or bool((ts[1:] >= ts[:-1]).all()))
        if not in_order:
            before = np.maximum.accumulate(np.r_[np.int64(prev), ts[:-1]])
            late = ts < before - self.tol
            if late.any():
                # a late event is still counted by the rules that count a whole day (counts_late), at the close of
                # its trading day, when that day is the one of the newest event seen before it (so not closed yet:
                # an input-order fact, the same for any cut of the input); it is kept whole in the rejects
                counters = ", ".join(r.meta.id for r in self.rules if r.meta.counts_late)
                countable = []
                for i in np.flatnonzero(late).tolist():
                    counted = bool(counters) and trading_day_index(int(ts[i])) == trading_day_index(int(before[i]))
                    if counted:
                        countable.append(i)
                    self.rejects.append(Reject(
                        source=source, location=int(batch.src[i]), field="ts", value=int(ts[i]),
                        reason=(f"late event: {ns_to_iso(int(ts[i]))} is earlier than an event already seen "
                                f"({ns_to_iso(int(before[i]))}) by more than the reorder tolerance "
                                f"({self.tol // 1_000_000} ms); "
                                + (f"still counted by {counters} at the close of its trading day" if counted
                                   else "not counted by any rule (its windows have closed)")),
                        raw=self.event_text(batch, i),
                        extra={"kind": "binary" if batch.order_id.dtype.kind == "S" else "jsonl"}))
                if countable:
                    self.late_rows.append(batch.take(np.array(countable)).copy())
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
        event, lets rules finalise up to ``ts`` and, past midnight Asia/Shanghai, ends the trading day. The
        source vouches for ``ts``: suspects within ``future_jump_ms`` of it are no longer ahead."""
        # the suspects up to ts came before the marker: in order, as the source says; first
        self._accept_suspects([k for k, b in enumerate(self.suspects) if int(b.ts[0]) <= ts])
        if self.max_seen is None or ts > self.max_seen:
            self.max_seen = ts
        self.vouched = ts if self.vouched is None else max(self.vouched, ts)
        self._release_suspects_below()
        self._release_before(ts, ts)  # nothing later is earlier than ts: no reordering to wait for below it

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
                drafts.extend(r.close(upto - 1))
            self._emit(drafts)
            if self.day is not None and int(trading_day_index(upto)) > self.day:
                self._end_day()
                self.day = None

    # -- state (stream stages' checkpoints) ------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything this engine carries from one input to the next, as plain data: what it holds back,
        its event time, the owners and brokers events named, the market context, and each rule's state
        (``{rule id: [state version, data]}``) with the parameters it ran under. Alert states are drained by
        the stages before they checkpoint (``records`` is then empty) and finals are not kept there."""
        return {
            "registry": registry_data(self.reg),  # the names the state's integer ids refer to
            "held": batch_data(self.held) if self.held is not None else None,
            "suspects": batch_data(Batch.concat(self.suspects)) if self.suspects else None,
            "votes": self.votes,
            "late_rows": batch_data(Batch.concat(self.late_rows)) if self.late_rows else None,
            "max_seen": self.max_seen, "day": self.day, "vouched": self.vouched,
            "events_in": self.events_in, "events_processed": self.events_processed,
            "records": self.records,
            "key_owner_evt": array_data(self.key_owner_evt), "key_broker": array_data(self.key_broker),
            "market": self.market.state(),
            "rules": {r.meta.id: [r.meta.state_version, r.state()] for r in self.rules},
            "params": {r.meta.id: self.params[r.meta.id] for r in self.rules},
        }

    def restore(self, data: dict[str, Any]) -> list[str]:
        """Take back ``state()`` under this engine's (current) parameters. Returns what differed, one line
        each, for the log: parameters that changed since the state was written, rules that are new (fresh
        state), and rule states of a version this code does not know (reset)."""
        self.reg = registry_from_data(data["registry"])
        notes: list[str] = []
        self.held = batch_from_data(data["held"]) if data["held"] is not None else None
        sus = batch_from_data(data["suspects"]) if data.get("suspects") is not None else None
        self.suspects = [sus.take(slice(k, k + 1)) for k in range(len(sus))] if sus is not None else []
        self.votes = [list(v) for v in data.get("votes", [])]
        self.late_rows = [batch_from_data(data["late_rows"])] if data.get("late_rows") is not None else []
        self.max_seen, self.day, self.vouched = data["max_seen"], data["day"], data.get("vouched")
        self.events_in, self.events_processed = data["events_in"], data["events_processed"]
        self.records = list(data["records"])
        self.key_owner_evt = from_array_data(data["key_owner_evt"])
        self.key_broker = from_array_data(data["key_broker"])
        self.market.restore(data["market"])
        saved, old_params = data["rules"], data.get("params", {})
        for r in self.rules:
            rid = r.meta.id
            if rid not in saved:
                notes.append(f"rule {rid} is new: it starts with a fresh state")
                continue
            version, state = saved[rid]
            if version != r.meta.state_version:
                notes.append(f"rule {rid}: state version {version} is not this code's ({r.meta.state_version}): "
                             "its state is reset")
                continue
            r.restore(state)
            for k, v in self.params[rid].items():
                before = old_params.get(rid, {}).get(k, v)
                if before != v:
                    notes.append(f"rule {rid}: {k} changed from {before!r} to {v!r} (the current configuration "
                                 "applies)")
        for rid in sorted(set(saved) - {r.meta.id for r in self.rules}):
            notes.append(f"rule {rid} is no longer configured: its state is dropped")
        return notes

    def close(self) -> None:
        """End of input: reject what no later event corroborated, release everything held back and finalise the
        open trading day."""
        self.settle(final=True)
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
                          order_id=part.order_id, owner=part.owner, broker=part.broker, ref_from=part.ref_from)
            self.market.update(seg)
            if self.on_segment is not None:
                self.on_segment(seg, part)
            drafts: list[AlertDraft] = []
            for r in self.rules:
                drafts.extend(r.evaluate(seg))
            wm = int(seg.ts[-1])
            for r in self.rules:
                drafts.extend(r.close(wm))
            self._emit(drafts)

    def _end_day(self) -> None:
        drafts: list[AlertDraft] = []
        if self.late_rows:  # the day's late events, in arrival order, to the rules that count a whole day
            late = Batch.concat(self.late_rows)
            self.late_rows = []
            mine = trading_day_index(late.ts) == self.day
            if mine.any():
                part = late.take(mine)
                seg = Segment(ts=part.ts, venue=part.venue, etype=part.etype, side=part.side, flags=part.flags,
                              price=part.price, qty=part.qty, key=part.account.astype(np.int64) * 4 + part.venue,
                              symbol=part.symbol, day=self.day, order_id=part.order_id, owner=part.owner,
                              broker=part.broker, ref_from=part.ref_from)
                for r in self.rules:
                    if r.meta.counts_late:
                        drafts.extend(r.evaluate(seg))
            if not mine.all():
                self.late_rows = [late.take(~mine)]
        for r in self.rules:
            drafts.extend(r.close_day(self.day))
        self._emit(drafts)
        self.market.forget_before(self.day)  # the day before this one is no longer needed by any alert

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
        if kind == "security":
            return {"venue": VENUES[ident & 3], "symbol": self.reg.symbols.names[ident >> 2]}
        return {"owner": self.reg.owners.names[ident]}

    def drain(self) -> list[dict[str, Any]]:
        """Alert states emitted since the last drain (raised and final), in emission order."""
        out, self.records = self.records, []
        return out

    def final_alerts(self) -> list[dict[str, Any]]:
        return list(self.finals.values())


def registry_data(reg: Registry) -> dict[str, list[str]]:
    """The interned names of a registry (ids are positions), as plain data."""
    return {k: list(getattr(reg, k).names) for k in ("accounts", "symbols", "owners", "brokers")}


def registry_from_data(d: dict[str, list[str]]) -> Registry:
    reg = Registry()
    for k in ("accounts", "symbols", "owners", "brokers"):
        names = d[k]
        if any(type(n) is not str for n in names):
            raise ValueError(f"registry {k}: names must be strings")
        interner = getattr(reg, k)
        interner.intern_list(list(names))
        if interner.names != names:
            raise ValueError(f"registry {k}: a name is repeated")
    return reg


def batch_data(b: Batch) -> dict[str, Any]:
    """A batch as plain data (its columns, see ``array_data``)."""
    return {k: array_data(v) for k, v in b.columns().items()}


def batch_from_data(d: dict[str, Any]) -> Batch:
    return Batch(**{k: from_array_data(v) for k, v in d.items()})


__all__ = ["Engine", "load_config", "ConfigError", "batch_data", "batch_from_data", "registry_data",
           "registry_from_data"]
