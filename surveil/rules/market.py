"""Market-wide context of one trading day: traded value per second and index levels.

Small and broadcast (architecture.md §5): rules read it to put an alert in context
(the whole market's traded value in a window, the index path during a burst).
Market traded value counts each execution once, on its sell side (``trade`` events
with side ``S``); it is kept per second of the day, so a window's market value covers
the whole seconds that the window touches.
"""

from __future__ import annotations

import numpy as np

from surveil.events.schema import INDEX, NS_PER_SECOND, PRICE_SCALE, SIDE_S, TRADE, day_start_ns
from surveil.rules.base import Segment

SECONDS_PER_DAY = 86_400


class MarketContext:
    def __init__(self) -> None:
        self.day: int | None = None
        self.sell_value = np.zeros(SECONDS_PER_DAY, np.int64)  # units of 1/10000 yuan
        self._idx_chunks: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}

    def start_day(self, day: int) -> None:
        self.day = day
        self.sell_value[:] = 0
        self._idx_chunks = {}

    def update(self, seg: Segment) -> None:
        if self.day != seg.day:
            self.start_day(seg.day)
        base = day_start_ns(seg.day)
        m = (seg.etype == TRADE) & (seg.side == SIDE_S)
        if m.any():
            sec = (seg.ts[m] - base) // NS_PER_SECOND
            val = seg.price[m] * seg.qty[m]
            starts = np.flatnonzero(np.r_[True, sec[1:] != sec[:-1]])
            self.sell_value[sec[starts]] += np.add.reduceat(val, starts)
        mi = seg.etype == INDEX
        if mi.any():
            ts, ven, sym, lvl = seg.ts[mi], seg.venue[mi], seg.symbol[mi], seg.price[mi]
            for v, s in set(zip(ven.tolist(), sym.tolist())):
                sel = (ven == v) & (sym == s)
                self._idx_chunks.setdefault((v, s), []).append((ts[sel], lvl[sel]))

    def market_value(self, start_ns: int, end_ns: int) -> tuple[int, int, int]:
        """(value units, first second start ns, last second end ns) over the seconds touching [start, end]."""
        base = day_start_ns(self.day) if self.day is not None else 0
        a = max(0, (start_ns - base) // NS_PER_SECOND)
        b = min(SECONDS_PER_DAY - 1, (end_ns - base) // NS_PER_SECOND)
        return int(self.sell_value[a:b + 1].sum()), base + a * NS_PER_SECOND, base + (b + 1) * NS_PER_SECOND

    def index_path(self, venue: int, symbol: int, start_ns: int, end_ns: int) -> dict | None:
        chunks = self._idx_chunks.get((venue, symbol))
        if not chunks:
            return None
        ts = np.concatenate([c[0] for c in chunks])
        lv = np.concatenate([c[1] for c in chunks])
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
