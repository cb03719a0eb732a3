"""Read-only look into this worker's detection state: an account's counts today (for the account page).

Per-account rules run on the feed partition that owns the account (``VENUE:account`` is the record key),
so only the worker holding that partition knows the account's counts; the page says which partition it is
and whether this worker holds it. Read on the event loop, between two records (the worker's loop yields
there), so the figures are consistent.
"""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from surveil.events.schema import VENUES, day_str


def holding_partition(worker: Any, venue: str, account: str) -> TopicPartition:
    """The feed partition that owns ``venue:account`` (Kafka's default partitioner on the key)."""
    from surveil.feed import partition_for, venue_topics

    topics, topic_of_venue = venue_topics(worker.s)
    topic = topics[topic_of_venue[VENUES.index(venue)]]
    sources = getattr(worker, "sources", None) or []
    n = sum(1 for src in sources if src.rsplit(":", 1)[0] == topic) or worker.s.feed_partitions
    return TopicPartition(topic, partition_for(f"{venue}:{account}".encode(), n))


def account_activity(worker: Any, venue: str, account: str) -> dict[str, Any]:
    """``held_here``, ``partition``, and when held here: ``day`` and what the account rules count of it today
    (``Rule.activity``: ``orders``, ``cancels``, ``messages``, the messages the engine has released so far;
    events still held back for ordering are not counted yet). Once event time
    has passed midnight the day's counts are reset: ``day`` is then None and ``day_closed`` true."""
    from surveil.stream.partition import PartitionState

    tp = holding_partition(worker, venue, account)
    out: dict[str, Any] = {"partition": f"{tp.topic}:{tp.partition}", "held_here": False}
    st = worker.states.get(tp)
    if not isinstance(st, PartitionState):
        return out
    out["held_here"] = True
    eng = st.engine
    if eng.day is None:
        out.update(day=None, day_closed=True)
        return out
    out.update(day=day_str(eng.day), day_closed=False)
    aid = st.reg.accounts.ids.get(account)
    key = aid * 4 + VENUES.index(venue) if aid is not None and aid >= 0 else None  # None: not seen
    for r in eng.rules:  # what each account rule counts of it today (e.g. orders, cancels, messages)
        out.update(r.activity(key))
    return out
