"""The background market of the synthetic trading day.

Pieces:

* :class:`Calendar` — the sessions of one trading day in Asia/Shanghai (UTC+8, fixed), one row per
  trading second: opening call auction 09:15–09:25 (cancels only until 09:20), continuous
  09:30–11:30 and 13:00–14:57, closing call auction 14:57–15:00.
* :class:`SymbolTable` — SSE 600000–603999, SZSE 000001–003999 and 300001–301999, BSE 830001–830250,
  each with a reference price and a heavy-tailed popularity.
* :class:`Background` — the accounts (each on one venue), their owners and brokers, capped
  heavy-tailed activity weights, and the order/cancel/trade stream generated one chunk of whole
  trading minutes at a time (so the day is never held in memory).
* :func:`index_events` — index levels every 3 seconds (every second during the Lingjun minute).
* :class:`EventBuf` — a small columnar builder used for index and scenario events.

Design of the background stream (all counts exact, all randomness from the seed):

* The ``events`` background events are spread over the 15,000 trading seconds with a U-shaped
  intraday profile (multinomial). Each second's events are split into orders, cancels and trades
  (continuous: 55/30/15 %; 09:15–09:20: orders and cancels; 09:20–09:25 and the closing auction:
  orders only; the auction uncross prints are not simulated, so trades only occur in the
  continuous sessions).
* A cancel or a trade in second *s* refers to a distinct order entered in the previous trading
  second (random pick), so every cancel carries the order id, price and quantity of a real earlier
  order of the same account, and a trade is a (partial) fill of one. When the previous second has
  too few orders the extra cancel/trade slots become orders (the mix shifts towards orders in very
  small simulations).
* Account activity weights are Pareto-distributed and capped (water-filling) so that no account is
  expected to exceed :data:`ACCOUNT_DAY_CAP` events a day and no owner :data:`OWNER_DAY_CAP`;
  order notional is capped at :data:`MAX_ORDER_NOTIONAL_YUAN`. Each chunk is checked while it is
  generated; :class:`BackgroundLimitError` is raised if a background account ever reached
  :data:`GUARD_ORDERS_PER_SECOND` orders+cancels in a calendar second (so fewer than twice that in
  any sliding second), :data:`GUARD_ORDERS_PER_DAY` in the day, or an owner sold
  :data:`GUARD_SELL_PER_MINUTE_YUAN` in a calendar minute (so less than twice that in any sliding
  60 s). With the caps these guards are many standard deviations away.

These numbers are simulator design choices, not exchange facts; the exchange thresholds the
background stays clear of are the published 300/s and 20,000/day (domain notes §1) and the
1,000,000,000-yuan one-minute sell amount used by the ``sell_burst_1m`` rule (a default of that
rule: the exchanges do not publish this threshold).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from surveil.events.batch import Registry
from surveil.events.schema import (
    CANCEL,
    F_AGGRESSOR,
    F_HAS_AGGRESSOR,
    F_HAS_ORDER_ID,
    F_HAS_PRICE,
    F_HAS_QTY,
    F_HAS_SEQ,
    F_ORDER_ID_INT,
    INDEX,
    NS_PER_SECOND,
    ORDER,
    SIDE_S,
    TRADE,
    VENUE_CODE,
    day_start_ns,
)
from surveil.sim.exceptions import BackgroundLimitError  # noqa: F401 - importable from here too

NS = NS_PER_SECOND
SSE, SZSE, BSE = VENUE_CODE["SSE"], VENUE_CODE["SZSE"], VENUE_CODE["BSE"]

#: expected background events per account per day (orders+cancels are ~85 % of them)
ACCOUNT_DAY_CAP = 9_000
#: expected background events per owner (manager) per day
OWNER_DAY_CAP = 150_000
#: largest background order notional (yuan); a trade is a fill of at most one order
MAX_ORDER_NOTIONAL_YUAN = 300_000
#: hard guards checked on every generated chunk (see the module docstring)
GUARD_ORDERS_PER_SECOND = 50
GUARD_ORDERS_PER_DAY = 12_000
GUARD_SELL_PER_MINUTE_YUAN = 200_000_000
#: background order ids are 12-digit integers from here on; scenario order ids start at 900000000001
BACKGROUND_OID_START = 100_000_000_001
SCENARIO_OID_START = 900_000_000_001
MAX_ACCOUNTS = 5_000_000

#: flag sets of the generated events
F_OC = F_HAS_PRICE | F_HAS_QTY | F_HAS_SEQ | F_HAS_ORDER_ID | F_ORDER_ID_INT
F_TRADE = F_OC | F_HAS_AGGRESSOR
F_INDEX = F_HAS_PRICE | F_HAS_SEQ

# session class of each trading second
CLS_OPEN_CANCEL = 0  # 09:15-09:20 opening call auction: orders and cancels
CLS_OPEN_NOCANCEL = 1  # 09:20-09:25 opening call auction: orders only
CLS_CONTINUOUS = 2  # 09:30-11:30, 13:00-14:57
CLS_CLOSE = 3  # 14:57-15:00 closing call auction: orders only


def hms(h: int, m: int, s: int = 0) -> int:
    return h * 3600 + m * 60 + s


#: (start, end) in seconds after local midnight, half-open, and the session class
SEGMENTS = (
    (hms(9, 15), hms(9, 20), CLS_OPEN_CANCEL),
    (hms(9, 20), hms(9, 25), CLS_OPEN_NOCANCEL),
    (hms(9, 30), hms(11, 30), CLS_CONTINUOUS),
    (hms(13, 0), hms(14, 57), CLS_CONTINUOUS),
    (hms(14, 57), hms(15, 0), CLS_CLOSE),
)


class Calendar:
    """The trading seconds of one day (Asia/Shanghai, fixed UTC+8)."""

    def __init__(self, date: str):
        try:
            d = _dt.date.fromisoformat(str(date))
        except ValueError:
            raise ValueError(f"date must be an ISO date YYYY-MM-DD, got {date!r}") from None
        self.date = d.isoformat()
        self.day_index = (d - _dt.date(1970, 1, 1)).days
        self.day_start = day_start_ns(self.day_index)
        secs = [np.arange(a, b, dtype=np.int64) for a, b, _ in SEGMENTS]
        self.sec_of_day = np.concatenate(secs)
        self.sec_class = np.concatenate([np.full(b - a, c, np.uint8) for a, b, c in SEGMENTS])
        self.sec_ts = self.day_start + self.sec_of_day * NS
        self.n_sec = len(self.sec_of_day)
        minutes, self.sec_minute = np.unique(self.sec_of_day // 60, return_inverse=True)
        self.n_min = len(minutes)
        #: first trading-second index of every trading minute, plus n_sec at the end
        self.minute_start = np.searchsorted(self.sec_minute, np.arange(self.n_min + 1))

    def ts(self, h: int, m: int, s: int = 0, ns: int = 0) -> int:
        """Nanosecond timestamp of a local wall-clock time of the day."""
        return self.day_start + hms(h, m, s) * NS + ns

    def continuous(self) -> list[tuple[int, int]]:
        return [(self.ts(9, 30), self.ts(11, 30)), (self.ts(13, 0), self.ts(14, 57))]

    def profile(self) -> np.ndarray:
        """Relative background activity of every trading second (U-shaped)."""
        t = self.sec_of_day.astype(np.float64)
        c = self.sec_class
        w = np.ones(self.n_sec)
        am = (c == CLS_CONTINUOUS) & (t < hms(12, 0))
        pm = (c == CLS_CONTINUOUS) & (t >= hms(12, 0))
        w[am] = 1.0 + 2.2 * np.exp(-(t[am] - hms(9, 30)) / 900.0) + 0.2 * np.exp(-(hms(11, 30) - t[am]) / 600.0)
        w[pm] = 1.0 + 0.4 * np.exp(-(t[pm] - hms(13, 0)) / 600.0) + 1.2 * np.exp(-(hms(14, 57) - t[pm]) / 1200.0)
        w[c == CLS_OPEN_CANCEL] = 0.5
        w[c == CLS_OPEN_NOCANCEL] = 0.25
        w[c == CLS_CLOSE] = 1.5
        return w / w.sum()


# --------------------------------------------------------------------------------------------
# columnar builder for index and scenario events

EVENT_COLS = (
    ("ts", np.int64), ("venue", np.uint8), ("etype", np.uint8), ("side", np.uint8), ("flags", np.uint8),
    ("price", np.int64), ("qty", np.int64), ("oid", np.uint64), ("account", np.int32),
    ("symbol", np.int32), ("owner", np.int32), ("broker", np.int32),
)
_COL_NAMES = tuple(n for n, _ in EVENT_COLS)


class EventBuf:
    """Accumulates events as column arrays; scalars are broadcast."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, ts, venue, etype, *, side=0, flags, price=0, qty=0, oid=0, account=-1, symbol=-1,
            owner=-1, broker=-1) -> None:
        ts = np.asarray(ts, dtype=np.int64).ravel()
        n = len(ts)
        vals = dict(ts=ts, venue=venue, etype=etype, side=side, flags=flags, price=price, qty=qty, oid=oid,
                    account=account, symbol=symbol, owner=owner, broker=broker)
        part = {}
        for name, dt in EVENT_COLS:
            a = np.asarray(vals[name], dtype=dt)
            part[name] = np.full(n, a, dtype=dt) if a.ndim == 0 else a.ravel()
            if len(part[name]) != n:
                raise ValueError(f"column {name}: {len(part[name])} values for {n} events")
        self.parts.append(part)

    def extend(self, other: EventBuf) -> None:
        self.parts.extend(other.parts)

    def __len__(self) -> int:
        return sum(len(p["ts"]) for p in self.parts)

    def arrays(self) -> dict[str, np.ndarray]:
        """All events as columns, stably sorted by ts."""
        if not self.parts:
            return {n: np.empty(0, dt) for n, dt in EVENT_COLS}
        cols = {n: np.concatenate([p[n] for p in self.parts]) for n in _COL_NAMES}
        order = np.argsort(cols["ts"], kind="stable")
        return {n: v[order] for n, v in cols.items()}


