"""Market-wide context of one trading day: traded value per second and index levels.

Small and broadcast (docs/architecture.md §5): rules read it to put an alert in context
(the whole market's traded value in a window, the index path during a burst).
Market traded value counts each execution once, on its sell side (``trade`` events
with side ``S``); it is kept per second of the day, so a window's market value covers
the whole seconds that the window touches.
"""

from __future__ import annotations

import numpy as np

from surveil.events.schema import INDEX, NS_PER_SECOND, PRICE_SCALE, SIDE_S, TRADE, day_start_ns
from surveil.rules.base import Segment, array_data, from_array_data

SECONDS_PER_DAY = 86_400


class _Day:
    __slots__ = ("sell_value", "index")

    def __init__(self) -> None:
        self.sell_value = np.zeros(SECONDS_PER_DAY, np.int64)  # units of 1/10000 yuan
        self.index: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}

    def to_data(self) -> dict:
        # the seconds with a value only (most of a day's 86,400 seconds are outside trading hours)
        at = np.flatnonzero(self.sell_value)
        return {"sell_at": array_data(at.astype(np.int32)), "sell": array_data(self.sell_value[at]),
                "index": [[v, s, [[array_data(t), array_data(x)] for t, x in chunks]]
                          for (v, s), chunks in self.index.items()]}

    @classmethod
    def from_data(cls, d: dict) -> _Day:
        day = cls()
        day.sell_value[from_array_data(d["sell_at"])] = from_array_data(d["sell"])
        day.index = {(v, s): [(from_array_data(t), from_array_data(x)) for t, x in chunks]
                     for v, s, chunks in d["index"]}
        return day


class MarketContext:
    """Per trading day: sell-side traded value per second and index levels.

    Fed either from the events themselves (``update``, in-process) or from contributions that
    partition workers send (``add_seconds``, ``add_index``, in the stream workers); sums are
    integers, so both give the same figures.
    """

    def __init__(self, from_events: bool = True) -> None:
        self.from_events = from_events
        self.days: dict[int, _Day] = {}

    def state(self) -> dict:
        return {"days": [[day, d.to_data()] for day, d in self.days.items()]}

    def restore(self, data: dict) -> None:
        self.days = {int(day): _Day.from_data(d) for day, d in data["days"]}

    def _day(self, day: int) -> _Day:
        d = self.days.get(day)
        if d is None:
            d = self.days[day] = _Day()
        return d

    def forget_before(self, day: int) -> None:
        """Drop the days before ``day`` (the engine calls it when a day is over: its alerts are final). Days
        ahead of the engine's are kept, however many: in a stream worker the owner stage receives the market
        contributions of feed partitions that may be days ahead of its watermark (a backlog), and the alerts of
        the day it is still in need that day's context."""
        for old in [d for d in self.days if d < day]:
            del self.days[old]

    @staticmethod
    def seconds_of(seg: Segment, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(second of day, sell value) sums of a segment's sell-side trades (``rows``: their row numbers, when
        the caller has them)."""
        m = np.flatnonzero((seg.etype == TRADE) & (seg.side == SIDE_S)) if rows is None else rows
        if not len(m):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        sec = (seg.ts[m] - day_start_ns(seg.day)) // NS_PER_SECOND
        val = seg.price[m] * seg.qty[m]
        starts = np.flatnonzero(np.r_[True, sec[1:] != sec[:-1]])
        return sec[starts], np.add.reduceat(val, starts)

    def update(self, seg: Segment) -> None:
        if not self.from_events:
            return
        secs, vals = self.seconds_of(seg)
        self.add_seconds(seg.day, secs, vals)
        mi = seg.etype == INDEX
        if mi.any():
            self.add_index(seg.day, seg.venue[mi], seg.symbol[mi], seg.ts[mi], seg.price[mi])

    def add_seconds(self, day: int, secs: np.ndarray, vals: np.ndarray) -> None:
        if len(secs):
            np.add.at(self._day(day).sell_value, secs, vals)

    def add_index(self, day: int, venue: np.ndarray, symbol: np.ndarray, ts: np.ndarray, level: np.ndarray) -> None:
        d = self._day(day)
        for v, s in set(zip(venue.tolist(), symbol.tolist())):
            sel = (venue == v) & (symbol == s)
            d.index.setdefault((v, s), []).append((ts[sel], level[sel]))

    def market_value(self, day: int, start_ns: int, end_ns: int) -> tuple[int, int, int]:
        """(value units, first second start ns, last second end ns) over the seconds touching [start, end]."""
        base = day_start_ns(day)
        a = max(0, (start_ns - base) // NS_PER_SECOND)
        b = min(SECONDS_PER_DAY - 1, (end_ns - base) // NS_PER_SECOND)
        d = self.days.get(day)
        total = int(d.sell_value[a:b + 1].sum()) if d else 0
        return total, base + a * NS_PER_SECOND, base + (b + 1) * NS_PER_SECOND

    def index_path(self, day: int, venue: int, symbol: int, start_ns: int, end_ns: int) -> dict | None:
        d = self.days.get(day)
        chunks = d.index.get((venue, symbol)) if d else None
        if not chunks:
            return None
        ts = np.concatenate([c[0] for c in chunks])
        lv = np.concatenate([c[1] for c in chunks])
        if len(chunks) > 1:
            order = np.argsort(ts, kind="stable")
            ts, lv = ts[order], lv[order]
            d.index[(venue, symbol)] = [(ts, lv)]
        i0 = np.searchsorted(ts, start_ns, "right") - 1  # last level at or before the start
        i1 = np.searchsorted(ts, end_ns, "right") - 1
        if i1 < 0:
            return None
        i0 = max(i0, 0)
        window = lv[i0:i1 + 1]
        start, end, low = int(lv[i0]), int(lv[i1]), int(window.min())
        return {
            "level_at_start": start / PRICE_SCALE,
            "level_at_end": end / PRICE_SCALE,
            "min_level": low / PRICE_SCALE,
            "change_pct": round((end - start) * 100 / start, 4),
            "max_drop_pct": round((start - low) * 100 / start, 4),
            "levels": [[int(t), int(x) / PRICE_SCALE] for t, x in zip(ts[i0:i1 + 1].tolist(), window.tolist())][:600],
        }
