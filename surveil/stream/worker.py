"""The stream worker: feed partitions and owner partitions through the engine, on a real Kafka.

One consumer group reads the feed topics and the owner topic; every assigned partition has its own
state (:class:`~surveil.stream.partition.PartitionState`, or :class:`~surveil.stream.owner.KeyedState` for the
owner and security stages),
restored from its last checkpoint when the partition is assigned. Outputs are deterministic and keyed
by id, so re-processing after a crash rewrites the same records.

Checkpoint, in this order (``Worker.checkpoint``):
1. flush the producer: every output of the records processed so far is acknowledged by the broker;
2. write each state, with the input offset it reflects, to the compacted checkpoint topic, and flush;
3. commit the consumer offsets (for lag monitoring; recovery itself starts from the checkpoints).
A crash between two checkpoints loses nothing: the partition is read again from its checkpoint's
offset and every output is produced again, identical. The states are taken at once (with the outputs
sent so far); the loop's periodic checkpoints then do steps 1-3 in the background while it goes on, one
at a time, and the next checkpoint takes up the outcome (undelivered outputs: back to the last one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError

from surveil.actions import LADDER, RECO_PARAMS
from surveil.engine import load_config
from surveil.engine.alerts import dumps
from surveil.engine.plan import plan
from surveil.engine.refdata import RefData, RefDataError, first_difference, ref_value, valid_from_text
from surveil.engine.securities import Securities
from surveil.events import binary
from surveil.events.schema import VENUE_CODE, VENUES, day_start_ns, ns_to_iso, trading_day_index
from surveil.metrics import WorkerMetrics
from surveil.stream import checkpoint, topics
from surveil.stream import rejects as rejects_
from surveil.stream.envelope import pack_bundle
from surveil.stream.exceptions import AccessDenied, denied
from surveil.stream.owner import KeyedState
from surveil.stream.partition import Output, PartitionState
from surveil.stream.settings import Settings
from surveil.stream.views import RecommendationBook, broker_views

log = logging.getLogger("surveil.worker")
#: late reference updates listed in the status (the latest)
REF_LATE_KEPT = 20
#: how long a worker keeps retrying while Kafka is unreachable before it gives up (and exits non-zero)
RETRY_DEADLINE_S = 300.0
#: an owner-topic record carries at most this many bytes (below the brokers' default 1 MB message size)
BUNDLE_BYTES = 900_000
#: rewinds in a row without a checkpoint in between before the worker gives up (a persistent error)
MAX_REWINDS = 5
#: how long reading an empty topic to its end waits for the first fetch's answer (a refusal comes at once)
READ_PROBE_MS = 300
#: how long declare_idle waits for a feed consumer's position (known: at once; see _position_now)
POSITION_WAIT_S = 0.01


#: what a missing ACL looks like to aiokafka: never retried (it would not change by itself)
DENIED = (TopicAuthorizationFailedError, GroupAuthorizationFailedError)


async def retry(what: str, fn, deadline: float = RETRY_DEADLINE_S):
    """Run ``fn()`` again on Kafka errors (a broker restarting, a leader moving), with backoff. An authorization
    error (a missing ACL) is raised at once."""
    end = time.monotonic() + deadline
    delay = 0.2
    while True:
        try:
            return await fn()
        except KafkaError as e:
            if time.monotonic() > end or isinstance(e, DENIED):
                raise
            log.warning("%s failed (%s); retrying in %.1f s", what, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _position_now(c: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """The consumer's position if it is known now, else -1. ``position()`` returns a known position at once,
    but waits up to the request timeout while an offset reset is pending (e.g. with the broker down), which
    the loop must not: it is given one moment."""
    try:
        return await asyncio.wait_for(c.position(tp), POSITION_WAIT_S)
    except (TimeoutError, KafkaError):  # not known now; or not assigned any more (IllegalStateError)
        return -1


def _alert_day(a: dict) -> int:
    """The trading-day index of an alert (its window starts on its trading day)."""
    return int(trading_day_index(a["window_start"]))


async def _behind(c: AIOKafkaConsumer, tps: list[TopicPartition], end: dict) -> bool:
    for tp in tps:
        if await c.position(tp) < end[tp]:
            return True
    return False


async def _read_to_end(c: AIOKafkaConsumer, admin: AIOKafkaAdminClient, topic: str, on_record) -> None:
    """Assign every partition of ``topic`` to ``c`` from its beginning and call ``on_record`` for each record
    up to the end offsets of now. Always an assignment: a consumer stopped without one hangs in stop()."""
    parts = c.partitions_for_topic(topic)
    if not parts:  # a consumer just started has no topic metadata yet: ask the cluster
        parts = (await topics.partitions(admin, [topic])).get(topic) or {0}
    tps = [TopicPartition(topic, p) for p in parts]
    c.assign(tps)
    await c.seek_to_beginning(*tps)
    end = await c.end_offsets(tps)
    if not await _behind(c, tps, end):
        # nothing to read, but one short fetch all the same: the end offsets need only DESCRIBE, so a missing
        # READ ACL shows first in a fetch's answer (at once: the broker does not hold a refused fetch), now rather
        # than at the topic's first record. A record that arrived meanwhile is applied (the consumer is past it).
        for msgs in (await c.getmany(timeout_ms=READ_PROBE_MS)).values():
            for m in msgs:
                on_record(m)
    while await _behind(c, tps, end):
        for msgs in (await c.getmany(timeout_ms=500)).values():
            for m in msgs:
                on_record(m)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: Worker):
        self.w = worker

    # The callbacks run in the consumer's coordinator task, concurrently with the processing loop: they
    # take the worker's lock, so a state is never checkpointed half way through publishing a record.
    async def on_partitions_revoked(self, revoked) -> None:
        async with self.w.lock:
            mine = [tp for tp in revoked if tp in self.w.states]
            try:
                if mine:
                    await self.w.checkpoint(mine)
            finally:  # not ours any more, even when the checkpoint failed: a state kept here would write
                # stale checkpoints over the new owner's, and be taken up again if the partition came back
                for tp in mine:
                    self.w.states.pop(tp, None)
                    self.w._idle.pop(tp, None)  # noqa: SLF001
                await self.w.commits_done()  # also when the checkpoint raised (done already otherwise)
        log.info("revoked %s", sorted(f"{tp.topic}:{tp.partition}" for tp in mine))

    async def on_partitions_assigned(self, assigned) -> None:
        async with self.w.lock:
            try:
                await self.w.assign(list(assigned))
            except AccessDenied as e:  # raised here it would only reach aiokafka's log: the loop raises it
                self.w._fatal = e  # noqa: SLF001
                raise


class Worker:
    def __init__(self, settings: Settings, params: dict | None = None, name: str = "worker"):
        self.s = settings
        self.name = name
        self.params = params or load_config(settings.rules_file or None, extra={"recommendations": RECO_PARAMS})
        self.ref = RefData()
        self.ref_late: list[dict[str, Any]] = []  # the latest late reference updates (status, console)
        # securities reference data (prev_close, risk_warning, price limits), following the securities topic: the
        # object to hand to the engines this worker creates (Engine(..., securities=worker.securities))
        self.securities = Securities()
        self._sec_rejects: list[dict[str, Any]] = []  # rejected securities records, to the rejects topic
        self.states: dict[TopicPartition, PartitionState | KeyedState] = {}
        self.stats: Counter = Counter()
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self._topics: set[str] = set()
        self.lock = asyncio.Lock()  # held while a record is handled and published, and by rebalances
        self.metrics = WorkerMetrics(enabled=settings.metrics)
        # records for the owner and security topics waiting for the end of the poll: (topic, partition) -> records
        self._bundles: dict[tuple[str, int], list[bytes]] = {}
        self._rewinds_in_a_row = 0
        self._last_failure = ""  # what the last rewind was for (readiness says it)
        self._fatal: RuntimeError | AccessDenied | None = None  # the worker gave up (raised by the loop)
        self._inflight: list[asyncio.Future] = []  # delivery of outputs since the last checkpoint
        self._saved: dict[TopicPartition, tuple[bytes, int]] = {}  # last checkpoint of each state
        # alerts known to be final on the alerts topic: id -> trading-day index (pruned, see prune_final_ids)
        self.final_ids: dict[str, int] = {}
        # earlier recommendations per subject (canonical JSON), by id: the escalation history (see history_of)
        self.history: dict[bytes, dict[str, dict[str, Any]]] = {}
        self._state_days: dict[TopicPartition, int] = {}  # the last trading day each state was seen in
        self._last_cp = time.monotonic()
        self._last_status = time.monotonic()
        # feed partitions: when each last had a record (monotonic), and which ones were declared idle
        self._last_input: dict[TopicPartition, float] = {}
        self._idle: dict[TopicPartition, float] = {}  # idle ones: when the declaration was last sent
        self._new_brokers: set[str] = set()  # brokers new in reference data, whose topics are to be created
        self._ref_rejects: list[dict[str, Any]] = []  # rejected reference records, to the rejects topic
        self._commit_task: asyncio.Future | None = None  # the offset commits under way (see checkpoint)
        self._cp_job: asyncio.Future | None = None  # a checkpoint being written in the background
        self._to_commit: dict[TopicPartition, int] = {}  # offsets to commit next
        self.admin: AIOKafkaAdminClient | None = None  # set by start
        # the checkpoints' HMAC key (SURVEIL_CHECKPOINT_KEY); without one they are only checked for damage and
        # for the partition they belong to
        self.cp_secret = settings.checkpoint_key.encode() if settings.checkpoint_key else checkpoint.UNKEYED
        # partitions whose checkpoint could not be used, and why (shown in /status): their state is rebuilt
        self.rebuilt: dict[str, str] = {}
        # partition counts of the downstream stages' topics (as configured; start() reads the real ones), and
        # the stages: stage key -> (topic, partitions)
        self.owner_partitions, self.security_partitions = settings.owner_partitions, settings.security_partitions
        self.stage_topics = {"owner": (settings.owner_topic, self.owner_partitions),
                             "security": (settings.security_topic, self.security_partitions)}

    # -- life cycle ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self, operation: str, doing: str, name: str | None = None):
        """An authorization error inside becomes an :class:`AccessDenied` naming the operation and the topic or
        group (a missing ACL: the worker stops with it instead of retrying)."""
        try:
            yield
        except KafkaError as e:
            d = denied(e, operation, self.s.sasl_username, doing, name)
            if d is None:
                raise
            raise d from None

    async def run(self) -> None:
        try:
            await self.start()
            try:
                await self.loop()
            except BaseException:
                # as the app (WorkerService.on_stop): the loop failed or was cancelled, maybe half way through a
                # poll, so its states get no final checkpoint; the last periodic one stands
                self.states.clear()
                raise
        finally:
            await self.close()

    async def start(self) -> None:
        if not self.s.checkpoint_key:
            log.warning("SURVEIL_CHECKPOINT_KEY is not set: checkpoints are checked for damage and for the "
                        "partition they belong to, but anyone who can write %s can forge one (set a key shared by "
                        "the workers of the group)", self.s.checkpoint_topic)
        if not binary.FAST:
            log.warning("the compiled frame decoder (surveil.events._svev) is not built: binary frames are decoded "
                        "with numpy, about 3x slower (reinstall with a C compiler: pip install -e .)")
        kw = self.s.kafka_kwargs()
        self.admin = AIOKafkaAdminClient(**kw)
        await self.admin.start()
        counts = await topics.ensure(self.admin, topics.specs(self.s), self.s.sasl_username)
        self.sources = [f"{t}:{p}" for t in self.s.feed_topics for p in range(counts[t])]
        self.owner_partitions = counts[self.s.owner_topic]
        self.security_partitions = counts[self.s.security_topic]
        # the downstream stages: stage key -> (topic, partitions)
        self.stage_topics = {"owner": (self.s.owner_topic, self.owner_partitions),
                             "security": (self.s.security_topic, self.security_partitions)}
        self._topics = set(await self.admin.list_topics())
        self.producer = AIOKafkaProducer(**kw, enable_idempotence=True, acks="all", linger_ms=5,
                                         max_request_size=topics.CHECKPOINT_MAX_BYTES, max_batch_size=1 << 20)
        await self.producer.start()
        if self.s.accounts_csv:
            await self.seed_refdata(self.s.accounts_csv)
        def apply_ref(m):
            self._apply_ref(m.key, m.value)

        self._ref_consumer = await self._mirror(self.s.ref_topic, apply_ref)
        # every broker of the reference data as it stands (not each one ever named in a record read)
        self._new_brokers = {r.broker for h in self.ref.histories.values() for r in h if r.broker}
        await self._after_ref_updates()
        self._ref_task = asyncio.create_task(self._follow(self._ref_consumer, apply_ref, self._after_ref_updates))
        # the escalation history: every recommendation on the (compacted) recommendations topic, followed
        def apply_history(m):
            self._apply_history(m.value)

        self._history_consumer = await self._mirror(self.s.recommendations_topic, apply_history)
        self._history_task = asyncio.create_task(self._follow(self._history_consumer, apply_history))
        if self.s.securities_csv:
            await self.seed_securities(self.s.securities_csv)
        def apply_security(m):
            self._apply_security(m.key, m.value)

        self._sec_consumer = await self._mirror(self.s.securities_topic, apply_security)
        await self._after_securities_updates()
        self._sec_task = asyncio.create_task(self._follow(self._sec_consumer, apply_security,
                                                          self._after_securities_updates))
        self.consumer = AIOKafkaConsumer(**kw, group_id=self.s.group_id, enable_auto_commit=False,
                                         auto_offset_reset="earliest", max_partition_fetch_bytes=16 << 20,
                                         fetch_max_bytes=64 << 20)
        # the downstream stages that have rules (see surveil.engine.plan): the owner stage always runs (its
        # partitions report the owner watermark), the security stage only when some rule is keyed by security
        stages = [self.s.owner_topic] + ([self.s.security_topic] if plan().export("security") else [])
        self.consumer.subscribe(list(self.s.feed_topics) + stages, listener=_Rebalance(self))
        with self._guard("READ", f"joining the consumer group {self.s.group_id}"):
            await self.consumer.start()

    async def close(self) -> None:
        try:
            if getattr(self, "consumer", None) is not None and self.states:
                async with self.lock:
                    await self.checkpoint(list(self.states))
        except Exception:  # noqa: BLE001 - best effort on the way out
            log.exception("final checkpoint failed")
        # a background checkpoint no final one waited for: it must not write after the producer stops
        await self._drop_checkpoint(wait=10, why="at the stop")
        try:
            await self.commits_done(timeout=10)  # before the consumer stops (a checkpoint may have ended early)
        except Exception:  # noqa: BLE001
            log.exception("waiting for the offset commits")
        for name in ("_ref_task", "_history_task", "_sec_task"):
            t = getattr(self, name, None)
            if t:
                t.cancel()
        for name in ("consumer", "_ref_consumer", "_history_consumer", "_sec_consumer", "producer", "admin"):
            c = getattr(self, name, None)
            if c is not None:
                try:
                    await c.stop() if name != "admin" else await c.close()
                except Exception:  # noqa: BLE001
                    log.exception("closing %s", name)

    async def loop(self) -> None:
        self.ready.set()
        interval = self.s.checkpoint_interval_ms / 1000
        while not self.stop.is_set():
            with self._guard("READ", "reading the input"):
                data = await self.consumer.getmany(timeout_ms=100, max_records=500)
            # one poll under the lock: handle every record, then send the owner-topic output as one
            # bundle per owner partition (a checkpoint or a rebalance never sees a half-sent poll)
            async with self.lock:
                if self._fatal is not None:  # a rebalance listener gave up (see _give_up_after_rewinds)
                    raise self._fatal
                # Let the consumer's fetcher send its next request now (the records of this poll were taken),
                # so that the broker sends the next response while this one is processed (without a pause the
                # whole poll ran first). Under the lock: a rebalance that completed meanwhile would restore
                # states that these records, fetched before it, do not follow.
                await asyncio.sleep(0)
                try:
                    for tp, msgs in data.items():
                        st = self.states.get(tp)
                        if st is None:
                            continue
                        # the partition's records of this poll in one pass (any grouping gives the same
                        # outputs: see PartitionState.handle_many)
                        if isinstance(st, KeyedState):  # the owner stage's clock: record timestamps
                            recs = [(m.offset, m.value, m.timestamp) for m in msgs if m.offset > st.offset]
                        else:
                            recs = [(m.offset, m.value) for m in msgs if m.offset > st.offset]
                        if not recs:
                            continue
                        t0 = time.perf_counter()
                        if isinstance(st, PartitionState):
                            self._last_input[tp] = time.monotonic()
                            self._idle.pop(tp, None)
                        out = st.handle_many(recs, tp.topic, tp.partition)
                        self.stats["records"] += len(recs)
                        if out.counts is not None:
                            self.metrics.add_events(out.counts)
                        await self.publish(st, out)
                        self.metrics.record(tp.topic, time.perf_counter() - t0, len(recs))
                        await asyncio.sleep(0)  # read what has arrived of the next fetch meanwhile
                    if not data:  # input paused: tell the owner stage how far every partition got
                        for st in list(self.states.values()):
                            if isinstance(st, PartitionState):
                                await self.publish(st, Output(routed=st.pending_progress()))
                    await self.declare_idle(data)
                    await self.send_bundles()
                    if time.monotonic() - self._last_cp > interval and self.states and (
                            self._cp_job is None or self._cp_job.done()):  # one under way at a time
                        await self.checkpoint(list(self.states), wait_commit=False, background=True)
                except KafkaError as e:  # publishing, or the checkpoint before (a background one's error)
                    d = denied(e, "WRITE", self.s.sasl_username, "publishing outputs or checkpoints")
                    if d is not None:
                        raise d from None
                    if not getattr(e, "retriable", True):
                        raise RuntimeError(f"publishing failed ({e!r}); giving up") from e
                    self._give_up_after_rewinds(f"publishing failed ({e!r})")
                    log.warning("publishing failed (%s): back to the last checkpoint", e)
                    self._bundles = {}
                    await self.rewind()
            await asyncio.sleep(0)  # let the web server, heartbeats and rebalances in
            if time.monotonic() - self._last_status > 5:
                self._last_status = time.monotonic()
                await self.update_gauges()
                self.prune_final_ids()
                log.info("status %s", orjson.dumps(self.status()).decode())

    async def declare_idle(self, data) -> None:
        """Feed partitions caught up and without a record for the allowed lateness are declared idle, so
        that owner-level rules may stop waiting for them (bounded latency when a feed partition goes quiet,
        e.g. a gateway without progress markers). *Caught up*: a fetch response received at least the
        allowed lateness after the partition's last record showed the consumer at the partition's end (a
        stale response, while the loop was busy, does not count). A partition that lags is never idle: a
        worker catching up on a backlog waits for every partition. The declaration is repeated every half
        lateness while the partition stays idle (the owner stage treats it as a lease), and a declaration
        that changed the state (it released held-back events) is checkpointed at once, so that a restart
        does not re-read that partition differently. Allowed lateness 0: nothing is ever declared."""
        lateness = self.s.allowed_lateness_ms / 1000
        if lateness <= 0:
            return
        now = time.monotonic()
        wall_offset = time.time() - now  # fetch times are wall-clock ms
        repeat = lateness / 2
        changed: list[TopicPartition] = []
        for tp, st in list(self.states.items()):
            if not isinstance(st, PartitionState) or tp in data:
                continue
            since = self._last_input.setdefault(tp, now)
            if now - since < lateness or now - self._idle.get(tp, -repeat) < repeat:
                continue
            try:
                hw = self.consumer.highwater(tp)
                polled = self.consumer.last_poll_timestamp(tp)
            except Exception:  # noqa: BLE001 - revoked meanwhile: not ours to declare
                continue
            fresh = polled is not None and polled / 1000 >= since + wall_offset + lateness
            if hw is None or not fresh:
                continue
            # caught up: the state took the partition's last record, or the consumer's position is at its end
            # (past offsets that carry no record: transaction markers, records deleted before a fresh start)
            if st.offset + 1 < hw and await _position_now(self.consumer, tp) < hw:
                continue
            if tp not in self._idle:
                self.stats["idle_declared"] += 1
            self._idle[tp] = now
            before = st.mark()
            await self.publish(st, st.declare_idle())
            if st.mark() != before:
                changed.append(tp)
        if changed:
            await self.checkpoint(changed, wait_commit=False)

    # -- partitions and checkpoints -------------------------------------------------------------------
    def _cp_key(self, tp: TopicPartition) -> bytes:
        return f"{self.s.group_id}|{tp.topic}:{tp.partition}".encode()

    async def _latest_per_key(self, topic: str, value=lambda v: v) -> dict[bytes, Any]:
        """The latest ``value(record value)`` of every key of a (compacted) topic, read to its end now."""
        out: dict[bytes, Any] = {}

        def keep(m) -> None:
            if m.key is not None:
                out[m.key] = value(m.value)

        kw = self.s.kafka_kwargs()
        c = AIOKafkaConsumer(**kw, enable_auto_commit=False)
        admin = self.admin or AIOKafkaAdminClient(**kw)  # a worker not started has no admin client of its own
        await c.start()
        try:
            if admin is not self.admin:
                await admin.start()
            with self._guard("READ", f"reading {topic} to its end", topic):
                await _read_to_end(c, admin, topic, keep)
            return out
        finally:
            await c.stop()
            if admin is not self.admin:
                await admin.close()

    async def read_checkpoints(self) -> dict[bytes, bytes]:
        return await self._latest_per_key(self.s.checkpoint_topic)

    async def read_final_ids(self) -> dict[str, int]:
        """Ids whose latest record on the (compacted) alerts topic is final, with their trading day: after a
        restart from a checkpoint, re-processing raises some of them again, and a raised state must not
        replace a final one."""
        def final_day(v: bytes | None) -> int | None:
            try:
                a = orjson.loads(v) if v is not None else None
                return _alert_day(a) if a and a.get("status") == "final" else None
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
                return None

        latest = await self._latest_per_key(self.s.alerts_topic, final_day)
        return {k.decode(): day for k, day in latest.items() if day is not None}

    def prune_final_ids(self) -> None:
        """Forget final ids of trading days before the one before the oldest day any state is in: no state
        can raise them again (a rewind goes back one checkpoint; a newly assigned partition reads them anew)."""
        known = self._state_days
        for tp, st in self.states.items():
            if st.engine.day is not None:  # None between days (after a midnight marker): keep the last one
                known[tp] = st.engine.day
        days = [known[tp] for tp in self.states if tp in known]
        if days and self.final_ids:
            low = min(days) - 1
            self.final_ids = {k: d for k, d in self.final_ids.items() if d >= low}

    async def assign(self, assigned: list[TopicPartition]) -> None:
        new = [tp for tp in assigned if tp not in self.states]
        if not new:
            return
        cps = await retry("reading checkpoints", self.read_checkpoints)
        if any(cps.get(self._cp_key(tp)) for tp in new):  # restored states will repeat some outputs
            self.final_ids.update(await retry("reading final alerts", self.read_final_ids))
        fresh: list[TopicPartition] = []
        rebuild: list[TopicPartition] = []
        for tp in new:
            blob = cps.get(self._cp_key(tp))
            st = self._state_for(tp, blob)
            if st is None:  # a checkpoint that cannot be used: rebuilt from the trading day's start
                blob = None
                st = self._state_for(tp, None)
                rebuild.append(tp)
            self.states[tp] = st
            self._last_input[tp] = time.monotonic()
            self._idle.pop(tp, None)
            if blob:
                self._saved[tp] = (blob, st.offset)
            if st.offset >= 0:
                self.consumer.seek(tp, st.offset + 1)
            elif tp not in rebuild:
                fresh.append(tp)
            self.stats["restored" if blob else "rebuilt" if tp in rebuild else "fresh"] += 1
        if fresh:  # one call: one at a time waits for a fetch each and can outlast the session timeout
            await self.consumer.seek_to_beginning(*fresh)
        if rebuild:
            await self._seek_to_day_start(rebuild)
        log.info("assigned %s", sorted(f"{tp.topic}:{tp.partition}" for tp in new))

    async def _seek_to_day_start(self, tps: list[TopicPartition]) -> None:
        """Partitions whose checkpoint could not be used are read again from the first record of the current
        trading day (Asia/Shanghai; Kafka's public ``offsets_for_times`` on the record timestamps): a day's
        state needs that day's input only, and the stages' positions restart with each day (a row's position
        is its day and its number in the day), so the owner and security stages recognise what they had."""
        start_ms = day_start_ns(int(trading_day_index(time.time_ns()))) // 1_000_000
        found = await retry("finding the trading day's start",
                            lambda: self.consumer.offsets_for_times({tp: start_ms for tp in tps}))
        for tp in tps:
            at = found.get(tp)
            key = f"{tp.topic}:{tp.partition}"
            if at is None:  # nothing since the day started: from the end
                await self.consumer.seek_to_end(tp)
                self.rebuilt[key] = f"{self.rebuilt.get(key, '')}; nothing since the trading day's start"
            else:
                self.consumer.seek(tp, at.offset)
                self.rebuilt[key] = (f"{self.rebuilt.get(key, '')}; read again from offset {at.offset}, the trading "
                                     "day's start")

    def _stage_of(self, topic: str) -> str | None:
        """``owner`` or ``security`` for those stages' topics, None for a feed topic."""
        return next((k for k, (t, _) in self.stage_topics.items() if t == topic), None)

    def _state_for(self, tp: TopicPartition, blob: bytes | None) -> PartitionState | KeyedState | None:
        """The state of a partition: restored from its checkpoint ``blob`` under this worker's current
        configuration (what changed since is logged), or new when ``blob`` is None. None when the checkpoint
        cannot be used (logged and counted): the partition is then read again from its beginning."""
        source = f"{tp.topic}:{tp.partition}"
        stage = self._stage_of(tp.topic)
        lateness = self.s.allowed_lateness_ms
        notes: list[str] = []
        try:
            if stage is not None:
                st = (KeyedState.loads(blob, self.params, lateness, stage, notes, self.cp_secret, self._cp_key(tp),
                                       self.securities) if blob
                      else KeyedState(source, self.params, self.sources, lateness, stage, self.securities))
                st.add_sources(self.sources)
                st.lateness_ms = lateness  # new or restored: the setting of this worker
            else:
                st = (PartitionState.loads(blob, self.ref, self.params, self.owner_partitions,
                                           self.security_partitions, notes, self.cp_secret, self._cp_key(tp),
                                           self.securities) if blob
                      else PartitionState(source, self.params, self.ref, self.owner_partitions,
                                          self.security_partitions, self.securities))
        except checkpoint.CheckpointError as e:
            return self._unusable(source, str(e))
        if blob and st.source != source:
            return self._unusable(source, f"the checkpoint is of {st.source}")
        for n in notes:
            log.warning("%s: restored from its checkpoint: %s", source, n)
        if st.book is None:
            st.book = RecommendationBook()
        return st

    def _unusable(self, source: str, why: str) -> None:
        """A checkpoint that cannot be used is never trusted, executed or skipped: the partition's state is
        rebuilt by reading its input again from the trading day's start (logged, counted, shown in /status)."""
        log.error("%s: the checkpoint cannot be used (%s): its state is rebuilt from the trading day's start",
                  source, why)
        self.stats["checkpoints_unusable"] += 1
        self.rebuilt[source] = why
        return None

    async def rewind(self) -> None:
        """Outputs since the last checkpoint may be lost: restore every state from its last checkpoint
        and read its partition again from there (outputs are idempotent, the owner stage skips repeats).
        A checkpoint being written in the background is dropped (a state it wrote already is valid: it is
        written only after its outputs are acknowledged)."""
        await self._drop_checkpoint(why="dropped by the rewind")
        self._inflight = []
        self._bundles = {}
        self._idle.clear()  # the restored states have not declared anything yet
        self._last_input = dict.fromkeys(self.states, time.monotonic())
        fresh: list[TopicPartition] = []
        rebuild: list[TopicPartition] = []
        for tp in list(self.states):
            saved = self._saved.get(tp)
            st = self._state_for(tp, saved[0]) if saved is not None else None
            if st is None:
                self._saved.pop(tp, None)
                self.states[tp] = self._state_for(tp, None)
                (fresh if saved is None else rebuild).append(tp)
            else:
                self.states[tp] = st
                self.consumer.seek(tp, saved[1] + 1)
        if fresh:
            await retry("seek", lambda: self.consumer.seek_to_beginning(*fresh))
        if rebuild:
            await self._seek_to_day_start(rebuild)
        self.stats["rewinds"] += 1
        self._rewinds_in_a_row += 1
        self.metrics.rewinds.inc()

    async def checkpoint(self, tps: list[TopicPartition], wait_commit: bool = True, background: bool = False) -> None:
        """1. flush outputs (and check they were delivered), 2. write states with their offsets, 3. commit.

        The states are taken at once (their blobs, with the offsets they reflect, and the outputs sent so
        far); steps 1-3 follow. A state's checkpoint is written only after every output it reflects is
        acknowledged, so a crash at any point loses nothing. ``background``: steps 1-3 run while the loop
        goes on (the loop's periodic checkpoints; the outcome is taken up by ``_checkpoint_outcome`` at the
        next one). Checkpoints are written in order: a new one waits for the one under way. The commit
        (step 3) only serves lag monitoring; ``wait_commit=False`` leaves it in the background too."""
        if not await self._checkpoint_outcome():
            if wait_commit:  # a revocation's checkpoint waits for the commits under way even when it rewinds
                await self.commits_done()
            return  # the previous checkpoint's outputs were not delivered: the states were rewound
        if self._bundles:
            await self.send_bundles()
        pending, self._inflight = self._inflight, []
        taken = {}
        for tp in tps:
            st = self.states.get(tp)
            if st is not None and st.offset >= 0:
                taken[tp] = (st.packed(), st.offset)  # sealed in a thread by the job below
        self._last_cp = time.monotonic()
        self._cp_job = asyncio.ensure_future(self._write_checkpoint(pending, taken))
        if background:
            return
        await self._checkpoint_outcome()
        if wait_commit:
            await self.commits_done()

    async def _checkpoint_outcome(self) -> bool:
        """Wait for the checkpoint under way and take up its outcome: False when its outputs were not
        delivered (the states are then rewound to the last checkpoint); its error, if any, is raised."""
        job, self._cp_job = self._cp_job, None
        if job is None or await job:
            return True
        self._give_up_after_rewinds("outputs were not delivered")
        log.warning("outputs were not delivered: back to the last checkpoint")
        await self.rewind()
        return False

    def _give_up_after_rewinds(self, cause: str) -> None:
        self._last_failure = cause
        """Raise instead of rewinding once more when MAX_REWINDS rewinds came in a row without a checkpoint
        in between (a persistent error: the worker stops with it, its partitions go to the other workers
        and a restart reads them again from the last checkpoint)."""
        if self._rewinds_in_a_row >= MAX_REWINDS:
            # kept for the loop too: raised in a rebalance listener, it only reaches aiokafka's log
            self._fatal = RuntimeError(f"{cause}, after {self._rewinds_in_a_row} rewinds in a row without a "
                                       "checkpoint; giving up (the last checkpoint stands)")
            raise self._fatal

    async def _drop_checkpoint(self, wait: float = 0.0, why: str = "") -> None:
        """Cancel the checkpoint under way, after waiting up to ``wait`` seconds for it to end (a state it
        wrote already is valid); an error it ended with is logged."""
        job, self._cp_job = self._cp_job, None
        if job is None:
            return
        try:
            if wait and not job.done():
                await asyncio.wait([job], timeout=wait)
        finally:
            job.cancel()  # nothing when it is done
        r = (await asyncio.gather(job, return_exceptions=True))[0]
        if isinstance(r, Exception):
            log.warning("a background checkpoint failed (%r), %s", r, why)

    async def _write_checkpoint(self, pending: list[asyncio.Future], packed: dict) -> bool:
        """Steps 1-3 of a checkpoint whose states were taken (packed) with ``pending`` outputs under way: False
        (and nothing written) when one of them was not delivered. The states are sealed (compressed) in a
        thread meanwhile: zlib releases the GIL, so the loop goes on with the next poll."""
        blobs, flushed = await asyncio.gather(
            asyncio.to_thread(lambda: {tp: (checkpoint.seal(raw, self.cp_secret, self._cp_key(tp)), offset)
                                       for tp, (raw, offset) in packed.items()}),
            retry("flush", self.producer.flush), return_exceptions=True)
        errors = [e for e in (blobs, flushed) if isinstance(e, BaseException)]
        if errors:  # both steps ran to their end; when both failed, the first error carries the second
            for e in errors[1:]:
                errors[0].add_note(f"and the checkpoint's other step failed too: {e!r}")
                log.error("a checkpoint's sealing and its flush both failed: %r; %r", errors[0], e)
            raise errors[0]
        failed = [r for r in await asyncio.gather(*pending, return_exceptions=True) if isinstance(r, Exception)]
        for e in failed:  # a missing ACL: no rewind would deliver them, the worker stops saying so
            d = denied(e, "WRITE", self.s.sasl_username, "publishing outputs")
            if d is not None:
                raise d
        if failed:
            log.warning("%d outputs were not delivered (%s)", len(failed), failed[0])
            return False

        async def write() -> None:  # every state at once: one round trip, not one per partition
            futs = [await self.producer.send(self.s.checkpoint_topic, blob, key=self._cp_key(tp))
                    for tp, (blob, _) in blobs.items()]
            await asyncio.gather(*futs)

        if blobs:
            await retry("checkpoint", write)
        self._saved.update(blobs)
        self._rewinds_in_a_row = 0
        offsets = {tp: offset + 1 for tp, (_, offset) in blobs.items()}
        if offsets:
            self._to_commit.update(offsets)
            if self._commit_task is None or self._commit_task.done():
                self._commit_task = asyncio.ensure_future(self._commit_pending())
        self.stats["checkpoints"] += 1
        self.metrics.checkpoints.inc()
        return True

    async def _commit_pending(self) -> None:
        """Commit the newest offsets of every partition, one commit at a time: offsets that came while a commit
        was under way are merged into the next one (a coordinator outage does not pile up stale commits)."""
        while self._to_commit:
            offsets, self._to_commit = self._to_commit, {}
            try:
                await self.consumer.commit(offsets)
            except Exception as e:  # noqa: BLE001 - a commit during a rebalance may fail; checkpoints hold
                log.warning("offset commit failed: %s", e)

    async def commits_done(self, timeout: float | None = None) -> None:
        """Wait for the offset commits under way (all of them, with no timeout)."""
        task = self._commit_task
        if task is not None and not task.done():
            await asyncio.wait([task], timeout=timeout)

    # -- outputs ------------------------------------------------------------------------------------------
    async def _topics_exist(self, names) -> None:
        """Compacted single-partition output topics (the broker topics), created when missing."""
        missing = sorted(set(names) - self._topics)
        if missing:
            specs = [topics.TopicSpec(t, 1, topics.COMPACT) for t in missing]
            await retry(f"creating {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}",
                        lambda: topics.ensure(self.admin, specs, self.s.sasl_username))
            self._topics.update(missing)

    async def publish(self, st, out: Output) -> None:
        async def send(topic, value, key=None, partition=None):
            self._inflight.append(await self.producer.send(topic, value, key=key, partition=partition))

        for a in out.alerts:
            if a["status"] == "final":
                self.final_ids[a["alert_id"]] = _alert_day(a)
            elif a["alert_id"] in self.final_ids:
                self.stats["raised_after_final_skipped"] += 1  # repeated after a restart: final already out
                continue
            v = dumps(a)
            key = a["alert_id"].encode()
            await send(self.s.alerts_topic, v, key=key)
            self.stats[f"alerts_{a['status']}"] += 1
            self.metrics.alerts.labels(a["rule"], a["severity"], a["status"]).inc()
            for broker, view in broker_views(a).items():
                try:
                    t = self.s.broker_topic(broker)
                except ValueError as e:  # an id inline in events that cannot name a topic: kept, never fatal
                    self.stats["rejects"] += 1
                    await send(self.s.rejects_topic, orjson.dumps(
                        {"field": "broker", "reason": str(e), "alert_id": a["alert_id"]}))
                    continue
                await self._topics_exist([t])
                await send(t, dumps(view), key=view["alert_id"].encode())  # a firm's copy: its own id
            rec = st.book.add(a, self.params["recommendations"], self.history_of(a["subject"]))
            if rec is not None:
                self._apply_history(rec)
                self.metrics.recommendations.labels(rec["measure"]).inc()
                await send(self.s.recommendations_topic, dumps(rec), key=rec["recommendation_id"].encode())
        for r in out.rejects:
            self.stats["rejects"] += 1
            self.metrics.rejects.labels(str(r.get("field") or "record")[:32]).inc()
            await send(self.s.rejects_topic, rejects_.encode(r))  # bounded: a broker refuses large records
        bundles = self._bundles
        for stage, msgs in out.routed.items():
            topic, n = self.stage_topics[stage]
            for dest, msg in msgs:
                for p in (range(n) if dest is None else (dest,)):
                    bundles.setdefault((topic, p), []).append(msg)
        if sum(len(v) for v in bundles.values()) > 2000:
            await self.send_bundles()

    async def send_bundles(self) -> None:
        bundles, self._bundles = self._bundles, {}
        for (topic, p), items in sorted(bundles.items()):
            chunk: list[bytes] = []
            size = 0
            for item in items:  # keep each record under BUNDLE_BYTES (brokers refuse large messages)
                if chunk and size + len(item) > BUNDLE_BYTES:
                    self._inflight.append(await self.producer.send(topic, pack_bundle(chunk), partition=p))
                    chunk, size = [], 0
                chunk.append(item)
                size += len(item) + 4
            if chunk:
                self._inflight.append(await self.producer.send(topic, pack_bundle(chunk), partition=p))

    # -- escalation history -------------------------------------------------------------------------------
    def history_of(self, subject: dict) -> list[dict[str, Any]]:
        """Earlier recommendations of a subject (the recommendations topic, as replay's ``--history``)."""
        return list(self.history.get(orjson.dumps(subject, option=orjson.OPT_SORT_KEYS), {}).values())

    def _apply_history(self, value) -> None:
        """One recommendation (a record of the recommendations topic, or one this worker publishes) into the
        history. Anything else on that topic is counted and ignored (it is not ours to reject)."""
        try:
            rec = orjson.loads(value) if isinstance(value, (bytes, bytearray, memoryview, str)) else value
            key = orjson.dumps(rec["subject"], option=orjson.OPT_SORT_KEYS)
            if rec.get("kind") != "recommendation" or type(rec["trading_day"]) is not str or \
                    rec["measure"] not in LADDER:
                raise ValueError("not a recommendation")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.stats["history_ignored"] += 1
            return
        self.history.setdefault(key, {})[rec["recommendation_id"]] = rec

    # -- compacted topics the worker keeps in memory --------------------------------------------------------
    async def _mirror(self, topic: str, apply) -> AIOKafkaConsumer:
        """A consumer of ``topic`` that has read it to its end, ``apply``-ing each record."""
        c = AIOKafkaConsumer(**self.s.kafka_kwargs(), enable_auto_commit=False)
        await c.start()
        try:
            with self._guard("READ", f"reading {topic} to its end", topic):
                await _read_to_end(c, self.admin, topic, apply)
        except BaseException:
            await c.stop()
            raise
        return c

    async def _follow(self, c: AIOKafkaConsumer, apply, after=None) -> None:
        """``apply`` every new record of ``c``'s topic, and ``after`` each poll that brought some. A missing ACL
        stops the worker (the loop raises it)."""
        while True:
            try:
                data = await c.getmany(timeout_ms=500)
            except KafkaError as e:
                d = denied(e, "READ", self.s.sasl_username, "following a topic")
                if d is None:
                    raise
                self._fatal = d
                return
            for msgs in data.values():
                for m in msgs:
                    apply(m)
            if data and after is not None:
                await after()

    # -- reference data -----------------------------------------------------------------------------------
    async def seed_refdata(self, csv_path: str) -> int:
        """Send the accounts of a CSV to the reference topic: key ``VENUE:account``, value the account's whole
        history (``ref_value``), its rejects to the rejects topic."""
        rejects: list = []
        ref = RefData.load_csv(csv_path, rejects)
        with self._guard("WRITE", "seeding reference data"):
            for (venue, account), h in ref.histories.items():
                key = f"{('SSE', 'SZSE', 'BSE')[venue]}:{account}".encode()
                await self.producer.send(self.s.ref_topic, ref_value(h), key=key)
            for r in rejects:
                await self.producer.send(self.s.rejects_topic, rejects_.encode(r.to_dict()))
        await self.producer.flush()
        return len(ref.histories)

    def event_time(self) -> int | None:
        """The newest event time this worker's stages have seen (None: none yet)."""
        seen = [st.engine.max_seen for st in self.states.values() if st.engine.max_seen is not None]
        return max(seen) if seen else None

    def _apply_ref(self, key: bytes | None, value: bytes | None) -> None:
        """One reference-topic record: the account's whole history (see ``ref_value``), or a tombstone. A
        change that covers events already processed (late) applies from its arrival on: logged and listed in
        ``status()["ref_late"]``."""
        if not key or b":" not in key:
            self.stats["ref_rejects"] += 1
            return
        venue, account = key.decode("utf-8", "replace").split(":", 1)
        try:
            before = self.ref.history(VENUE_CODE.get(venue, -1), account)
            if value is None:
                self.ref.remove(venue, account)
            else:
                d = orjson.loads(value)
                if type(d) is not dict:
                    raise RefDataError(f"a JSON {type(d).__name__}: expected an object with owner, broker, reported "
                                       "[, valid_from], or with rows (the account's history)")
                rows = d["rows"] if "rows" in d else [d]
                if type(rows) is not list or not rows:
                    raise RefDataError(f"rows: a {type(rows).__name__}: expected a non-empty list of rows")
                self.ref.set_history(venue, account, rows)
                self._new_brokers.update(r.get("broker") for r in rows if type(r) is dict and r.get("broker"))
            self.stats["ref_updates"] += 1
            after = self.ref.history(VENUE_CODE.get(venue, -1), account)
            at = first_difference(before, after)
            now = self.event_time()
            seen = any(account in st.reg.accounts.ids for st in self.states.values())  # events of it were seen
            if at is not False and now is not None and at <= now and seen:
                self.stats["ref_late_updates"] += 1
                late = {"key": f"{venue}:{account}", "changed_from": valid_from_text(at),
                        "arrived_at_event_time": ns_to_iso(now),
                        "note": "events already processed keep the answer they had; later ones get the new one "
                                "(surveil replay of the day gives the as-of answer)"}
                self.ref_late.append(late)
                del self.ref_late[:-REF_LATE_KEPT]
                log.warning("late reference update for %s: it changes the answers from %s, but events up to %s "
                            "are processed already; it applies from its arrival on", late["key"],
                            late["changed_from"] or "the start", late["arrived_at_event_time"])
        except Exception as e:  # noqa: BLE001 - a bad reference record is counted and kept, never fatal
            self.stats["ref_rejects"] += 1
            log.warning("reference record %r rejected: %.500s", key[:200], e)
            self._ref_rejects.append({"source": self.s.ref_topic, "field": "reference", "reason": str(e),
                                      "key": key.decode("utf-8", "replace"),
                                      "original": (value or b"").decode("utf-8", "replace")})

    async def _after_ref_updates(self) -> None:
        """Keep the rejected reference records, and create the topics of brokers new in reference data."""
        rejects, self._ref_rejects = self._ref_rejects, []
        for r in rejects:
            self.metrics.rejects.labels("reference").inc()
            self._inflight.append(await self.producer.send(self.s.rejects_topic, rejects_.encode(r)))
        brokers, self._new_brokers = self._new_brokers, set()
        if brokers:
            await self._broker_topics(brokers)

    async def _broker_topics(self, brokers) -> None:
        """Every broker named in reference data gets its alert topic now, not at its first alert, so that a
        broker can subscribe before anything has happened (and the first alert waits for no topic). A failure
        is logged, not fatal: the topic is then created at the broker's first alert (see publish)."""
        try:
            names = []
            for b in brokers:
                try:
                    names.append(self.s.broker_topic(b))
                except ValueError as e:
                    log.warning("no alert topic for a broker: %s", e)
            await self._topics_exist(names)
        except Exception:  # noqa: BLE001
            log.exception("creating the alert topics of %d brokers", len(brokers))

    # -- securities reference data (contract version 2; like the accounts above) ----------------------------------
    async def seed_securities(self, csv_path: str) -> int:
        """Send the securities of a CSV to the securities topic (key ``VENUE:symbol``), its rejects to the rejects
        topic."""
        rejects: list = []
        sec = Securities.load_csv(csv_path, rejects)
        with self._guard("WRITE", "seeding securities"):
            await self._seed_securities(sec, rejects)
        await self.producer.flush()
        return len(sec)

    async def _seed_securities(self, sec: Securities, rejects: list) -> None:
        for (venue, symbol), r in sec.items.items():
            await self.producer.send(self.s.securities_topic, orjson.dumps(Securities.record_value(r)),
                                     key=f"{VENUES[venue]}:{symbol}".encode())
        for r in rejects:
            await self.producer.send(self.s.rejects_topic, orjson.dumps(r.to_dict(), default=str))

    def _apply_security(self, key: bytes | None, value: bytes | None) -> None:
        try:
            self.securities.set_record(key, value)
            self.stats["securities_updates"] += 1
        except Exception as e:  # noqa: BLE001 - a bad securities record is counted and kept, never fatal
            self.stats["securities_rejects"] += 1
            log.warning("securities record %r rejected: %s", key, e)
            self._sec_rejects.append({"source": self.s.securities_topic, "field": getattr(e, "field", None) or
                                      "securities", "value": getattr(e, "value", None),
                                      "reason": getattr(e, "reason", None) or str(e), "message": str(e),
                                      "key": (key or b"").decode("utf-8", "replace"),
                                      "original": (value or b"").decode("utf-8", "replace")})

    async def _after_securities_updates(self) -> None:
        """Keep the rejected securities records (on the rejects topic)."""
        rejects, self._sec_rejects = self._sec_rejects, []
        for r in rejects:
            self.metrics.rejects.labels("securities").inc()
            self._inflight.append(await self.producer.send(self.s.rejects_topic, orjson.dumps(r, default=str)))

    async def update_gauges(self) -> None:
        """State size, partitions and lags (every few seconds and at each scrape, not per record)."""
        self.metrics.sample(self)

    def readiness(self) -> list[str]:
        """Why this worker is not ready (empty: ready): ready only while every assigned partition is being
        processed. Liveness (``/health``) is only that the loop runs; an orchestrator routes work and waits
        for rollouts on this (``/ready``)."""
        why = []
        if not self.ready.is_set():
            why.append("starting")
        if self.stop.is_set():
            why.append("stopping")
        if self._fatal is not None:
            why.append(str(self._fatal))
        if self._rewinds_in_a_row >= 2:
            why.append(f"{self._rewinds_in_a_row} rewinds in a row without a checkpoint: outputs are not delivered "
                       f"({self._last_failure or 'see the log'})")
        consumer = getattr(self, "consumer", None)
        if consumer is not None:
            try:
                assigned = consumer.assignment()
            except Exception:  # noqa: BLE001 - not subscribed yet
                assigned = set()
            missing = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned if tp not in self.states)
            if missing:
                why.append(f"assigned but not processing: {', '.join(missing[:10])}")
        return why

    def status(self) -> dict[str, Any]:
        parts = {}
        for tp, st in sorted(self.states.items(), key=lambda x: (x[0].topic, x[0].partition)):
            key = f"{tp.topic}:{tp.partition}"
            if isinstance(st, KeyedState):
                parts[key] = {"offset": st.offset, **st.status()}
            else:
                parts[key] = {"offset": st.offset, "progress": st.progress_sent, "day": st.engine.day,
                              "idle": tp in self._idle}
            if key in self.rebuilt:
                parts[key]["rebuilt"] = self.rebuilt[key]
        return {"states": parts, "frame_decoder": "compiled" if binary.FAST else "numpy",
                "ref_late": list(self.ref_late), **self.stats}