# --------------------------------------------------------------------------------------------
# symbols

@dataclass
class SymbolTable:
    codes: list[str]
    venue: np.ndarray  # uint8 per symbol
    ref_cents: np.ndarray  # int64 reference price in 0.01 yuan
    reg_id: np.ndarray  # int32 registry id
    offsets: dict[int, tuple[int, int]]  # venue -> (first index, count)
    cdf: dict[int, np.ndarray]  # venue -> popularity cdf over its symbols

    @classmethod
    def build(cls, reg: Registry, rng: np.random.Generator) -> SymbolTable:
        per_venue = {
            SSE: [str(600000 + i) for i in range(4000)],
            SZSE: [f"{i:06d}" for i in range(1, 4000)] + [str(300000 + i) for i in range(1, 2000)],
            BSE: [str(830000 + i) for i in range(1, 251)],
        }
        codes: list[str] = []
        venue_parts, offsets, cdf = [], {}, {}
        for v in (SSE, SZSE, BSE):
            lst = per_venue[v]
            offsets[v] = (len(codes), len(lst))
            codes.extend(lst)
            venue_parts.append(np.full(len(lst), v, np.uint8))
            rank = rng.permutation(len(lst))
            w = 1.0 / (rank + 10.0)
            c = np.cumsum(w)
            cdf[v] = c / c[-1]
        ref = np.exp(rng.normal(np.log(1200.0), 0.75, len(codes)))
        ref_cents = np.clip(np.rint(ref), 200, 30_000).astype(np.int64)
        reg_id = reg.symbols.intern_list(codes)
        return cls(codes, np.concatenate(venue_parts), ref_cents, reg_id, offsets, cdf)

    def sample(self, rng: np.random.Generator, venue: np.ndarray) -> np.ndarray:
        """A symbol index (into ``codes``) for each venue code, by popularity."""
        u = rng.random(len(venue))
        out = np.empty(len(venue), np.int64)
        for v, (off, n) in self.offsets.items():
            m = venue == v
            if m.any():
                out[m] = off + np.minimum(np.searchsorted(self.cdf[v], u[m], side="right"), n - 1)
        return out

    def of_venue(self, v: int) -> np.ndarray:
        off, n = self.offsets[v]
        return np.arange(off, off + n)


