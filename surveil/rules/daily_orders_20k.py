"""daily_orders_20k — 20,000 or more orders + cancels by one account in one trading day.

Regulatory text: the exchanges' high-frequency definition (CSRC rules in force
2024-10-08; SSE/SZSE/BSE implementation rules in force 2025-07-07): one account's
order and cancel messages reaching 20,000 or more in one trading day
(单日最高申报笔数达到20000笔以上; ">=" ). Trades and index levels do not count. The
trading day is the calendar day in Asia/Shanghai; counts reset each day.

Subject: (venue, account). Lifecycle: one alert per account per day, raised at the
20,000th message; its final value (at the end of the day) is the day's count. Its window
is the trading day, 00:00-24:00 Asia/Shanghai.

Evidence: when the threshold was reached and by which order id, and (final) the day's
orders and cancels separately.

Known false positives: market makers; reported high-frequency accounts (a
classification with a reporting duty, not misconduct).
"""

from __future__ import annotations

import numpy as np

from surveil.events.batch import _svev  # the compiled counting (None without it: the numpy code below)
from surveil.events.schema import CANCEL, NS_PER_SECOND, ORDER, day_start_ns, ns_to_iso
from surveil.rules.base import (
    HFT_REFERENCES,
    LARGE_SEGMENT,
    AlertDraft,
    Inputs,
    Param,
    Rule,
    RuleMeta,
    Segment,
    account_entry,
    array_data,
    from_array_data,
    grow,
    large_segment,
    positive,
    series,
)

META = RuleMeta(
    id="daily_orders_20k",
    version=1,
    title="20,000 or more orders+cancels in one trading day",
    description=__doc__.split("\n\n")[0],
    references=HFT_REFERENCES,
    params=(
        Param("threshold", 20_000, int, True, "exchange rules: 单日最高申报笔数达到20000笔以上 (>=)",
              "orders+cancels of one account in one trading day", positive),
    ),
    false_positives=("market makers", "reported high-frequency accounts (reporting duty, not misconduct)"),
    key="account",
    inputs=Inputs(types=("order", "cancel"), fields=("ts", "venue", "type", "account", "order_id")),
    severity="medium",
    measure="watch",
    chart="daily_count",
    counts_late=True,
)


