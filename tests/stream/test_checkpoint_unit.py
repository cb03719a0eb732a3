"""The worker's checkpoint protocol with fake Kafka clients (unit tests; the recovery tests on a real broker are
in test_recovery.py): a background checkpoint is written only after the outputs it reflects are acknowledged, in
order; undelivered outputs rewind the states at the next checkpoint; a revocation or a stop leaves nothing under
way. Several of these came from a review of the background checkpoints."""
import asyncio
import gc

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, ProducerClosed

import surveil.stream.worker as wm
from surveil.stream import checkpoint
from surveil.stream.settings import Settings

TP = TopicPartition("surveil.feed.sse", 0)


CP_KEY = b"surveil-workers|surveil.feed.sse:0"  # the checkpoint record's key of TP (Settings' default group)


def blob(offset):
    """A checkpoint record of a fake state at ``offset``."""
    return checkpoint.seal(checkpoint.pack({"stage": "partition", "offset": offset}), checkpoint.UNKEYED, CP_KEY)


class FakeState:
    def __init__(self, offset, *args):
        self.offset = offset
        self.source = f"{TP.topic}:{TP.partition}"
        self.book = None

    def packed(self):  # what the worker takes; it seals it (checkpoint.seal) when it writes the checkpoint
        return checkpoint.pack({"stage": "partition", "offset": self.offset})

    @staticmethod
    def loads(blob, *args):  # (ref, params, partitions x2, notes, key, binding, securities) as the worker passes
        return FakeState(checkpoint.unseal(blob, key=args[5], binding=args[6])["offset"])

    def pending_progress(self):  # the loop asks an input partition for progress when a poll is empty
        return {}


class FakeProducer:
    def __init__(self):
        self.sent, self.after_stop, self.stopped = [], [], False
        self.flush_gate = None
        self.flush_error = None

    async def send(self, topic, value, key=None, partition=None):
        if self.stopped:
            self.after_stop.append((topic, key))
            raise ProducerClosed()
        self.sent.append((topic, key, value))
        f = asyncio.get_running_loop().create_future()
        f.set_result(None)
        return f

    async def flush(self):
        if self.flush_error:
            raise self.flush_error
        if self.flush_gate:
            await self.flush_gate.wait()

    async def stop(self):
        self.stopped = True


class FakeConsumer:
    def __init__(self):
        self.commits, self.commit_gate = [], None

    async def commit(self, offsets):
        if self.commit_gate:
            await self.commit_gate.wait()
        self.commits.append(dict(offsets))

    def seek(self, tp, off):
        pass

    async def seek_to_beginning(self, *tps):
        pass

    async def getmany(self, timeout_ms=0, max_records=None):
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def stop(self):
        pass


@pytest.fixture
def w(monkeypatch):
    monkeypatch.setattr(wm, "PartitionState", FakeState)
    w = wm.Worker(Settings(metrics=False))
    w.producer, w.consumer = FakeProducer(), FakeConsumer()
    w.owner_partitions, w.sources = 1, []
    w._saved[TP] = (blob(5), 5)  # the last checkpoint
    return w


def checkpoints(w):
    return [checkpoint.unseal(v, binding=k)["offset"] for t, k, v in w.producer.sent if t == w.s.checkpoint_topic]


def test_a_background_checkpoint_waits_for_its_outputs_and_takes_the_states_at_once(w):
    async def main():
        w.states[TP] = FakeState(41)
        out = asyncio.get_running_loop().create_future()  # an output not acknowledged yet
        w._inflight = [out]
        await w.checkpoint([TP], wait_commit=False, background=True)
        w.states[TP].offset = 99  # the loop goes on: the checkpoint keeps the state it took
        await asyncio.sleep(0.05)
        assert checkpoints(w) == [] and w._saved[TP][1] == 5  # nothing before the output is acknowledged
        out.set_result(None)
        await w._checkpoint_outcome()
        await w.commits_done()
        assert checkpoints(w) == [41] and w._saved[TP][1] == 41 and w.consumer.commits == [{TP: 42}]
        await w.checkpoint([TP])  # the next one comes after it, with the newer state
        assert checkpoints(w) == [41, 99] and w.consumer.commits[-1] == {TP: 100}
    asyncio.run(main())


def test_undelivered_outputs_of_a_background_checkpoint_rewind_at_the_next_one(w):
    async def main():
        w.states[TP] = FakeState(41)
        w._inflight = [failed_future()]
        await w.checkpoint([TP], background=True)
        await asyncio.sleep(0.01)
        await w.checkpoint([TP])  # takes up the outcome first: the states go back, nothing is written
        assert checkpoints(w) == [] and w.states[TP].offset == 5 and w.stats["rewinds"] == 1
        await w.checkpoint([TP])  # then checkpoints as usual
        assert checkpoints(w) == [5]
    asyncio.run(main())