# --------------------------------------------------------------------------------------------
# index levels

#: (venue, symbol, level at the open, relative move over the Lingjun minute, SZSE-style shape)
INDEXES = (
    (SSE, "000001", 2886.59, None),  # 上证综指: 2886.59 -> 2868.07 exactly
    (SSE, "000688", 780.00, -0.0080),  # 科创50
    (SZSE, "399001", 8957.00, None),  # 深证成指: 8957.00 -> 8875.00
    (SZSE, "399106", 1650.00, -0.0085),  # 深证综指
    (SZSE, "399006", 1700.00, -0.0110),  # 创业板指
)
LINGJUN_INDEX_END = {"000001": 2868.07, "399001": 8875.00}
INDEX_STEP_SIGMA = 0.00012  # log-return per 3 s tick


def index_events(cal: Calendar, reg: Registry, rng: np.random.Generator, lingjun: bool) -> EventBuf:
    """Index levels every 3 s of the sessions; every second 09:30:00–09:31:00 when ``lingjun``.

    Before 09:30 the level stays at its opening value; from 09:30 it is a small random walk. With
    the Lingjun scenario the main indexes fall over 09:30:00–09:31:00 (上证综指 2886.59 → 2868.07,
    深证成指 8957.00 → 8875.00, the others proportionally, SZSE mostly by 09:30:42)."""
    buf = EventBuf()
    secs = cal.sec_of_day
    tick = secs[secs % 3 == 0]
    burst_lo, burst_hi = hms(9, 30), hms(9, 31)
    if lingjun:
        tick = np.union1d(tick, np.arange(burst_lo, burst_hi + 1))
    ts = cal.day_start + tick * NS
    for venue, sym, start, rel in INDEXES:
        level = np.full(len(tick), start)
        steps = rng.normal(0.0, INDEX_STEP_SIGMA, len(tick))
        if lingjun:
            end = LINGJUN_INDEX_END.get(sym, start * (1 + (rel or 0.0)))
            b = (tick >= burst_lo) & (tick <= burst_hi)
            frac = (tick[b] - burst_lo) / 60.0
            shape = np.minimum(1.0, frac / 0.7) ** 0.8 if venue == SZSE else frac
            noise = rng.normal(0.0, abs(end - start) * 0.04, b.sum()) * np.sin(np.pi * frac)
            level[b] = start + (end - start) * shape + noise
            level[np.flatnonzero(b)[0]] = start
            level[np.flatnonzero(b)[-1]] = end
            after = tick > burst_hi
            walk = np.exp(np.cumsum(steps[after]))
            level[after] = end * walk
        else:
            after = tick > burst_lo
            walk = np.exp(np.cumsum(steps[after]))
            level[after] = start * walk
        price = np.rint(level * 100).astype(np.int64) * 100  # 2 decimals, in 1/10000 points
        buf.add(ts, venue, INDEX, flags=F_INDEX, price=price, symbol=reg.symbols.intern(sym))
    return buf


