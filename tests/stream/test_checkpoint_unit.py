"""The worker's checkpoint protocol with fake Kafka clients (unit tests; the recovery tests on a real broker
are in test_recovery.py): a background checkpoint is written only after the outputs it reflects are
acknowledged, in order, and undelivered outputs rewind the states at the next checkpoint."""

import asyncio

from aiokafka import TopicPartition

from surveil.stream.settings import Settings
from surveil.stream.worker import Worker

TP = TopicPartition("feed", 0)


class FakeProducer:
    def __init__(self):
        self.sent = []

    async def flush(self):
        pass

    async def send(self, topic, value, key=None, partition=None):
        self.sent.append((topic, key, value))
        f = asyncio.get_running_loop().create_future()
        f.set_result(None)
        return f


class FakeConsumer:
    def __init__(self):
        self.commits = []

    async def commit(self, offsets):
        self.commits.append(dict(offsets))


class FakeState:
    def __init__(self, offset):
        self.offset = offset

    def dumps(self):
        return f"state@{self.offset}".encode()


def worker():
    w = Worker(Settings(metrics=False, checkpoint_topic="cp"), params={"recommendations": {}})
    w.producer, w.consumer = FakeProducer(), FakeConsumer()
    w.states = {TP: FakeState(41)}
    return w


def checkpoints(w):
    return [v for t, _, v in w.producer.sent if t == "cp"]


def test_a_background_checkpoint_waits_for_its_outputs_and_takes_the_states_at_once():
    async def main():
        w = worker()
        out = asyncio.get_running_loop().create_future()  # an output not acknowledged yet
        w._inflight = [out]
        await w.checkpoint([TP], wait_commit=False, background=True)
        w.states[TP].offset = 99  # the loop goes on: the checkpoint keeps the state it took
        await asyncio.sleep(0.05)
        assert checkpoints(w) == [] and TP not in w._saved  # nothing before the output is acknowledged
        out.set_result(None)
        await w._checkpoint_outcome()
        await w.commits_done()
        assert checkpoints(w) == [b"state@41"] and w._saved[TP] == (b"state@41", 41)
        assert w.consumer.commits == [{TP: 42}]
        # the next checkpoint comes after it, with the newer state
        await w.checkpoint([TP])
        assert checkpoints(w) == [b"state@41", b"state@99"] and w.consumer.commits[-1] == {TP: 100}

    asyncio.run(main())


def test_undelivered_outputs_of_a_background_checkpoint_rewind_at_the_next_one():
    async def main():
        w = worker()
        rewinds = []

        async def rewind():
            rewinds.append(True)

        w.rewind = rewind
        out = asyncio.get_running_loop().create_future()
        out.set_exception(ConnectionError("broker gone"))
        w._inflight = [out]
        await w.checkpoint([TP], background=True)
        await asyncio.sleep(0.01)
        await w.checkpoint([TP])  # takes up the outcome first: the states go back, nothing is written
        assert rewinds == [True] and checkpoints(w) == [] and TP not in w._saved
        await w.checkpoint([TP])  # then checkpoints as usual
        assert checkpoints(w) == [b"state@41"]

    asyncio.run(main())
