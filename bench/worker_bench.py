"""Stream worker throughput and alert latency on a real local Kafka (issue #3 §6).

    python bench/worker_bench.py [--events 2000000] [--long-events 6000000] [--accounts 20000] [--rounds 2]
                                 [--max-round-seconds 30]
                                 [--skip-json] [--skip-binary] [--skip-latency] [--latency-days 3]
                                 [--latency-rate 100000] [--skip-probe] [--profile] [--no-save]

Prints a JSON summary on stdout (progress on stderr) and saves the full result with
``common.save("worker", ...)`` in ``bench/results/``. About 4.7 minutes with ``--rounds 5`` and the worker
of 2026-11-22, less with the default 2 rounds (most of it the worker rounds, the longer backlog and the
four 21-second paced days).

One worker process (in-process ``Worker``, asyncio), the broker on the same machine. The command starts
its own single-node Kafka (``kafka_local.start``, heap 1g) in a temporary folder on free ports, and
stops it and deletes its data at the end, whatever happens.

Throughput, on a backlog (the feed topics are filled *before* any consumer runs, so the producer does
not limit the figure), once with binary frames and once with JSON-array frames (separate topics):

- *bare*: an aiokafka consumer without a group (manual assignment, from the earliest offset), with the
  worker's fetch settings (``max_partition_fetch_bytes`` 16 MiB, ``fetch_max_bytes`` 64 MiB, the same
  ``getmany(timeout_ms=100, max_records=500)`` calls), reads every record to the end and counts the
  events: binary frames by the ``n_records`` field of each frame header, JSON arrays by
  ``value.count(b'"ts"')`` (no parsing);
- *bare, deserialising* (``bare_deser_*``): the same consumer, but each record's value is deserialised as
  a generic consumer of the feed would: ``orjson.loads`` of each JSON record (the "bare aiokafka
  ``getmany`` loop with ``orjson.loads`` per record" of docs/architecture.md §2), and each binary frame
  decoded to columns with ``binary.decode_frame_at`` (every string interned, into a registry of its own);
- *worker*: a fresh ``Worker`` (fresh group, default checkpoint interval; its feed consumer reads with
  aiokafka's own reader, as the bare consumers do: the in-place fetch of 2026-12-02 to 2026-12-07,
  surveil/stream/kafka_read.py, was removed because it replaced a private aiokafka function) on the same
  topics, timed from
  ``w.ready`` until every feed partition's state offset reached the partition's end offset (polled
  every 10 ms), and separately until the owner stage has emitted every final alert (as many as
  ``replay`` of the same file gives; the alerts topic is then checked to equal replay's alerts).
  *Sustained* (``worker_eps_sustained``, the §6 figure) is timed from the moment every partition is
  assigned (group joined, checkpoints read) to the feed's end, as the bare consumer is timed from its
  manual assignment; ``worker_eps`` also counts the group join (about 0.8 s on this machine).
Each bare round and each worker round also records this process's CPU time (``time.process_time``; the
worker's threads included, the broker's process not), and ``cpu_ratio_to_*`` is the bare consumer's CPU time
over the worker's for the same events, round by round: how much CPU the worker spends per event compared
with the bare consumer, which moves less with how busy the shared machine is than the rates do.
The binary measurement runs a second time over a longer backlog (``--long-events``, 6,000,000 by default,
the same accounts; 0 skips it), reported as ``binary_long``: on the default day the whole run lasts about
a second, of which a fresh worker's cold start (every account and string met once) is a large part.
Each round runs bare, bare deserialising and the worker, in that order; the best of each is reported, and
the median of each round's worker / its bare round. A format gets no further round once a
worker round took longer than ``--max-round-seconds`` (30 s), which keeps the command under 10 minutes
with a slow worker. The first group on a fresh broker waits for ``__consumer_offsets``: a throw-away
group joins once before any measured run.

Latency, paced (``--latency-rate`` events/s, the speed factor computed from the file: events / the
day's span in event time), feed and alerts topics created with ``message.timestamp.type=LogAppendTime``
so every timestamp is the broker's clock. The feed runs in its own process (it stands for the exchange
gateway), the worker in this one. Each feed partition first gets one progress marker at 00:00 of the
day (see :func:`seed_markers` for why), and the feed starts once the worker has had no new partition
assignment for 6 s (a slow first assignment can get the worker expelled from its group, and it then
joins again: that start-up cost is reported, not measured as latency). When the feed has ended, the
command also records how long the worker took to reach the feed's end offsets
(``worker_behind_at_feed_end_s``: about 0 when it kept up). For every *raised* alert:

- per account (``order_rate_1s``, ``daily_orders_20k``): alert record timestamp - timestamp of the feed
  record, in the account's partition, that carried the event that raised it (``raised_at`` /
  ``threshold_reached_at`` of the evidence, that account);
- owner level (``sell_burst_1m``): alert record timestamp - timestamp of the feed record that carried
  the sell trade at ``raised_at`` (an account of the alert's ``by_account``, any partition).

``--latency-days`` days (seeds 11, 12, ... on consecutive dates) run with the default rules, each with
a fresh worker and topics; they only plant 2 per-account and 2 owner-level alerts a day. A *probe*
day then runs with lowered thresholds (``PROBE_OVERRIDES``: 3 messages/s, 300 messages/day, 300,000
yuan/min, so that about a thousand background accounts raise alerts) to give the distribution enough
samples; its figures are reported apart from the default-rules ones. Percentiles are nearest-rank, and
each distribution says how many samples its p99 rests on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import logging
import math
import multiprocessing
import pstats
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from common import CACHE, day_file, machine, save

from surveil import kafka_local
from surveil.actions import RECO_PARAMS
from surveil.engine import load_config
from surveil.engine.alerts import dumps, sort_key
from surveil.events import binary
from surveil.events.batch import Registry
from surveil.events.io import read_events
from surveil.events.schema import SIDE_S, TRADE, VENUES, day_start_ns, trading_day_index
from surveil.feed import FeedStats, feed, marker_value, partition_for
from surveil.replay import replay
from surveil.stream import topics as topics_mod
from surveil.stream.settings import Settings
from surveil.stream.worker import Worker

log = logging.getLogger("worker_bench")

FETCH = {"max_partition_fetch_bytes": 16 << 20, "fetch_max_bytes": 64 << 20}  # as in Worker.start
#: the bare consumer's ``getmany(max_records=...)``: the worker's value (Worker.loop, commit ab70890)
BARE_MAX_RECORDS = 500  # the worker's getmany(max_records=...)
LOG_APPEND = {"message.timestamp.type": "LogAppendTime"}
ACCOUNT_RULES = ("order_rate_1s", "daily_orders_20k")
OWNER_RULES = ("sell_burst_1m",)
#: lowered thresholds of the probe day (defaults: 300 / s, 20,000 / day, 1e9 yuan / min)
PROBE_OVERRIDES = {"order_rate_1s": {"threshold": 3}, "daily_orders_20k": {"threshold": 300},
                   "sell_burst_1m": {"threshold_yuan": 300_000}}
LATENCY_DATES = ("2024-02-19", "2024-02-20", "2024-02-21", "2024-02-22", "2024-02-23", "2024-02-26",
                 "2024-02-27", "2024-02-28", "2024-02-29", "2024-03-01")
WORKER_DEADLINE_S = 300.0
#: latency runs: the feed starts when the worker has had no new partition assignment for this long
SETTLE_S = 6.0
#: ... or after this long (then ``worker_settled_before_feed`` is false)
SETTLE_MAX_S = 60.0
TARGETS = {"binary_eps": 1_000_000, "json_eps": 150_000, "ratio_to_bare": 0.5,
           "account_p99_ms": 250, "owner_p99_ms": 2000 + 500}


# --------------------------------------------------------------------------------------------------
# broker


def start_broker(data_dir: Path) -> kafka_local.BrokerInfo:
    for _ in range(3):
        port, cport = kafka_local.free_ports(2)
        try:
            return kafka_local.start(data_dir, port=port, controller_port=cport, heap="1g", die_with_parent=True,
                                     echo=lambda m: print(m, file=sys.stderr))
        except kafka_local.PortBusy:
            continue
    raise RuntimeError("no free ports for the broker")


def settings_for(bootstrap: str, prefix: str, feed_prefix: str, accounts: Path) -> Settings:
    """Fresh output topics and group under ``prefix``; feed topics under ``feed_prefix``; partitions and
    checkpoint interval at their defaults."""
    fp = feed_prefix
    return Settings(bootstrap_servers=bootstrap, feed_topics=(fp + "feed.sse", fp + "feed.szse", fp + "feed.bse"),
                    alerts_topic=prefix + "alerts", recommendations_topic=prefix + "recommendations",
                    broker_topic_prefix=prefix + "alerts.broker.", rejects_topic=prefix + "rejects",
                    ref_topic=prefix + "ref", owner_topic=prefix + "owner", checkpoint_topic=prefix + "checkpoints",
                    group_id=prefix + "workers", accounts_csv=str(accounts))


def prefix() -> str:
    return f"wb{uuid.uuid4().hex[:8]}."


# --------------------------------------------------------------------------------------------------
# Kafka helpers


def feed_tps(s: Settings, st: FeedStats) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in s.feed_topics for p in range(st.topics[t])]


async def end_offsets(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        return await c.end_offsets(tps)
    finally:
        await c.stop()


async def read_all(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, list]:
    """Every record of ``tps`` up to their current end offsets."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **FETCH)
    await c.start()
    out: dict[TopicPartition, list] = {tp: [] for tp in tps}
    try:
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        end = await c.end_offsets(tps)
        left = {tp for tp in tps if end[tp] > 0}
        while left:
            for tp, msgs in (await c.getmany(timeout_ms=500)).items():
                out[tp].extend(msgs)
                if msgs and msgs[-1].offset >= end[tp] - 1:
                    left.discard(tp)
    finally:
        await c.stop()
    return out


