"""The market context of a day stays until that day is over, however far ahead other days' contributions are:
in a stream worker the owner stage gets the market figures of feed partitions that run days ahead of its
watermark (a backlog); it kept only the newest two days it had seen, so the older day's sell-burst alerts lost
their market value, share of the market and index path (found by the load tests)."""

import numpy as np
from evtools import T0, S, batch_of, sell

from surveil.engine import Engine, load_config
from surveil.events.schema import day_start_ns, trading_day_index
from surveil.rules.market_context import MarketContext

YI = 100_000_000
DAY = int(trading_day_index(np.array([T0]))[0])


def test_days_ahead_do_not_push_out_the_day_in_progress():
    m = MarketContext(from_events=False)
    for d in range(DAY, DAY + 5):
        m.add_seconds(d, np.array([3600]), np.array([7]))
    assert sorted(m.days) == list(range(DAY, DAY + 5))
    m.forget_before(DAY + 2)
    assert sorted(m.days) == list(range(DAY + 2, DAY + 5))


def test_an_owner_stage_behind_a_backlog_keeps_its_days_market_value():
    """As an owner stage: market figures of three later days arrive before this day's burst is final."""
    evs = [sell(T0 + i * S, f"A{i}", "SSE", 4 * YI, owner="O") for i in range(3)]
    b, reg = batch_of(evs)
    eng = Engine(load_config(), registry=reg, rules=["sell_burst_1m"], market_from_events=False)
    sec = (T0 - day_start_ns(DAY)) // S
    eng.market.add_seconds(DAY, np.arange(sec, sec + 3), np.full(3, 20 * YI * 10_000))
    for later in (DAY + 1, DAY + 2, DAY + 3):  # partitions days ahead (a backlog)
        eng.market.add_seconds(later, np.array([sec]), np.array([YI * 10_000]))
    eng.process(b)
    eng.close()
    (final,) = [a for a in eng.final_alerts() if a["rule"] == "sell_burst_1m"]
    assert final["evidence"]["market_sell_value_fen"] == 60 * YI * 100
    assert final["evidence"]["share_of_market"] == 0.2
    assert sorted(eng.market.days) == [DAY, DAY + 1, DAY + 2, DAY + 3]
