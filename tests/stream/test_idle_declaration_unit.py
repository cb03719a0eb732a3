"""Which feed partitions the worker declares idle (Worker.declare_idle, with a fake consumer): only caught-up
ones, found so by a fetch after their last record. Caught up: the state took the partition's last record, or
the consumer's position (aiokafka's public ``position()``) is at the partition's end; a position that is not
known at once (an offset reset pending) counts as not caught up, and the loop does not wait for it. The worker
on a real broker: test_worker.py (an idle feed partition does not hold back owner alerts)."""
import asyncio
import time

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

import surveil.stream.worker as wm
from surveil.stream.partition import Output
from surveil.stream.settings import Settings

LATE_MS = 500


class FakeState:
    def __init__(self, offset):
        self.offset = offset
        self.declared = 0

    def mark(self):
        return None

    def declare_idle(self):
        self.declared += 1
        return Output()


class FakeConsumer:
    """highwater, last poll and position of each partition, as aiokafka's consumer gives them."""

    def __init__(self):
        self.hw, self.polled, self.pos = {}, {}, {}
        self.position_calls = 0

    def highwater(self, tp):
        return self.hw[tp]

    def last_poll_timestamp(self, tp):
        return self.polled[tp]

    async def position(self, tp):
        self.position_calls += 1
        p = self.pos.get(tp)
        if p == "pending":  # an offset reset under way: aiokafka waits up to the request timeout
            await asyncio.sleep(40)
        if p == "revoked":
            raise IllegalStateError(f"Partition {tp} is not assigned")
        return p


def _tp(n):
    return TopicPartition("surveil.feed.sse", n)


@pytest.fixture
def w(monkeypatch):
    monkeypatch.setattr(wm, "PartitionState", FakeState)
    w = wm.Worker(Settings(metrics=False, allowed_lateness_ms=LATE_MS))
    w.consumer = FakeConsumer()
    return w


def _silent_and_polled(w, tp, offset, hw, pos=None, fresh=True):
    """A partition whose last record came more than the allowed lateness ago, with a fetch since (or not)."""
    w.states[tp] = FakeState(offset)
    w._last_input[tp] = time.monotonic() - 2 * LATE_MS / 1000
    w.consumer.hw[tp] = hw
    w.consumer.polled[tp] = (time.time() - (3 * LATE_MS if not fresh else 0) / 1000) * 1000
    if pos is not None:
        w.consumer.pos[tp] = pos


def test_only_caught_up_partitions_are_declared_idle(w):
    _silent_and_polled(w, _tp(0), offset=9, hw=10)  # took the last record
    _silent_and_polled(w, _tp(1), offset=-1, hw=0)  # never had a record
    _silent_and_polled(w, _tp(2), offset=4, hw=10, pos=5)  # behind: five records to read
    _silent_and_polled(w, _tp(3), offset=4, hw=10, pos=10)  # the rest carries no record (e.g. transaction markers)
    _silent_and_polled(w, _tp(4), offset=9, hw=10, fresh=False)  # no fetch since its last record
    _silent_and_polled(w, _tp(5), offset=9, hw=None)  # not fetched yet
    asyncio.run(w.declare_idle({}))
    assert sorted(tp.partition for tp in w._idle) == [0, 1, 3]
    assert w.stats["idle_declared"] == 3
    assert [w.states[_tp(n)].declared for n in range(6)] == [1, 1, 0, 1, 0, 0]
    assert w.consumer.position_calls == 2  # asked only when the state alone does not show it caught up


def test_a_partition_with_records_in_this_poll_is_not_declared(w):
    _silent_and_polled(w, _tp(0), offset=9, hw=10)
    asyncio.run(w.declare_idle({_tp(0): ["a record"]}))
    assert w._idle == {}


def test_a_position_not_known_at_once_is_not_caught_up_and_the_loop_does_not_wait(w):
    _silent_and_polled(w, _tp(0), offset=4, hw=10, pos="pending")
    _silent_and_polled(w, _tp(1), offset=4, hw=10, pos="revoked")
    t0 = time.monotonic()
    asyncio.run(w.declare_idle({}))
    assert time.monotonic() - t0 < 1.0  # not aiokafka's request timeout
    assert w._idle == {} and w.consumer.position_calls == 2