async def topic_tps(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        desc = await admin.describe_topics([topic])
        return [TopicPartition(topic, p["partition"]) for p in desc[0]["partitions"]]
    finally:
        await admin.close()


async def create_topics(bootstrap: str, specs: list[topics_mod.TopicSpec]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await topics_mod.ensure(admin, specs)  # the timestamp type is checked on the records read back
    finally:
        await admin.close()


def latest_finals(records) -> list[dict]:
    latest = {}
    for m in records:
        latest[m.key] = orjson.loads(m.value)
    return sorted((a for a in latest.values() if a.get("status") == "final"), key=sort_key)


def _differences(got: list[dict], want: list[dict]) -> dict:
    """Which final alerts differ from replay's (ids missing, extra, differing, with the rule and fields)."""
    g = {a["alert_id"]: a for a in got}
    w = {a["alert_id"]: a for a in want}
    differing = {k: {"rule": w[k]["rule"], "fields": sorted(f for f in w[k] if w[k][f] != g[k].get(f)),
                     "evidence": sorted(f for f in w[k]["evidence"] if w[k]["evidence"][f] != g[k]["evidence"].get(f))}
                 for k in g.keys() & w.keys() if canonical([g[k]]) != canonical([w[k]])}
    return {"missing": sorted(w.keys() - g.keys())[:20], "extra": sorted(g.keys() - w.keys())[:20],
            "differing": dict(list(differing.items())[:20]), "n_differing": len(differing)}


def canonical(alerts) -> bytes:
    return b"".join(dumps(a) + b"\n" for a in sorted(alerts, key=sort_key))


async def alerts_records(bootstrap: str, topic: str) -> list:
    recs = await read_all(bootstrap, await topic_tps(bootstrap, topic))
    return [m for msgs in recs.values() for m in msgs]


# --------------------------------------------------------------------------------------------------
# throughput


async def bare(bootstrap: str, tps: list[TopicPartition], end: dict, fmt: str, deserialise: bool = False) -> dict:
    """A bare consumer without a group: read everything to the end, count events without decoding
    (``deserialise``: each record's value deserialised instead, see the module docstring)."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", **FETCH)
    await c.start()
    try:
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        unpack = binary.HEADER.unpack_from
        reg = Registry()
        events = records = 0
        left = {tp for tp in tps if end[tp] > 0}
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        t_first = None
        while left:
            data = await c.getmany(timeout_ms=100, max_records=BARE_MAX_RECORDS)  # the worker's call
            if data and t_first is None:
                t_first = time.perf_counter()
            for tp, msgs in data.items():
                for m in msgs:
                    v = m.value
                    records += 1
                    if deserialise:
                        events += _deserialise(v, reg)
                    elif fmt == "binary":
                        if v[:4] == b"SVEV":
                            events += unpack(v, 0)[3]
                    elif v[:1] == b"[":
                        events += v.count(b'"ts"')
                if msgs and msgs[-1].offset >= end[tp] - 1:
                    left.discard(tp)
        secs = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        await c.stop()
    return {"events": events, "records": records, "seconds": secs, "eps": events / secs,
            "seconds_to_first_record": (t_first or t0 + secs) - t0, "cpu_seconds": cpu}


def _deserialise(v: bytes, reg: Registry) -> int:
    """A record value as a generic consumer of the feed deserialises it: a binary frame decoded to columns
    (every string interned), JSON parsed with orjson (a progress marker too); the number of events in it."""
    if v[:4] == binary.MAGIC:
        return len(binary.decode_frame_at(v, 0, reg, "bare", 0, [])[0])
    d = orjson.loads(v)
    return len(d) if type(d) is list else int(d.get("kind") != "progress")


async def run_worker(s: Settings, ends: dict[TopicPartition, int], expected_finals: int, events: int,
                     params: dict | None = None, profile: cProfile.Profile | None = None) -> dict:
    """A fresh worker on the pre-loaded feed topics: time to the end of the feed, and to the last final."""
    w = Worker(s, params=params)
    task = asyncio.create_task(w.run())
    ready = asyncio.create_task(w.ready.wait())
    await asyncio.wait([task, ready], timeout=120, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
        raise RuntimeError("the worker stopped before it was ready")
    if not ready.done():
        ready.cancel()
        raise TimeoutError("the worker was not ready within 120 s")
    if profile is not None:
        profile.enable()
    t0 = time.perf_counter()
    tps = [tp for tp in ends if ends[tp] > 0]
    t_assigned = t_first = t_done = t_final = cpu_assigned = cpu_done = None
    try:
        while True:
            if task.done():
                task.result()
                raise RuntimeError("the worker stopped")
            now = time.perf_counter()
            states = w.states
            if t_assigned is None and all(tp in states for tp in ends):
                t_assigned, cpu_assigned = now, time.process_time()
            if t_first is None and w.stats["records"]:
                t_first = now
            if t_done is None and all((st := states.get(tp)) is not None and st.offset >= ends[tp] - 1
                                      for tp in tps):
                t_done, cpu_done = now, time.process_time()
            if t_done is not None and w.stats["alerts_final"] >= expected_finals:
                t_final = now
                break
            if now - t0 > WORKER_DEADLINE_S:
                raise TimeoutError(f"worker not done after {WORKER_DEADLINE_S:.0f} s: "
                                   f"{json.dumps(w.status(), default=str)[:2000]}")
            await asyncio.sleep(0.01)  # 10 ms: the run lasts about a second
    finally:
        if profile is not None:
            profile.disable()
        w.stop.set()
        try:
            await asyncio.wait_for(task, 60)
        except Exception:  # noqa: BLE001
            log.exception("stopping the worker")
    to_end = t_done - t0
    return {"seconds_to_feed_end": to_end, "eps": events / to_end,
            "seconds_to_last_final": t_final - t0, "eps_incl_owner_finals": events / (t_final - t0),
            "seconds_to_assignment": (t_assigned or t_done) - t0, "seconds_to_first_record": (t_first or t_done) - t0,
            "eps_from_first_record": events / (t_done - (t_first or t0)),
            # sustained: from the moment every partition is assigned (the group joined, checkpoints read),
            # like the bare consumer, which is timed from its manual assignment
            "eps_sustained": events / (t_done - (t_assigned or t0)),
            # this process's CPU time over the same span (the worker's threads included, the broker not)
            "cpu_seconds_sustained": cpu_done - (cpu_assigned if cpu_assigned is not None else cpu_done),
            "assignments": _assignments(w) / max(len(w.states), 1),
            "stats": {k: v for k, v in sorted(w.stats.items())}}


async def warm_up_groups(bootstrap: str, topic: str) -> float:
    """Join a throw-away group once: the first group on a fresh broker waits for ``__consumer_offsets`` to be
    created (GroupCoordinatorNotAvailable for a second or more), which must not count in a measured run."""
    t0 = time.perf_counter()
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"warm-up-{uuid.uuid4().hex[:6]}",
                         enable_auto_commit=False)
    await c.start()
    try:
        while not c.assignment() and time.perf_counter() - t0 < 60:
            await c.getmany(timeout_ms=200, max_records=1)
    finally:
        await c.stop()
    return time.perf_counter() - t0


async def throughput(bootstrap: str, svb: Path, acc: Path, fmt: str, rounds: int, want, profile: bool,
                     max_round_s: float, frame_size: int = 2000) -> dict:
    feed_s = settings_for(bootstrap, prefix(), prefix(), acc)
    print(f"[{fmt}] pre-loading {svb.name} into {feed_s.feed_topics[0]}...", file=sys.stderr, flush=True)
    st = await feed([svb], feed_s, speed="max", fmt=fmt, frame_size=frame_size)
    tps = feed_tps(feed_s, st)
    ends = await end_offsets(bootstrap, tps)
    out = {"feed_preload": {"events": st.events, "frames": st.frames, "markers": st.markers, "bytes": st.bytes,
                            "events_per_frame": st.events / max(st.frames, 1), "seconds": st.seconds,
                            "eps": st.events_per_second, "records": sum(ends.values()), "partitions": len(tps)},
           "bare_rounds": [], "bare_deser_rounds": [], "worker_rounds": []}
    print(f"[{fmt}] {st.summary()}", file=sys.stderr, flush=True)
    out["group_warm_up_seconds"] = await warm_up_groups(bootstrap, feed_s.feed_topics[0])
    want_canon = canonical(want.alerts)
    for r in range(rounds):
        for key, deser, label in (("bare", False, "bare"), ("bare_deser", True, "bare, deserialising")):
            gc.collect()
            b = await bare(bootstrap, tps, ends, fmt, deserialise=deser)
            if b["events"] != st.events:
                raise AssertionError(f"{label} consumer counted {b['events']} events, the feed sent {st.events}")
            out[f"{key}_rounds"].append(b)
            print(f"[{fmt}] round {r + 1} {label}: {b['eps']:,.0f} events/s "
                  f"(first records after {b['seconds_to_first_record']:.2f} s; CPU {b['cpu_seconds']:.2f} s)",
                  file=sys.stderr, flush=True)
        gc.collect()
        s = settings_for(bootstrap, prefix(), "", acc)
        s = Settings(**{**s.__dict__, "feed_topics": feed_s.feed_topics})
        wr = await run_worker(s, ends, len(want.alerts), st.events)
        finals = latest_finals(await alerts_records(bootstrap, s.alerts_topic))
        wr["final_alerts"] = len(finals)
        wr["equals_replay"] = canonical(finals) == want_canon
        out["worker_rounds"].append(wr)
        print(f"[{fmt}] round {r + 1} worker: {wr['eps']:,.0f} events/s to the feed's end "
              f"({wr['seconds_to_feed_end']:.2f} s; assigned after {wr['seconds_to_assignment']:.2f} s, "
              f"{wr['eps_sustained']:,.0f} events/s from there, CPU {wr['cpu_seconds_sustained']:.2f} s), "
              f"last final after {wr['seconds_to_last_final']:.2f} s, "
              f"equals replay: {wr['equals_replay']}", file=sys.stderr, flush=True)
        if wr["seconds_to_last_final"] > max_round_s and r + 1 < rounds:
            out["rounds_note"] = (f"stopped after {r + 1} round(s): a worker round took "
                                  f"{wr['seconds_to_last_final']:.0f} s > --max-round-seconds {max_round_s:.0f}")
            print(f"[{fmt}] {out['rounds_note']}", file=sys.stderr, flush=True)
            break
    best_w = max(out["worker_rounds"], key=lambda x: x["eps"])
    out["worker_eps_sustained"] = max(x["eps_sustained"] for x in out["worker_rounds"])
    # the bare consumer's rounds spread widely on this shared machine (3.4-6.6 M events/s in one run), so
    # best/best rests on two lucky rounds: also the median of each round's worker / its bare round
    for key in ("bare", "bare_deser"):
        best_b = max(out[f"{key}_rounds"], key=lambda x: x["eps"])
        out[f"{key}_eps"] = best_b["eps"]
        out[f"ratio_sustained_to_{key}"] = out["worker_eps_sustained"] / best_b["eps"]
        paired = [w["eps_sustained"] / b["eps"] for b, w in zip(out[f"{key}_rounds"], out["worker_rounds"])]
        out[f"ratio_sustained_to_{key}_per_round"] = paired
        out[f"ratio_sustained_to_{key}_median_of_rounds"] = statistics.median(paired)
        # CPU time of this process per event, the bare consumer's over the worker's, round by round: less
        # exposed than the rates to how busy the shared machine is (the broker's CPU is not in it)
        cpu = [b["cpu_seconds"] / w["cpu_seconds_sustained"] if w["cpu_seconds_sustained"] > 0 else float("nan")
               for b, w in zip(out[f"{key}_rounds"], out["worker_rounds"])]
        out[f"cpu_ratio_to_{key}_per_round"] = cpu
        out[f"cpu_ratio_to_{key}_median_of_rounds"] = statistics.median(cpu)
    out["bare_deser_method"] = ("each frame decoded to columns (binary.decode_frame_at, every string interned)"
                                if fmt == "binary" else "orjson.loads of each record")
    out["bare_max_records"] = BARE_MAX_RECORDS
    out["bare_count_method"] = ("sum of n_records of the frame headers (binary.HEADER)" if fmt == "binary"
                                else "value.count(b'\"ts\"') per JSON-array record (no parsing)")
    out["worker_eps"] = best_w["eps"]
    out["worker_eps_incl_owner_finals"] = max(x["eps_incl_owner_finals"] for x in out["worker_rounds"])
    out["worker_seconds_to_last_final"] = min(x["seconds_to_last_final"] for x in out["worker_rounds"])
    out["ratio_worker_to_bare"] = best_w["eps"] / out["bare_eps"]
    out["ratio_worker_incl_owner_finals_to_bare"] = out["worker_eps_incl_owner_finals"] / out["bare_eps"]
    out["equals_replay"] = all(x["equals_replay"] for x in out["worker_rounds"])
    if profile:
        prof = cProfile.Profile()
        s = settings_for(bootstrap, prefix(), "", acc)
        s = Settings(**{**s.__dict__, "feed_topics": feed_s.feed_topics})
        wr = await run_worker(s, ends, len(want.alerts), st.events, profile=prof)
        buf = io.StringIO()
        ps = pstats.Stats(prof, stream=buf)
        ps.sort_stats("tottime").print_stats(30)
        ps.sort_stats("cumulative").print_stats(40)
        print(f"[{fmt}] profiled worker run: {wr['eps']:,.0f} events/s (under cProfile)\n{buf.getvalue()}",
              file=sys.stderr, flush=True)
        out["profiled_eps"] = wr["eps"]
        out["profile_top_tottime"] = _top(prof, "tottime", 20)
    return out


def _top(prof: cProfile.Profile, key: str, n: int) -> list[dict]:
    st = pstats.Stats(prof)
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _) in st.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({fn})", "calls": nc, "tottime": round(tt, 3),
                     "cumtime": round(ct, 3)})
    rows.sort(key=lambda r: -r[key])
    return rows[:n]


# --------------------------------------------------------------------------------------------------
# latency


async def seed_markers(s: Settings, ts: int) -> None:
    """One progress marker (00:00 of the day) in every feed partition before the worker starts.

    Work-around for a worker start-up problem: ``Worker.assign`` awaits ``seek_to_beginning`` once per
    partition, and on an idle partition each of them waits for a fetch long-poll (``fetch_max_wait_ms``,
    500 ms); with the default 16 partitions the rebalance callback takes ~8 s, the member misses its
    session timeout (10 s), is expelled, joins again, and so on for as long as the feed is idle. With a
    record in each feed partition the first fetches return at once, and once a state has processed a
    record it is restored from its checkpoint with a plain ``seek``."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all")
    await p.start()
    sender = logging.getLogger("aiokafka.producer.sender")
    level = sender.level
    sender.setLevel(logging.ERROR)  # a just-created topic answers NotLeaderForPartition once; retried
    try:
        for t in s.feed_topics:
            for part in range(s.feed_partitions):
                await p.send(t, marker_value(ts), partition=part)
        await p.flush()
    finally:
        sender.setLevel(level)
        await p.stop()


def _assignments(w: Worker) -> int:
    """How many partition assignments the worker has handled (each assigned partition counts once)."""
    return w.stats["fresh"] + w.stats["restored"]


def _feed_process(paths: list[str], s: Settings, speed: float, fmt: str) -> FeedStats:
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(feed(paths, s, speed=speed, fmt=fmt))


def latency_day(events: int, accounts: int, seed: int, date: str) -> tuple[Path, Path]:
    from surveil.sim import simulate

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"day-{events}-{accounts}-{seed}-{date}.svb"
    acc = path.with_suffix(".accounts.csv")
    if not path.exists() or not acc.exists():
        simulate(path, events=events, accounts=accounts, seed=seed, date=date, progress=True)
    return path, acc


def span(path: Path) -> tuple[int, int, int]:
    """(events, first ts, event-time span in ns) of a file."""
    reg, rej = Registry(), []
    n, lo, hi = 0, None, None
    for b in read_events(path, reg, rej):
        if len(b):
            n += len(b)
            lo = int(b.ts.min()) if lo is None else min(lo, int(b.ts.min()))
            hi = int(b.ts.max()) if hi is None else max(hi, int(b.ts.max()))
    return n, lo, hi - lo


class FeedIndex:
    """Every event of the feed topics with the timestamp of the record that carried it."""

    def __init__(self, recs: dict[TopicPartition, list]):
        self.reg = Registry()
        rej: list = []
        cols: dict[str, list] = {k: [] for k in ("ts", "account", "venue", "etype", "side", "rts", "part")}
        self.parts = list(recs)
        self.ts_types: set[int] = set()
        for gi, (tp, msgs) in enumerate(recs.items()):
            for m in msgs:
                v = m.value
                if v[:4] != b"SVEV":
                    continue
                b, _ = binary.decode_frame_at(v, 0, self.reg, f"{tp.topic}:{tp.partition}@{m.offset}", 0, rej)
                n = len(b)
                cols["ts"].append(b.ts)
                cols["account"].append(b.account)
                cols["venue"].append(b.venue)
                cols["etype"].append(b.etype)
                cols["side"].append(b.side)
                cols["rts"].append(np.full(n, m.timestamp, np.int64))
                cols["part"].append(np.full(n, gi, np.int32))
                self.ts_types.add(m.timestamp_type)
        self.c = {k: np.concatenate(v) if v else np.empty(0, np.int64) for k, v in cols.items()}
        order = np.argsort(self.c["ts"], kind="stable")
        self.c = {k: v[order] for k, v in self.c.items()}
        self.events = len(order)

    def at(self, ts: int) -> np.ndarray:
        t = self.c["ts"]
        lo, hi = np.searchsorted(t, ts, "left"), np.searchsorted(t, ts, "right")
        return np.arange(lo, hi)

    def account_id(self, name: str) -> int:
        return self.reg.accounts.ids.get(name, -5)


def latencies(alerts: list, idx: FeedIndex, s: Settings, nparts: int) -> dict[str, list]:
    """Per raised alert: alert record timestamp - timestamp of the feed record that raised it (ms)."""
    out: dict[str, list] = {"account": [], "owner": [], "unmatched": [], "ambiguous": 0, "wrong_partition": 0}
    c = idx.c
    for m in alerts:
        a = orjson.loads(m.value)
        if a.get("status") != "raised":
            continue
        rule, ev = a["rule"], a["evidence"]
        if rule in ACCOUNT_RULES:
            ts = ev["raised_at"] if rule == "order_rate_1s" else ev["threshold_reached_at"]
            venue, account = a["subject"]["venue"], a["subject"]["account"]
            v = VENUES.index(venue)
            rows = idx.at(ts)
            rows = rows[(c["account"][rows] == idx.account_id(account)) & (c["venue"][rows] == v)]
            kind = "account"
            want_part = TopicPartition(s.feed_topics[v] if len(s.feed_topics) == 3 else s.feed_topics[0],
                                       partition_for(f"{venue}:{account}".encode(), nparts))
            if len(rows) and any(idx.parts[p] != want_part for p in c["part"][rows].tolist()):
                out["wrong_partition"] += 1
        elif rule in OWNER_RULES:
            ts = ev["raised_at"]
            rows = idx.at(ts)
            rows = rows[(c["etype"][rows] == TRADE) & (c["side"][rows] == SIDE_S)]
            accts = {(VENUES.index(x["venue"]), idx.account_id(x["account"])) for x in ev.get("by_account", [])}
            if accts:
                mine = np.array([(int(vv), int(aa)) in accts for vv, aa in zip(c["venue"][rows], c["account"][rows])],
                                dtype=bool)
                if mine.any():
                    rows = rows[mine]
            kind = "owner"
        else:
            continue
        if not len(rows):
            out["unmatched"].append({"rule": rule, "subject": a["subject"], "ts": ts})
            continue
        rts = np.unique(c["rts"][rows])
        if len(rts) > 1:
            out["ambiguous"] += 1
        # the event that raised it: if several records carry an event at that ts, the latest one counts
        # (the alert cannot be raised before the last of them arrived; this gives the smaller latency)
        out[kind].append({"rule": rule, "ms": int(m.timestamp - int(rts.max())), "alert_ts_type": m.timestamp_type})
    return out


def dist(samples: list[dict]) -> dict:
    ms = sorted(x["ms"] for x in samples)
    n = len(ms)
    if not n:
        return {"n": 0}

    def rank(q: float) -> int:  # nearest-rank percentile
        return max(1, math.ceil(q * n)) - 1

    by_rule: dict[str, int] = {}
    for x in samples:
        by_rule[x["rule"]] = by_rule.get(x["rule"], 0) + 1
    return {"n": n, "by_rule": by_rule, "min_ms": ms[0], "p50_ms": ms[rank(0.5)], "p90_ms": ms[rank(0.9)],
            "p99_ms": ms[rank(0.99)], "max_ms": ms[-1], "mean_ms": round(sum(ms) / n, 1),
            "p99_rests_on": n - rank(0.99),
            "p99_note": ("nearest rank; with fewer than 100 samples the p99 is the maximum"
                         if n < 100 else "nearest rank")}


async def latency_run(bootstrap: str, svb: Path, acc: Path, rate: float, params: dict | None,
                      pool: ProcessPoolExecutor, profile: cProfile.Profile | None = None) -> dict:
    n_events, first_ts, dur = span(svb)
    factor = rate / (n_events / (dur / 1e9))
    want = replay([svb], accounts=acc, params=params)
    s = settings_for(bootstrap, prefix(), prefix(), acc)
    specs = [topics_mod.TopicSpec(t, s.feed_partitions, LOG_APPEND) for t in s.feed_topics]
    specs.append(topics_mod.TopicSpec(s.alerts_topic, 4, {**topics_mod.COMPACT, **LOG_APPEND}))
    await create_topics(bootstrap, specs)
    await seed_markers(s, day_start_ns(int(trading_day_index(first_ts))))
    w = Worker(s, params=params)
    task = asyncio.create_task(w.run())
    try:
        await asyncio.wait_for(w.ready.wait(), 120)
        # Start the feed once the worker is settled: every partition assigned and no new assignment for
        # SETTLE_S (a slow first assignment can get the member expelled, and it then joins again).
        n_states = len(s.feed_topics) * s.feed_partitions + s.owner_partitions
        t_ready = time.perf_counter()
        deadline = time.monotonic() + SETTLE_MAX_S
        last, since = -1, time.monotonic()
        settled = True
        while True:
            if task.done():
                task.result()
                raise RuntimeError("the worker stopped")
            if time.monotonic() > deadline:
                if len(w.states) < n_states:
                    raise TimeoutError(f"the worker's partitions were not assigned within {SETTLE_MAX_S:.0f} s")
                settled = False  # still re-joining its group: start anyway, and say so
                break
            n = _assignments(w)
            if n != last:
                last, since = n, time.monotonic()
            elif len(w.states) >= n_states and time.monotonic() - since >= SETTLE_S:
                break
            await asyncio.sleep(0.1)
        settle_s = time.perf_counter() - t_ready
        start_assignments = _assignments(w) / n_states
        print(f"[latency] {svb.name}: {n_events:,} events over {dur / 3.6e12:.2f} h of event time; "
              f"speed {factor:.0f}x for {rate:,.0f} events/s", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        if profile is not None:  # the worker (this process) while the paced feed runs (its own process)
            profile.enable()
        fut = asyncio.get_running_loop().run_in_executor(pool, _feed_process, [str(svb)], s, factor, "binary")
        while not fut.done():
            if task.done():
                task.result()
                raise RuntimeError("the worker stopped")
            await asyncio.sleep(0.05)
        st: FeedStats = fut.result()
        t_feed = time.perf_counter() - t0
        # how far behind the worker was when the feed ended: time until it reached the feed's end offsets
        ends = await end_offsets(bootstrap, feed_tps(s, st))
        deadline = time.monotonic() + 300
        while not all((x := w.states.get(tp)) is not None and x.offset >= e - 1 for tp, e in ends.items() if e):
            if task.done() or time.monotonic() > deadline:
                if task.done():
                    task.result()
                raise TimeoutError("the worker did not reach the feed's end within 300 s")
            await asyncio.sleep(0.05)
        t_caught_up = time.perf_counter() - t0
        if profile is not None:
            profile.disable()
        deadline = time.monotonic() + 120
        while len(w.final_ids) < len(want.alerts):  # distinct ids: a restored partition repeats finals
            if task.done() or time.monotonic() > deadline:
                if task.done():
                    task.result()
                raise TimeoutError(f"{w.stats['alerts_final']} of {len(want.alerts)} final alerts after the feed")
            await asyncio.sleep(0.05)
        t_final = time.perf_counter() - t0
    finally:
        w.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
    alerts = await alerts_records(bootstrap, s.alerts_topic)
    finals = latest_finals(alerts)
    recs = await read_all(bootstrap, feed_tps(s, st))
    idx = FeedIndex(recs)
    lat = latencies(alerts, idx, s, s.feed_partitions)
    return {"file": svb.name, "events": st.events, "frames": st.frames, "markers": st.markers,
            "speed_factor": round(factor, 1), "feed_seconds": round(t_feed, 2),
            "feed_eps": round(st.events / t_feed), "seconds_to_last_final": round(t_final, 2),
            "worker_behind_at_feed_end_s": round(t_caught_up - t_feed, 2),
            "worker_settle_seconds": round(settle_s, 2), "worker_settled_before_feed": settled,
            "worker_assignments_before_feed": start_assignments,
            "worker_assignments_total": _assignments(w) / n_states,
            "worker_eps_during_paced_feed": round(st.events / t_caught_up),
            "equals_replay": canonical(finals) == canonical(want.alerts), "final_alerts": len(finals),
            "differences_from_replay": _differences(finals, want.alerts),
            "timestamp_types": {"feed": sorted(idx.ts_types), "alerts": sorted({m.timestamp_type for m in alerts})},
            "account": lat["account"], "owner": lat["owner"], "unmatched": lat["unmatched"],
            "ambiguous": lat["ambiguous"], "wrong_partition": lat["wrong_partition"],
            "worker_stats": {k: v for k, v in sorted(w.stats.items())}}


async def latency(bootstrap: str, a) -> dict:
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    out: dict = {"rate_target_eps": a.latency_rate, "format": "binary", "runs": []}
    try:
        days = []
        for i in range(a.latency_days):
            days.append((latency_day(a.events, a.accounts, 11 + i, LATENCY_DATES[i]), None, "default"))
        if not a.skip_probe:
            cfg = load_config(None, extra={"recommendations": RECO_PARAMS}, overrides=PROBE_OVERRIDES)
            days.append((days[0][0] if days else latency_day(a.events, a.accounts, 11, LATENCY_DATES[0]),
                         cfg, "probe"))
        for (svb, acc), params, kind in days:
            prof = cProfile.Profile() if a.profile and kind == "probe" else None
            r = await latency_run(bootstrap, svb, acc, a.latency_rate, params, pool, prof)
            r["rules"] = kind
            if prof is not None:
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
                print(f"[latency] profiled worker during the paced probe day:\n{buf.getvalue()}", file=sys.stderr,
                      flush=True)
                r["profile_top_tottime"] = _top(prof, "tottime", 20)
            out["runs"].append(r)
            print(f"[latency] {kind} {svb.name}: feed {r['feed_eps']:,} events/s, worker "
                  f"{r['worker_behind_at_feed_end_s']} s behind at the feed's end, "
                  f"per-account {dist(r['account'])}, owner {dist(r['owner'])}, "
                  f"unmatched {len(r['unmatched'])}, equals replay {r['equals_replay']}", file=sys.stderr, flush=True)
            if not r["equals_replay"]:
                print(f"[latency] differences from replay: {json.dumps(r['differences_from_replay'])[:3000]}",
                      file=sys.stderr, flush=True)
    finally:
        pool.shutdown()
    for kind in ("default", "probe"):
        runs = [r for r in out["runs"] if r["rules"] == kind]
        if runs:
            out[kind] = {"days": len(runs), "account": dist([x for r in runs for x in r["account"]]),
                         "owner": dist([x for r in runs for x in r["owner"]]),
                         "unmatched": sum(len(r["unmatched"]) for r in runs)}
    if "probe" in out:
        out["probe"]["thresholds"] = PROBE_OVERRIDES
    for r in out["runs"]:  # keep the saved result small: samples -> their distribution
        r["account"] = dist(r["account"])
        r["owner"] = dist(r["owner"])
    return out


# --------------------------------------------------------------------------------------------------


async def amain(a, bootstrap: str) -> dict:
    svb, acc = day_file(a.events, a.accounts)
    want = replay([svb], accounts=acc)
    print(want.summary(), file=sys.stderr, flush=True)
    result: dict = {"machine": machine(), "events_file": svb.name, "events": want.events,
                    "frame_decoder": "compiled (surveil.events._svev)" if binary.FAST else "numpy (fallback)",
                    "accounts": a.accounts, "rounds": a.rounds, "frame_size": a.frame_size,
                    "setup": {"broker": "Apache Kafka (kafka_local), single node, same machine, heap 1g",
                              "worker": "one in-process surveil.stream.worker.Worker (asyncio)",
                              "feed_partitions": Settings().feed_partitions,
                              "owner_partitions": Settings().owner_partitions,
                              "checkpoint_interval_ms": Settings().checkpoint_interval_ms, "fetch": FETCH},
                    "replay_alerts": dict(want.by_rule), "targets": TARGETS}
    if not a.skip_binary:
        result["binary"] = await throughput(bootstrap, svb, acc, "binary", a.rounds, want, a.profile,
                                            a.max_round_seconds, a.frame_size)
        print(json.dumps({k: v for k, v in result["binary"].items() if not k.endswith("rounds")}, indent=1),
              file=sys.stderr, flush=True)
    if a.long_events and not a.skip_binary:  # the same over a longer backlog (a worker's cold start weighs less)
        lsvb, lacc = day_file(a.long_events, a.accounts)
        lwant = replay([lsvb], accounts=lacc)
        result["binary_long"] = await throughput(bootstrap, lsvb, lacc, "binary", a.rounds, lwant, False,
                                                 a.max_round_seconds, a.frame_size)
        result["binary_long"]["events"] = lwant.events
    if not a.skip_json:
        result["json"] = await throughput(bootstrap, svb, acc, "json", a.rounds, want, a.profile, a.max_round_seconds,
                                          a.frame_size)
    if not a.skip_latency:
        result["latency"] = await latency(bootstrap, a)
    return result


def summary(r: dict) -> dict:
    s: dict = {"events": r["events"], "frame_decoder": r.get("frame_decoder")}
    for fmt in ("binary", "binary_long", "json"):
        if fmt in r:
            x = r[fmt]
            s[fmt] = {"events": x.get("events", r["events"]), "worker_eps_sustained": round(x["worker_eps_sustained"]),
                      "ratio_sustained_to_bare": round(x["ratio_sustained_to_bare"], 3),
                      "ratio_sustained_to_bare_median_of_rounds":
                          round(x["ratio_sustained_to_bare_median_of_rounds"], 3),
                      "worker_eps": round(x["worker_eps"]), "bare_eps": round(x["bare_eps"]),
                      "bare_deser_eps": round(x["bare_deser_eps"]),
                      "ratio_sustained_to_bare_deser": round(x["ratio_sustained_to_bare_deser"], 3),
                      "ratio_sustained_to_bare_deser_median_of_rounds":
                          round(x["ratio_sustained_to_bare_deser_median_of_rounds"], 3),
                      "cpu_ratio_to_bare_median_of_rounds": round(x["cpu_ratio_to_bare_median_of_rounds"], 3),
                      "cpu_ratio_to_bare_deser_median_of_rounds":
                          round(x["cpu_ratio_to_bare_deser_median_of_rounds"], 3),
                      "ratio_worker_to_bare": round(x["ratio_worker_to_bare"], 3),
                      "ratio_worker_incl_owner_finals_to_bare": round(x["ratio_worker_incl_owner_finals_to_bare"], 3),
                      "worker_rounds": len(x["worker_rounds"]),
                      "worker_eps_incl_owner_finals": round(x["worker_eps_incl_owner_finals"]),
                      "equals_replay": x["equals_replay"],
                      "events_per_frame": round(x["feed_preload"]["events_per_frame"], 1)}
    if "latency" in r:
        for kind in ("default", "probe"):
            if kind in r["latency"]:
                s[f"latency_{kind}"] = r["latency"][kind]
        s["latency_runs"] = [{"file": x["file"], "rules": x["rules"], "feed_eps": x["feed_eps"],
                              "worker_eps_during_paced_feed": x["worker_eps_during_paced_feed"],
                              "worker_behind_at_feed_end_s": x["worker_behind_at_feed_end_s"],
                              "worker_settle_seconds": x["worker_settle_seconds"],
                              "worker_settled_before_feed": x["worker_settled_before_feed"],
                              "worker_assignments_total": x["worker_assignments_total"],
                              "account": {k: x["account"].get(k) for k in ("n", "p50_ms", "p99_ms", "max_ms")},
                              "owner": {k: x["owner"].get(k) for k in ("n", "p50_ms", "p99_ms", "max_ms")},
                              "equals_replay": x["equals_replay"]} for x in r["latency"]["runs"]]
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=2, help="throughput rounds (best of N)")
    ap.add_argument("--max-round-seconds", type=float, default=30.0,
                    help="no further rounds of a format once a worker round took longer than this")
    ap.add_argument("--long-events", type=int, default=6_000_000,
                    help="binary throughput again over a day of this many events (0: not)")
    ap.add_argument("--skip-json", action="store_true")
    ap.add_argument("--skip-binary", action="store_true", help="no binary measurement (nor the longer backlog)")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-probe", action="store_true", help="no probe day with lowered thresholds")
    ap.add_argument("--latency-days", type=int, default=3, choices=range(0, len(LATENCY_DATES) + 1))
    ap.add_argument("--latency-rate", type=float, default=100_000, help="events/s of the paced feed")
    ap.add_argument("--profile", action="store_true",
                    help="one more worker run per format under cProfile, and the probe day's worker under cProfile")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--frame-size", type=int, default=2000,
                    help="events per frame of the pre-loaded feed (surveil feed --frame-size; its default)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def on_term(signum, frame):  # run the finally blocks: stop the broker, delete its data
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="surveil-worker-bench-"))
    t0 = time.perf_counter()
    try:
        info = start_broker(tmp / "kafka")
        print(f"broker {info.bootstrap} (pid {info.pid}) in {tmp}", file=sys.stderr, flush=True)
        result = asyncio.run(amain(a, info.bootstrap))
    finally:
        kafka_local.stop(tmp / "kafka")
        shutil.rmtree(tmp, ignore_errors=True)
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    s = summary(result)
    s["wall_seconds"] = result["wall_seconds"]
    print(json.dumps(s, indent=2))
    if not a.no_save:
        print("saved", save("worker", result), file=sys.stderr)


if __name__ == "__main__":
    main()