def failed_future():
    f = asyncio.get_running_loop().create_future()
    f.set_exception(KafkaTimeoutError())
    return f


def test_revocation_waits_for_the_commits_even_when_it_rewinds(w):
    """a585703: 'a revocation's checkpoint waits even when it rewinds' (commits_done on the failure path)."""
    async def main():
        w.states[TP] = FakeState(10)
        w.consumer.commit_gate = asyncio.Event()
        w._to_commit = {TP: 6}  # a commit of an earlier checkpoint, under way
        w._commit_task = asyncio.ensure_future(w._commit_pending())
        asyncio.get_running_loop().call_later(0.2, w.consumer.commit_gate.set)
        w._inflight = [failed_future()]  # an output not delivered
        await w.checkpoint([TP], wait_commit=False, background=True)  # the loop's periodic one
        await wm._Rebalance(w).on_partitions_revoked([TP])
        assert w._commit_task.done(), "the revocation returned with a commit under way"
    asyncio.run(main())


def test_close_leaves_no_job_writing_after_the_producer_stopped(w):
    async def main():
        w.states[TP] = FakeState(10)
        w.producer.flush_gate = asyncio.Event()  # the broker is slow
        await w.checkpoint([TP], wait_commit=False, background=True)
        job = w._cp_job
        w.states.clear()  # WorkerService.on_stop after the loop failed or was cancelled
        await w.close()
        assert w.producer.stopped
        w.producer.flush_gate.set()
        await asyncio.sleep(0.5)
        assert job.done(), "a background checkpoint still runs after close()"
        assert not w.producer.after_stop, f"written after the producer stopped: {w.producer.after_stop}"
    asyncio.run(main())


def test_rewind_takes_up_a_failed_job(w):
    errors = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx["message"]))
        w.states[TP] = FakeState(10)
        w.producer.flush_error = ValueError("boom")  # e.g. the retry deadline's KafkaError
        await w.checkpoint([TP], wait_commit=False, background=True)
        await asyncio.wait([w._cp_job], timeout=5)  # the job fails (its error not taken up yet)
        assert w._cp_job.done()
        await w.rewind()  # a publishing error in the loop
        gc.collect()
        await asyncio.sleep(0)
    asyncio.run(main())
    assert not errors, errors


def test_when_sealing_and_flushing_both_fail_the_error_carries_both(w, monkeypatch):
    errors = []

    def bad_seal(*raw):
        raise MemoryError("sealing")

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx["message"]))
        monkeypatch.setattr(wm.checkpoint, "seal", bad_seal)
        w.states[TP] = FakeState(10)
        w.producer.flush_error = ValueError("flushing")
        await w.checkpoint([TP], wait_commit=False, background=True)
        await asyncio.wait([w._cp_job], timeout=5)
        with pytest.raises(MemoryError, match="sealing") as e:
            await w._checkpoint_outcome()
        assert any("ValueError('flushing')" in n for n in e.value.__notes__)
        assert checkpoints(w) == [] and w._saved[TP][1] == 5  # nothing written
        gc.collect()
        await asyncio.sleep(0)
    asyncio.run(main())
    assert not errors, errors  # no error left unretrieved


def test_revoked_states_go_even_when_the_previous_job_failed(w):
    async def main():
        w.states[TP] = FakeState(10)
        w.producer.flush_error = ValueError("boom")
        await w.checkpoint([TP], wait_commit=False, background=True)
        await asyncio.sleep(0)
        w.producer.flush_error = None
        try:
            await wm._Rebalance(w).on_partitions_revoked([TP])  # aiokafka logs an error and goes on
        except Exception:  # noqa: BLE001
            pass
        assert TP not in w.states, "a revoked partition's state stayed (its stale checkpoints follow)"
    asyncio.run(main())


def test_revocation_waits_for_the_commits_even_when_it_rewinds_sync(w):
    """The same without a background checkpoint (passes on a585703)."""
    async def main():
        w.states[TP] = FakeState(10)
        w.consumer.commit_gate = asyncio.Event()
        w._to_commit = {TP: 6}
        w._commit_task = asyncio.ensure_future(w._commit_pending())
        asyncio.get_running_loop().call_later(0.2, w.consumer.commit_gate.set)
        w._inflight = [failed_future()]
        await wm._Rebalance(w).on_partitions_revoked([TP])
        assert w._commit_task.done(), "the revocation returned with a commit under way"
    asyncio.run(main())


