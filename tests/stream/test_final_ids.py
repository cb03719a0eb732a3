"""A restored state repeats outputs: a raised state must never replace a final one on the alerts topic."""

import asyncio

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from test_worker import settings

from surveil.engine.alerts import dumps
from surveil.events.schema import trading_day_index
from surveil.stream import topics
from surveil.stream.partition import Output
from surveil.stream.views import RecommendationBook
from surveil.stream.worker import Worker


def alert(i: int, status: str) -> dict:
    return {"alert_id": f"id{i}", "status": status, "rule": "order_rate_1s", "severity": "medium",
            "subject": {"venue": "SSE", "account": f"A{i}"}, "trading_day": "2024-02-19", "value": 300,
            "threshold": 300, "evidence": {"broker": "B001"}, "kind": "alert", "window_start": 1708308001000000000,
            "window_end": 1708308002000000000}


@pytest.mark.kafka
def test_read_final_ids_gives_the_ids_whose_latest_state_is_final(kafka_bootstrap):
    async def run():
        s = settings(kafka_bootstrap)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await topics.ensure(admin, topics.specs(s))
        await admin.close()
        w = Worker(s)
        assert await w.read_final_ids() == {}  # an empty topic (and the consumer stops cleanly)
        p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await p.start()
        for a in [alert(1, "raised"), alert(1, "final"), alert(2, "raised"), alert(3, "final"), alert(4, "final")]:
            await p.send_and_wait(s.alerts_topic, dumps(a), key=a["alert_id"].encode())
        await p.send_and_wait(s.alerts_topic, None, key=b"id4")  # a tombstone: no longer final
        await p.stop()
        return await asyncio.wait_for(w.read_final_ids(), 30)

    day = int(np.datetime64("2024-02-19", "D").astype(np.int64))
    assert day == trading_day_index(alert(1, "final")["window_start"])
    assert asyncio.run(run()) == {"id1": day, "id3": day}


class _Producer:
    def __init__(self):
        self.sent = []

    async def send(self, topic, value, key=None, partition=None):
        self.sent.append((topic, value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def test_publish_skips_a_raised_state_of_an_alert_already_final():
    async def run():
        w = Worker(settings("127.0.0.1:9"), params=None)
        w.producer = _Producer()
        w._topics = {w.s.broker_topic("B001")}
        st = type("S", (), {"book": RecommendationBook()})()
        w.final_ids = {"id1": 19772}
        await w.publish(st, Output(alerts=[alert(1, "raised"), alert(2, "raised"), alert(2, "final")]))
        await w.publish(st, Output(alerts=[alert(2, "raised")]))
        return [(t, v) for t, v in w.producer.sent if t == w.s.alerts_topic], w.stats

    sent, stats = asyncio.run(run())
    assert [v for _, v in sent] == [dumps(alert(2, "raised")), dumps(alert(2, "final"))]
    assert stats["raised_after_final_skipped"] == 2


def test_final_ids_of_past_trading_days_are_forgotten():
    """A long-running worker does not keep every final id since it started: only those of the day before
    the oldest day any of its states is in, and later."""
    w = Worker(settings("127.0.0.1:9"), params=None)
    eng = type("E", (), {})
    w.states = {i: type("S", (), {"engine": eng()})() for i in range(3)}
    for st, day in zip(w.states.values(), (19773, 19774, None)):
        st.engine.day = day
    w.final_ids = {"a": 19770, "b": 19772, "c": 19773, "d": 19774}
    w.prune_final_ids()
    assert w.final_ids == {"b": 19772, "c": 19773, "d": 19774}
    for st in w.states.values():
        st.engine.day = None  # between days: nothing to compare with, nothing forgotten
    w.prune_final_ids()
    assert set(w.final_ids) == {"b", "c", "d"}


def test_a_state_between_days_keeps_its_last_day_as_the_bound():
    """After a midnight marker a state's day is None, but its last checkpoint may still be in that day."""
    w = Worker(settings("127.0.0.1:9"), params=None)
    w.states = {i: type("S", (), {"engine": type("E", (), {})()})() for i in range(2)}
    w.states[0].engine.day, w.states[1].engine.day = 19772, 19772
    w.final_ids = {"a": 19771, "b": 19772}
    w.prune_final_ids()
    w.states[0].engine.day, w.states[1].engine.day = None, 19775
    w.final_ids["c"] = 19775
    w.prune_final_ids()
    assert set(w.final_ids) == {"a", "b", "c"}  # state 0 was last in 19772: 19771 and later are kept
