"""A small hand-written trading day whose ids are HTML and script: for the tests that every surface escapes.

``write_day(dir)`` writes ``day.jsonl`` (events) and ``accounts.csv`` (reference data): account, owner,
broker and symbol ids are :data:`IMG` and :data:`SCRIPT`. Replayed, it gives an ``order_rate_1s`` alert on
the account ``SSE:<IMG>`` (broker SCRIPT) and a ``sell_burst_1m`` alert on the owner SCRIPT (accounts
``SSE:<SCRIPT>`` and ``SZSE:<IMG>``), and a recommendation for each.
"""

from __future__ import annotations

import csv
from pathlib import Path

import orjson

#: an image whose onerror handler opens a dialog, if rendered as HTML
IMG = "<img src=x onerror=alert(1)>"
#: closes a <script> element and opens another, if written raw into one
SCRIPT = "</script><script>alert(2)</script>"
#: 2024-02-19 09:30:00 Asia/Shanghai
T0 = 1_708_306_200_000_000_000
S = 1_000_000_000


def write_day(d: Path) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    ev = []
    for i in range(350):  # 350 orders in one second: order_rate_1s
        ev.append({"ts": T0 + 3600 * S + i * (S // 400), "venue": "SSE", "type": "order", "account": IMG,
                   "symbol": SCRIPT, "side": "B", "price": 10.0, "qty": 100, "order_id": i})
    for i in range(20):  # 1.4 billion yuan sold in 20 s by one owner's two accounts: sell_burst_1m
        for venue, account, symbol, qty, dt in (("SSE", SCRIPT, IMG, 4_000_000, 0),
                                                ("SZSE", IMG, SCRIPT, 3_000_000, 1)):
            ev.append({"ts": T0 + 2 * 3600 * S + i * S + dt, "venue": venue, "type": "trade", "account": account,
                       "symbol": symbol, "side": "S", "price": 10.0, "qty": qty})
    ev.sort(key=lambda e: e["ts"])
    events = d / "day.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in ev) + b"\n")
    accounts = d / "accounts.csv"
    with open(accounts, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["venue", "account", "owner", "broker", "reported"])
        w.writerow(["SSE", IMG, IMG, SCRIPT, "false"])
        w.writerow(["SSE", SCRIPT, SCRIPT, IMG, "false"])
        w.writerow(["SZSE", IMG, SCRIPT, SCRIPT, "true"])
    return events, accounts