# --------------------------------------------------------------------------------------------
# order id encoding

_DIGITS4 = np.array([f"{i:04d}".encode() for i in range(10_000)], dtype="S4").view(np.uint32)


def oid_bytes(oid: np.ndarray, has: np.ndarray | None = None) -> np.ndarray:
    """uint64 order ids as the ``S24`` decimal strings of the batch format (b"" where ``has`` is False)."""
    oid = np.asarray(oid, dtype=np.uint64)
    if has is None:
        has = np.ones(len(oid), bool)
    lo12, hi12 = 100_000_000_000, 1_000_000_000_000
    if np.all(~has | ((oid >= lo12) & (oid < hi12))):
        words = np.zeros((len(oid), 6), np.uint32)
        words[:, 0] = _DIGITS4[(oid // 100_000_000).astype(np.int64)]
        words[:, 1] = _DIGITS4[((oid // 10_000) % 10_000).astype(np.int64)]
        words[:, 2] = _DIGITS4[(oid % 10_000).astype(np.int64)]
        words[~has] = 0
        return words.view("S24").ravel()
    out = oid.astype("S24")
    out[~has] = b""
    return out


# --------------------------------------------------------------------------------------------
# accounts and the background stream

@dataclass
class SimAccount:
    venue: str
    account: str
    owner: str
    broker: str
    reported: bool


_PREFIX = {SSE: "A{:07d}", SZSE: "01{:08d}", BSE: "08{:08d}"}
BROKERS = tuple(f"B{i:03d}" for i in range(1, 51))


def _cap_weights(raw: np.ndarray, owner: np.ndarray, n_owner: int, n_events: int) -> np.ndarray:
    """Normalised weights with no account above ACCOUNT_DAY_CAP and no owner above OWNER_DAY_CAP
    expected events (water-filling)."""
    w = raw / raw.sum()
    if n_events == 0:
        return w
    a_cap = ACCOUNT_DAY_CAP / n_events
    o_cap = OWNER_DAY_CAP / n_events
    for _ in range(500):
        w = np.minimum(w, a_cap)
        osum = np.bincount(owner, w, minlength=n_owner)
        scale = np.minimum(1.0, o_cap / np.maximum(osum, 1e-300))
        w = w * scale[owner]
        w = w / w.sum()
        if w.max() <= a_cap * 1.0005 and np.bincount(owner, w, minlength=n_owner).max() <= o_cap * 1.0005:
            return w
    raise ValueError("cannot spread the background events under the per-account caps: use more accounts")


class Background:
    """Background accounts and the chunked order/cancel/trade stream."""

    def __init__(self, cal: Calendar, reg: Registry, syms: SymbolTable, n_accounts: int, n_events: int,
                 setup_rng: np.random.Generator, count_rng: np.random.Generator):
        if n_accounts < 1 or n_accounts > MAX_ACCOUNTS:
            raise ValueError(f"accounts must be between 1 and {MAX_ACCOUNTS:,}, got {n_accounts}")
        if n_events < 0:
            raise ValueError(f"events must be >= 0, got {n_events}")
        if n_events > 0.5 * n_accounts * ACCOUNT_DAY_CAP:
            most = int(0.5 * n_accounts * ACCOUNT_DAY_CAP)
            raise ValueError(
                f"events={n_events:,} is too many for accounts={n_accounts:,}: each background account is capped "
                f"at about {ACCOUNT_DAY_CAP:,} events a day, so use at most {most:,} events or more accounts")
        self.cal, self.reg, self.syms = cal, reg, syms
        self.n_acc, self.n_events = n_accounts, n_events
        rng = setup_rng
        n = n_accounts
        venue = rng.choice(3, size=n, p=[0.48, 0.48, 0.04]).astype(np.uint8)
        number = np.zeros(n, np.int64)
        for v in (SSE, SZSE, BSE):
            m = venue == v
            number[m] = np.arange(1, m.sum() + 1)
        fmt = [_PREFIX[SSE], _PREFIX[SZSE], _PREFIX[BSE]]
        acct_str = [fmt[v].format(k) for v, k in zip(venue.tolist(), number.tolist(), strict=True)]
        # owners: most accounts are their own owner; ~6 % belong to managers M00001.. (cross-venue)
        managed = rng.random(n) < (0.06 if n >= 50 else 0.0)
        n_managed = int(managed.sum())
        n_mgr = max(1, n_managed // 12)
        mgr_p = 1.0 / np.arange(1, n_mgr + 1) ** 0.8
        mgr_of = rng.choice(n_mgr, size=n_managed, p=mgr_p / mgr_p.sum())
        owner_local = np.arange(n, dtype=np.int64)
        owner_local[managed] = n + mgr_of
        mgr_str = [f"M{k + 1:05d}" for k in range(n_mgr)]
        owner_str = list(acct_str)
        for i, k in zip(np.flatnonzero(managed).tolist(), mgr_of.tolist(), strict=True):
            owner_str[i] = mgr_str[k]
        bp = 1.0 / np.arange(1, len(BROKERS) + 1) ** 0.8
        broker = rng.choice(len(BROKERS), size=n, p=bp / bp.sum())
        raw = rng.pareto(1.16, n) + 1.0
        raw[managed] *= 3.0
        top = raw >= np.quantile(raw, 0.98)
        reported = np.where(managed, rng.random(n) < 0.6, np.where(top, rng.random(n) < 0.5, rng.random(n) < 0.01))
        self.weights = _cap_weights(raw, owner_local, n + n_mgr, n_events)
        cdf = np.cumsum(self.weights)
        self.cdf = cdf / cdf[-1]

        self.venue = venue
        self.acct_str, self.owner_str = acct_str, owner_str
        self.broker_idx = broker
        self.reported = reported
        self.acct_reg = reg.accounts.intern_list(acct_str)
        self.owner_reg = reg.owners.intern_list(owner_str)
        broker_reg = reg.brokers.intern_list(list(BROKERS))
        self.broker_reg = broker_reg[broker]

        # events per trading second and their split into orders / cancels / trades
        p = cal.profile()
        per_sec = count_rng.multinomial(n_events, p) if n_events else np.zeros(cal.n_sec, np.int64)
        cls = cal.sec_class
        pc = np.where(cls == CLS_CONTINUOUS, 0.30, np.where(cls == CLS_OPEN_CANCEL, 0.35, 0.0))
        pt = np.where(cls == CLS_CONTINUOUS, 0.15 / 0.70, 0.0)
        n_c = count_rng.binomial(per_sec, pc)
        n_t = count_rng.binomial(per_sec - n_c, pt)
        n_o = per_sec - n_c - n_t
        O, C, T = n_o.tolist(), n_c.tolist(), n_t.tolist()
        prev = 0
        for i in range(len(O)):  # a cancel or trade needs a distinct order of the previous second
            c, t = C[i], T[i]
            if c + t > prev:
                c2 = min(c, prev)
                t2 = min(t, prev - c2)
                O[i] += (c - c2) + (t - t2)
                C[i], T[i] = c2, t2
            prev = O[i]
        self.n_o = np.array(O, np.int64)
        self.n_c = np.array(C, np.int64)
        self.n_t = np.array(T, np.int64)
        self.per_sec = per_sec
        self.next_oid = BACKGROUND_OID_START
        self.day_oc = np.zeros(n, np.int64)

    def accounts(self) -> Iterator[SimAccount]:
        venues = ("SSE", "SZSE", "BSE")
        for v, a, o, b, r in zip(self.venue.tolist(), self.acct_str, self.owner_str, self.broker_idx.tolist(),
                                 self.reported.tolist(), strict=True):
            yield SimAccount(venues[v], a, o, BROKERS[b], bool(r))

    def chunk_bounds(self, target: int = 1_000_000) -> list[tuple[int, int]]:
        """Second ranges [s0, s1) made of whole trading minutes, each holding about ``target`` events."""
        cal = self.cal
        per_min = np.add.reduceat(self.per_sec, cal.minute_start[:-1])
        bounds, start_min, acc = [], 0, 0
        for m, c in enumerate(per_min.tolist()):
            acc += c
            if acc >= target:
                bounds.append((int(cal.minute_start[start_min]), int(cal.minute_start[m + 1])))
                start_min, acc = m + 1, 0
        if start_min < cal.n_min:
            bounds.append((int(cal.minute_start[start_min]), cal.n_sec))
        return bounds

    def chunks(self, seed_seq: np.random.SeedSequence, bounds: list[tuple[int, int]]
               ) -> Iterator[tuple[int, int, np.random.Generator]]:
        """(first second, end second, generator) of every chunk; call :meth:`make_chunk` with them in order."""
        self._carry = None
        for (s0, s1), ss in zip(bounds, seed_seq.spawn(len(bounds)), strict=True):
            yield s0, s1, np.random.default_rng(ss)

    def make_chunk(self, rng: np.random.Generator, s0: int, s1: int) -> dict[str, np.ndarray]:
        """Background events of trading seconds [s0, s1) (unsorted columns); chunks must come in order."""
        cols, self._carry = self._chunk(rng, s0, s1, self._carry)
        return cols

    def _chunk(self, rng: np.random.Generator, s0: int, s1: int, carry):
        cal, syms = self.cal, self.syms
        k = s1 - s0
        O, C, T = self.n_o[s0:s1], self.n_c[s0:s1], self.n_t[s0:s1]
        base = cal.sec_ts[s0:s1]
        n_o = int(O.sum())
        # ---- orders, in time order
        loc = np.repeat(np.arange(k), O)
        ts_o = base[loc] + rng.integers(0, NS, n_o)
        order = np.argsort(ts_o, kind="stable")
        ts_o = ts_o[order]
        acct = np.minimum(np.searchsorted(self.cdf, rng.random(n_o), side="right"), self.n_acc - 1)
        venue = self.venue[acct]
        sym = syms.sample(rng, venue)
        side = (1 + (rng.random(n_o) < 0.5)).astype(np.uint8)
        ref = syms.ref_cents[sym]
        price = np.maximum(1, np.rint(ref * (1.0 + 0.004 * rng.standard_normal(n_o)))).astype(np.int64)
        lots = np.minimum(rng.geometric(0.08, n_o), np.maximum(1, MAX_ORDER_NOTIONAL_YUAN // price))
        oid = np.arange(self.next_oid, self.next_oid + n_o, dtype=np.uint64)
        self.next_oid += n_o
        orders = dict(acct=acct, sym=sym, side=side, price=price, lots=lots, oid=oid, ts=ts_o)
        # ---- pool: carried last second of the previous chunk + this chunk's orders
        if carry is None:
            carry = {key: v[:0] for key, v in orders.items()}
        n_carry = len(carry["ts"])
        pool = {key: np.concatenate([carry[key], orders[key]]) for key in orders}
        o_ext = np.concatenate([[n_carry], O])  # orders of "previous second" index e (e = local second + 1)
        starts = np.concatenate([[0], np.cumsum(o_ext)])
        ext_loc = np.repeat(np.arange(k + 1), o_ext)
        perm = np.argsort(ext_loc + rng.random(len(ext_loc)), kind="stable")  # random order within a second

        def within(counts):
            tot = int(counts.sum())
            loc_ = np.repeat(np.arange(k), counts)
            first = np.concatenate([[0], np.cumsum(counts)[:-1]])
            return loc_, np.arange(tot) - first[loc_]

        c_loc, c_i = within(C)
        c_ref = perm[starts[c_loc] + c_i]  # previous second of local j is ext index j
        t_loc, t_i = within(T)
        t_ref = perm[starts[t_loc] + o_ext[t_loc] - 1 - t_i]
        ts_c = base[c_loc] + rng.integers(0, NS, len(c_loc))
        ts_t = base[t_loc] + rng.integers(0, NS, len(t_loc))
        t_lots = np.maximum(1, np.floor(pool["lots"][t_ref] * rng.uniform(0.25, 1.0, len(t_ref)))).astype(np.int64)
        aggr = rng.random(len(t_ref)) < 0.5
        new_carry = {key: v[starts[k]:] for key, v in pool.items()}

        # ---- guards (background only): per account-second, per account-day, per owner-minute sells
        oc_acct = np.concatenate([acct, pool["acct"][c_ref]])
        if len(oc_acct):
            oc_sec = np.concatenate([loc[order], c_loc]).astype(np.int64)
            _, cnt = np.unique(oc_sec * self.n_acc + oc_acct, return_counts=True)
            if cnt.max() >= GUARD_ORDERS_PER_SECOND:
                raise BackgroundLimitError(f"a background account sent {cnt.max()} orders+cancels in one second")
            self.day_oc += np.bincount(oc_acct, minlength=self.n_acc)
            if self.day_oc.max() >= GUARD_ORDERS_PER_DAY:
                raise BackgroundLimitError(f"a background account sent {self.day_oc.max()} orders+cancels in a day")
        sell = pool["side"][t_ref] == SIDE_S
        if sell.any():
            s_owner = self.owner_reg[pool["acct"][t_ref][sell]].astype(np.int64)
            s_min = cal.sec_minute[s0 + t_loc[sell]].astype(np.int64)
            s_val = (pool["price"][t_ref][sell] * t_lots[sell]).astype(np.float64)  # yuan
            _, inv = np.unique(s_min * (len(self.reg.owners) + 1) + s_owner, return_inverse=True)
            top = np.bincount(inv, s_val).max()
            if top >= GUARD_SELL_PER_MINUTE_YUAN:
                raise BackgroundLimitError(f"a background owner sold {top:,.0f} yuan in one minute")

        # ---- assemble (one fancy-index per column, no intermediate copies)
        o_idx = np.arange(n_carry, n_carry + n_o)
        idx = np.concatenate([o_idx, c_ref, t_ref])
        a = pool["acct"][idx]
        n_c, n_t = len(c_ref), len(t_ref)
        etype = np.repeat(np.array([ORDER, CANCEL, TRADE], np.uint8), [n_o, n_c, n_t])
        flags = np.concatenate([np.full(n_o + n_c, F_OC, np.uint8),
                                np.where(aggr, F_TRADE | F_AGGRESSOR, F_TRADE).astype(np.uint8)])
        qty = np.concatenate([lots, pool["lots"][c_ref], t_lots]) * 100
        cols = dict(ts=np.concatenate([ts_o, ts_c, ts_t]), venue=self.venue[a], etype=etype,
                    side=pool["side"][idx], flags=flags, price=pool["price"][idx] * 100, qty=qty,
                    oid=pool["oid"][idx], account=self.acct_reg[a], symbol=syms.reg_id[pool["sym"][idx]],
                    owner=np.full(len(a), -1, np.int32), broker=self.broker_reg[a])  # owners: reference data only
        return cols, new_carry
