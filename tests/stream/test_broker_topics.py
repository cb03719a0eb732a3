"""Member firms' alert topics: one topic per firm id, never two ids on one topic (``B/1`` and ``B_1`` shared one),
never two names Kafka treats as colliding (``.`` vs ``_``), always within Kafka's 249 characters; an id too
long to name a topic is refused when reference data loads, naming the row."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveil.engine.refdata import BROKER_ID_MAX_BYTES, RefData, RefDataError
from surveil.stream.settings import Settings

S = Settings()
TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
ids = st.text(min_size=1, max_size=BROKER_ID_MAX_BYTES // 4)


@settings(max_examples=500, deadline=None)
@given(st.lists(ids, min_size=2, max_size=20, unique=True))
def test_distinct_ids_get_distinct_valid_topics(brokers):
    names = [S.broker_topic(b) for b in brokers]
    assert all(TOPIC.match(n) for n in names)
    assert len(set(names)) == len(names)
    assert len({n.replace(".", "_") for n in names}) == len(names)  # Kafka's collision rule


def test_the_pairs_that_used_to_share_a_topic():
    assert len({S.broker_topic(b) for b in ("B/1", "B_1", "B.1", "B 1")}) == 4
    assert S.broker_topic("B1") != S.broker_topic("B10")
    assert S.broker_topic("BRK-A") == "surveil.alerts.broker.BRK-A"  # plain ids keep their name


def test_an_id_too_long_for_a_topic_is_refused_at_load(tmp_path):
    long = "B" * (BROKER_ID_MAX_BYTES + 1)
    with pytest.raises(RefDataError, match="broker="):
        RefData().set("SSE", "A1", "O", long)
    csv = tmp_path / "acc.csv"
    csv.write_text(f"venue,account,owner,broker\nSSE,A1,O,{long}\nSSE,A2,O,B2\n")
    rejects = []
    ref = RefData.load_csv(csv, rejects)
    assert [(r.location, r.field) for r in rejects] == [(2, "broker")] and ref.get(0, "A2") is not None
    with pytest.raises(ValueError, match="249"):
        S.broker_topic("x" * 300)  # an id inline in events: the worker keeps it as a reject, never crashes


def test_the_feeds_client_log_is_rate_limited():
    """A client reconnecting to a restarting broker logs many lines a second: the feed lets the first through, then
    one every few seconds that says how many were held back."""
    import logging

    from surveil.feed import RateLimitedLog

    f = RateLimitedLog(every_s=3600)
    recs = [logging.LogRecord("aiokafka.conn", logging.ERROR, "x", 1, "Unable to connect to %s", ("b:1",), None)
            for _ in range(1000)]
    passed = [r for r in recs if f.filter(r)]
    assert len(passed) == 1
    f.every_s = 0
    last = logging.LogRecord("aiokafka.conn", logging.ERROR, "x", 1, "Unable to connect to %s", ("b:1",), None)
    assert f.filter(last) and "999 more like this" in last.getMessage()