class DailyOrders20k(Rule):
    meta = META
    #: large segments of at least this many messages are counted per account (see process)
    BULK_MIN = LARGE_SEGMENT

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.threshold = int(params["threshold"])
        self.orders = np.zeros(0, np.int64)
        self.cancels = np.zeros(0, np.int64)
        self.raised: dict[int, dict] = {}

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"orders": array_data(self.orders), "cancels": array_data(self.cancels),
                "raised": list(self.raised.values())}

    def restore(self, data: dict) -> None:
        self.orders, self.cancels = from_array_data(data["orders"]), from_array_data(data["cancels"])
        self.raised = {int(st["key"]): st for st in data["raised"]}

    def open_alerts(self) -> int:
        return len(self.raised)

    def activity(self, key: int | None) -> dict[str, int]:
        seen = key is not None and key < len(self.orders)
        orders = int(self.orders[key]) if seen else 0
        cancels = int(self.cancels[key]) if seen else 0
        return {"orders": orders, "cancels": cancels, "messages": orders + cancels}

    @classmethod
    def suggest(cls, alert: dict, params: dict) -> tuple[str, str]:
        return "watch", f"{alert['value']} orders+cancels in the day (high-frequency classification)"

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, seg: Segment) -> list[AlertDraft]:
        if _svev is not None:
            return self._process_compiled(seg)
        is_o = seg.etype == ORDER
        is_c = seg.etype == CANCEL
        m = is_o | is_c
        if not m.any():
            return []
        k = seg.key[m]
        top = int(k.max()) + 1
        self.orders = grow(self.orders, top)
        self.cancels = grow(self.cancels, len(self.orders))
        size = len(self.orders)
        if large_segment(len(k), size, self.BULK_MIN):
            # count per account (bincount) instead of per event (gathers and np.add.at)
            before = self.orders + self.cancels  # the day's count before this segment, per account
            self.orders += np.bincount(seg.key[is_o], minlength=size)
            self.cancels += np.bincount(seg.key[is_c], minlength=size)
            crossed = np.flatnonzero((before < self.threshold) & (self.orders + self.cancels >= self.threshold))
        else:
            before = self.orders[k] + self.cancels[k]  # the day's count before this segment, per event
            np.add.at(self.orders, seg.key[is_o], 1)
            np.add.at(self.cancels, seg.key[is_c], 1)
            may = before < self.threshold
            crossed = np.unique(k[may][self.orders[k[may]] + self.cancels[k[may]] >= self.threshold])
        out = []
        if len(crossed):
            rows = np.flatnonzero(m)
            for key in crossed.tolist():
                pos = np.flatnonzero(k == key)  # every message of the account in the segment
                start = int(self.orders[key] + self.cancels[key]) - len(pos)  # its count before the segment
                out.append(self._raise(seg, key, int(rows[pos[self.threshold - start - 1]])))
        return out

    def _process_compiled(self, seg: Segment) -> list[AlertDraft]:
        """``process`` in one pass of compiled code (``_svev.count_day``): each order or cancel counted for its
        account, the rows that make an account reach the threshold (its threshold-th message of the day) noted."""
        n = len(seg.key)
        if not n:
            return []
        key = np.ascontiguousarray(seg.key, np.int64)
        self.orders = grow(self.orders, int(key.max()) + 1)
        self.cancels = grow(self.cancels, len(self.orders))
        crossed = np.empty(n, np.int64)
        m = _svev.count_day(key, np.ascontiguousarray(seg.etype, np.uint8), self.orders, self.cancels, self.threshold,
                            ORDER, CANCEL, crossed)
        rows = crossed[:m]
        keys = key[rows]
        order = np.argsort(keys)  # in account order, as the numpy code (one crossing per account at most)
        return [self._raise(seg, k, r) for k, r in zip(keys[order].tolist(), rows[order].tolist())]

    def _raise(self, seg: Segment, key: int, row: int) -> AlertDraft:
        st = {"key": key, "at": int(seg.ts[row]), "order_id": seg.order_id_of(np.array([row]))[0]}
        self.raised[key] = st
        return self._draft(st, seg.day, "raised", self.threshold)

    def close_day(self, day: int) -> list[AlertDraft]:
        out = []
        for key in sorted(self.raised):
            st = self.raised[key]
            st["orders"] = int(self.orders[key])
            st["cancels"] = int(self.cancels[key])
            out.append(self._draft(st, day, "final", st["orders"] + st["cancels"]))
        self.raised = {}
        self.orders[:] = 0
        self.cancels[:] = 0
        return out

    def _draft(self, st: dict, day: int, status: str, value: int) -> AlertDraft:
        info = self.ctx.key_info(st["key"], st["at"])  # as of the event that reached the threshold
        ev = {"threshold_reached_at": st["at"], "threshold_reached_at_iso": ns_to_iso(st["at"]),
              "threshold_message_order_id": st["order_id"],
              "broker": info.get("broker"), "owner": info.get("owner"), "reported": info.get("reported"),
              "sample_order_ids": [st["order_id"]] if st["order_id"] is not None else []}
        if status == "final":
            ev.update({"orders": st["orders"], "cancels": st["cancels"], "day_count": value})
        ev["accounts"] = [account_entry(info, value, 1.0)]
        ev["at"] = st["at"]  # when the day's count reached the threshold (the alert's window is the whole day)
        ev["series"] = series("messages", [[day_start_ns(day), value]], 86_400 * NS_PER_SECOND)
        return AlertDraft(rule=META.id, rule_version=META.version, subject=("account", st["key"]), trading_day=day,
                          window_start=day_start_ns(day), window_end=day_start_ns(day + 1), value=value,
                          threshold=self.threshold,
                          severity="medium", status=status, evidence=ev)


RULE = DailyOrders20k
