"""A member firm's copy of an owner-level alert holds figures from its own accounts (and public market data)
only: changing another firm's trades, without changing whether the alert is raised or its severity, leaves the
firm's copy byte-identical; its value is what its own accounts sold, not the owner's total."""

import orjson
from evtools import T0, S, run, sell
from hypothesis import given, settings
from hypothesis import strategies as st

from surveil.engine.alerts import dumps
from surveil.stream.views import broker_views

YI = 100_000_000


def day(other: list[int]) -> list[dict]:
    """Owner O sells through firm F1 (two accounts, 300 M yuan each) and firm F2 (``other`` amounts), all within
    12 seconds, on both venues. An unrelated seller makes the market's total the same whatever F2 sells (the
    market total is public data: it is meant to change when the market does)."""
    evs = [sell(T0 + 2 * S, "F1A", "SSE", 3 * YI, owner="O", broker="F1", order_id="f1a"),
           sell(T0 + 5 * S, "F1B", "SZSE", 3 * YI, owner="O", broker="F1", order_id="f1b"),
           sell(T0 + 3 * S, "ELSE", "SSE", 20 * YI - sum(other), owner="Z", broker="F9", order_id="z")]
    for i, v in enumerate(other):
        evs.append(sell(T0 + (1 + 3 * i) * S, f"F2_{i % 2}", ("SSE", "SZSE")[i % 2], v, owner="O", broker="F2",
                        order_id=f"f2-{i}"))
    return evs


def copy_of(evs, broker):
    alerts, _ = run(evs)
    (final,) = [a for a in alerts if a["rule"] == "sell_burst_1m" and a["subject"] == {"owner": "O"}]
    return final, broker_views(final)[broker]


def test_the_firms_copy_has_its_own_figures():
    final, mine = copy_of(day([3 * YI, 3 * YI]), "F1")
    assert final["value"] == 12 * YI * 100  # the owner: 1.2 bn yuan, in fen
    assert mine["value"] == 6 * YI * 100  # the firm: its two accounts' 600 M yuan
    ev = mine["evidence"]
    assert ev["peak_value_fen"] == 6 * YI * 100 and ev["trades_in_peak_window"] == 2
    assert {a["account"] for a in ev["accounts"]} == {"F1A", "F1B"}
    assert sum(a["share"] for a in ev["accounts"]) == 1.0
    assert "F2_0" not in orjson.dumps(mine).decode() and "f2-" not in orjson.dumps(mine).decode()
    assert mine["severity"] == final["severity"] and mine["threshold"] == final["threshold"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(2 * YI // 10, 4 * YI // 10).map(lambda x: x * 10), min_size=2, max_size=2))  # whole shares
def test_other_firms_trades_do_not_change_the_firms_copy(other):
    """Other firms' amounts change; their trades' times do not (the copy keeps the owner-level alert's windows:
    times, not figures)."""
    base = dumps(copy_of(day([3 * YI, 3 * YI]), "F1")[1])
    final, mine = copy_of(day(other), "F1")
    if final["severity"] != "high":  # a change that makes the alert critical is a change of the alert's facts
        return
    assert dumps(mine) == base