def test_the_worker_gives_up_after_max_rewinds_in_a_row_of_undelivered_outputs(w):
    """Undelivered outputs rewind the states; MAX_REWINDS of them in a row without a checkpoint in between are a
    persistent error: the worker raises (a publishing error in the loop counted so before; undelivered outputs
    rewound for ever)."""
    async def main():
        w.states[TP] = FakeState(10)
        for _ in range(wm.MAX_REWINDS - 1):
            w._inflight = [failed_future()]
            await w.checkpoint([TP])
        assert w.stats["rewinds"] == wm.MAX_REWINDS - 1
        await w.checkpoint([TP])  # a checkpoint that holds: the count starts again
        assert checkpoints(w) == [5] and w._rewinds_in_a_row == 0
        for _ in range(wm.MAX_REWINDS):
            w._inflight = [failed_future()]
            await w.checkpoint([TP])
        assert w._rewinds_in_a_row == wm.MAX_REWINDS
        w._inflight = [failed_future()]
        with pytest.raises(RuntimeError, match="not delivered.*giving up"):
            await w.checkpoint([TP])
        assert w.stats["rewinds"] == 2 * wm.MAX_REWINDS - 1  # no rewind more when it gives up
    asyncio.run(main())


def test_a_failed_background_checkpoint_rewinds_the_loop_instead_of_stopping_it(w, monkeypatch):
    """The error of a periodic (background) checkpoint is taken up by the next one, in the loop: it rewinds to
    the last checkpoint as a publishing error does, and the loop goes on (it stopped the loop before)."""
    orig = wm.retry
    monkeypatch.setattr(wm, "retry", lambda what, fn, deadline=0: orig(what, fn, 0))  # no retries: fail at once
    w.s = Settings(metrics=False, checkpoint_interval_ms=100, allowed_lateness_ms=0)

    async def main():
        w.states[TP] = FakeState(10)
        w.producer.flush_error = KafkaConnectionError()  # the broker is away: the background checkpoint fails
        task = asyncio.ensure_future(w.loop())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if w.stats["rewinds"] or task.done():
                break
        assert not task.done(), f"the loop stopped: {task.exception()!r}"
        assert w.stats["rewinds"] >= 1 and w.states[TP].offset == 5  # back to the last checkpoint
        w.producer.flush_error = None  # the broker is back: checkpoints hold again
        for _ in range(100):
            await asyncio.sleep(0.05)
            if checkpoints(w):
                break
        assert checkpoints(w) and checkpoints(w)[-1] == 5 and not task.done()
        w.stop.set()
        await asyncio.wait_for(task, 5)
    asyncio.run(main())


def test_run_writes_no_final_checkpoint_after_the_loop_failed(w, monkeypatch):
    """Worker.run (tests, the benchmark) as the app: a loop that failed, maybe half way through a poll, leaves
    no final checkpoint of its states; the last periodic one stands."""
    async def start():
        w.states[TP] = FakeState(10)

    async def loop():
        w.states[TP].offset = 77  # half way through a poll
        raise ValueError("a bug in a rule")

    monkeypatch.setattr(w, "start", start)
    monkeypatch.setattr(w, "loop", loop)
    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(w.run())
    assert checkpoints(w) == [] and w._saved[TP][1] == 5


def test_giving_up_in_a_revocation_stops_the_loop(w):
    """The revocation's checkpoint may be the one that gives up: aiokafka only logs a listener's error, so the
    loop raises it at its next poll (it went on before), and the revocation still waits for the commits."""
    w.s = Settings(metrics=False, allowed_lateness_ms=0)

    async def main():
        w.states[TP] = FakeState(10)
        w._rewinds_in_a_row = wm.MAX_REWINDS
        w._inflight = [failed_future()]
        w.consumer.commit_gate = asyncio.Event()
        w._to_commit = {TP: 6}  # a commit of an earlier checkpoint, under way
        w._commit_task = asyncio.ensure_future(w._commit_pending())
        asyncio.get_running_loop().call_later(0.2, w.consumer.commit_gate.set)
        with pytest.raises(RuntimeError, match="giving up"):
            await wm._Rebalance(w).on_partitions_revoked([TP])
        assert w._commit_task.done(), "the revocation returned with a commit under way"
        assert TP not in w.states
        with pytest.raises(RuntimeError, match="giving up"):
            await asyncio.wait_for(w.loop(), 5)
    asyncio.run(main())
