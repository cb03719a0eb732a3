"""Load runs: capacity on a backlog, and a worker process under a schedule of rates (soak, overload).

**Capacity** (:func:`capacity`): the day repeated into fresh feed topics as a backlog (before any consumer
runs), then, on that backlog and in this order, ``bench/worker_bench.py``'s bare aiokafka consumer (no group,
the worker's fetch settings, counting events from the frame headers: the baseline of the same run) and its
in-process worker run (``worker_bench.run_worker``: a fresh ``Worker``, timed from the moment every partition is
assigned to the feed's end: *sustained* events/s). Its final alerts are checked against replay's.

**A load run** (:func:`load_run`): fresh topics (feed and alerts with ``LogAppendTime``), a worker **process**
(``python -m surveil.stream.app``, metrics and console on, as deployed), the generator in this process paced
by the phases, the monitor sampling lag and memory every second. After the last phase: the end-of-day marker,
then the run waits until the committed lag is 0 and the worker has published as many final alerts as replay
gives for the days sent (or a deadline), stops the worker with SIGTERM and records its exit status. Then:

- **nothing lost**: the final alerts on the alerts topic against ``surveil replay`` of exactly the events sent
  (each repetition written as its own shifted file and replayed alone: a day's alerts depend on that day's
  events only, checked in ``tests/load``), compared byte for byte in canonical JSON;
- **alert latency** of every *raised* alert record: its Kafka timestamp (``LogAppendTime``: the broker's clock)
  minus the append timestamp of the feed record that carried the event that raised it (``raised_at`` of
  ``order_rate_1s`` and ``sell_burst_1m``, ``threshold_reached_at`` of ``daily_orders_20k``): the record of the
  alert's account partition in the chunk holding that event time (owner level: the latest such record
  among the partitions of the alert's accounts). The same definition as ``bench/worker_bench.py``'s latency,
  taken from the generator's record metadata instead of reading the feed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson
from aiokafka import TopicPartition

from load_tests._bench import common, worker_bench
from load_tests.generator import Day, Generator, Phase, Sent
from load_tests.monitor import Monitor, loadavg
from surveil import kafka_local
from surveil.engine.alerts import dumps, sort_key
from surveil.events.batch import Registry
from surveil.events.io import EventWriter, read_events
from surveil.events.schema import NS_PER_DAY, day_start_ns
from surveil.replay import replay
from surveil.stream import topics as topics_mod
from surveil.stream.settings import Settings

__all__ = ["capacity", "load_run", "prepare_day", "expected_alerts", "machine_now"]

ROOT = Path(__file__).resolve().parent.parent
WORKER_READY_S = 90.0


def machine_now() -> dict:
    """The machine (bench/common.py) and how busy it is right now."""
    m = common.machine()
    m["loadavg"] = loadavg()
    m["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return m


def prepare_day(events: int, accounts: int, seed: int = 11) -> tuple[Path, Path]:
    """A cached simulated day (bench/common.py's cache)."""
    return common.day_file(events, accounts, seed=seed)


def run_settings(bootstrap: str, accounts: Path, **kw) -> Settings:
    s = worker_bench.settings_for(bootstrap, worker_bench.prefix(), worker_bench.prefix(), accounts)
    return dataclasses.replace(s, **kw) if kw else s


# --------------------------------------------------------------------------------------------------
# what replay gives for the events sent


def _shifted_file(src: Path, k: int, chunks: int | None, chunk_events: int, out: Path) -> Path:
    """Day ``src`` moved by ``k`` days (only its first ``chunks`` chunks when given), as an SVB file."""
    reg, rej = Registry(), []
    w = EventWriter(out, reg)
    limit = None if chunks is None else chunks * chunk_events
    n = 0
    try:
        for b in read_events(src, reg, rej):
            if limit is not None and n + len(b) > limit:
                b = b.take(slice(0, limit - n))
            if len(b):
                w.write(dataclasses.replace(b, ts=b.ts + k * NS_PER_DAY))
            n += len(b)
            if limit is not None and n >= limit:
                break
    finally:
        w.close()
    return out


def expected_alerts(day: Day, accounts: Path, sent: Sent, chunk_events: int) -> tuple[list[dict], float]:
    """Replay's final alerts for exactly the events sent: repetitions 0 .. last, the last up to its last chunk
    sent. Each repetition is written as a shifted file and replayed alone (a day's alerts depend on that day's
    events only); returns the alerts and the seconds this took."""
    t0 = time.perf_counter()
    out: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="surveil-load-replay-") as tmp:
        for k in range(sent.last_rep + 1):
            chunks = sent.last_chunk + 1 if k == sent.last_rep and sent.last_chunk + 1 < day.n_chunks else None
            p = _shifted_file(day.path, k, chunks, chunk_events, Path(tmp) / f"rep{k}.svb")
            out.extend(replay([p], accounts=accounts).alerts)
            p.unlink()
    return sorted(out, key=sort_key), time.perf_counter() - t0


#: evidence fields of an owner-level alert taken from the market-wide context (the owner stage's
#: ``MarketContext``), which a worker loses on a backlog that spans more than two trading days: see
#: :func:`compare` and docs/benchmarks.md (load tests, "found")
MARKET_FIELDS = ("indexes", "market_sell_value_fen", "max_index_drop_pct", "share_of_market")


def _without_market(a: dict) -> dict:
    """The alert without its market-context evidence: the owner's, and each member firm's in ``by_broker``."""
    ev = {k: v for k, v in a["evidence"].items() if k not in MARKET_FIELDS}
    if isinstance(ev.get("by_broker"), dict):
        ev["by_broker"] = {b: {**f, "evidence": {k: v for k, v in f.get("evidence", {}).items()
                                                 if k not in MARKET_FIELDS}}
                           for b, f in ev["by_broker"].items()}
    return {**a, "evidence": ev}


def compare(finals: list[dict], want: list[dict]) -> dict:
    """Live final alerts against replay's: byte-identical (``equals_replay``), and the same once the market-context
    evidence fields are left out (``equals_replay_except_market_context``), with how many alerts differ only there."""
    g = {a["alert_id"]: a for a in finals}
    w = {a["alert_id"]: a for a in want}
    market_only = sorted(k for k in g.keys() & w.keys() if dumps(g[k]) != dumps(w[k])
                         and dumps(_without_market(g[k])) == dumps(_without_market(w[k])))
    return {"equals_replay": canonical(finals) == canonical(want),
            "equals_replay_except_market_context":
                canonical([_without_market(a) for a in finals]) == canonical([_without_market(a) for a in want]),
            "missing_alerts": len(w.keys() - g.keys()), "extra_alerts": len(g.keys() - w.keys()),
            "market_context_differences": len(market_only),
            "market_context_differences_days": sorted({w[k]["trading_day"] for k in market_only}),
            "differences_from_replay": worker_bench._differences(finals, want)}


def canonical(alerts) -> bytes:
    """Canonical JSON lines in output order; alerts that tie on the output order (window start, rule, subject)
    ordered by their bytes, so that the comparison does not depend on the order they were read in."""
    return b"".join(sorted((dumps(a) + b"\n" for a in alerts), key=lambda line: (sort_key(orjson.loads(line)), line)))


# --------------------------------------------------------------------------------------------------
# capacity


async def capacity(bootstrap: str, day: Day, accounts: Path, backlog_events: int, log_dir: Path,
                   bare_rounds: int = 1, in_process: bool = True) -> dict:
    """One worker's capacity on a backlog: in-process (bench/worker_bench.py's run), then as a worker process
    (as the load runs use it), and the bare consumer's as the baseline."""
    feed_s = run_settings(bootstrap, accounts)
    await worker_bench.create_topics(bootstrap, [topics_mod.TopicSpec(t, feed_s.feed_partitions, {})
                                                 for t in feed_s.feed_topics])
    gen = Generator(day, feed_s)
    t0 = time.perf_counter()
    sent = await gen.run([Phase(3600.0, math.inf)], limit_events=backlog_events)
    preload_s = time.perf_counter() - t0
    tps = [TopicPartition(t, p) for t, p in gen.targets]
    ends = await worker_bench.end_offsets(bootstrap, tps)
    await worker_bench.warm_up_groups(bootstrap, feed_s.feed_topics[0])
    bare = []
    for _ in range(bare_rounds):
        b = await worker_bench.bare(bootstrap, tps, ends, "binary")
        if b["events"] != sent.events:
            raise AssertionError(f"the bare consumer counted {b['events']} events, the generator sent {sent.events}")
        bare.append(b)
    want, replay_s = expected_alerts(day, accounts, sent, int(day.chunk_events[0]))
    best_bare = max(x["eps"] for x in bare)
    ps = dataclasses.replace(run_settings(bootstrap, accounts, web_port=kafka_local.free_ports(1)[0]),
                             feed_topics=feed_s.feed_topics)
    load_before = loadavg()
    proc_run = await process_capacity(ps, ends, sent.events, log_dir, len(want))
    finals = worker_bench.latest_finals(await worker_bench.alerts_records(bootstrap, ps.alerts_topic))
    out = {"process": proc_run,
           "process_eps_sustained": proc_run["eps_sustained"],
           "process_ratio_to_bare": round(proc_run["eps_sustained"] / best_bare, 3),
           "events": sent.events, "days": sent.last_rep + 1, "records": sent.records, "bytes": sent.bytes,
           "preload_seconds": round(preload_s, 2), "preload_eps": round(sent.events / preload_s),
           "bare_eps": round(best_bare), "bare_rounds": [round(x["eps"]) for x in bare],
           "cpu_seconds_bare": round(bare[0]["cpu_seconds"], 2),
           "process_final_alerts": len(finals), "process_vs_replay": compare(finals, want),
           "replay_alerts": len(want), "replay_seconds": round(replay_s, 2), "loadavg_before_worker": load_before,
           "how": "backlog in 12 feed partitions; a bare consumer (bench/worker_bench.py: bare), a worker process "
                  "(python -m surveil.stream.app, timed by /status from all partitions assigned to the feed's end), "
                  "and unless left out one in-process Worker (bench/worker_bench.py: run_worker, sustained)"}
    if in_process:
        s = dataclasses.replace(run_settings(bootstrap, accounts), feed_topics=feed_s.feed_topics)
        wr = await worker_bench.run_worker(s, ends, len(want), sent.events)
        finals = worker_bench.latest_finals(await worker_bench.alerts_records(bootstrap, s.alerts_topic))
        out.update({"worker_eps_sustained": round(wr["eps_sustained"]), "worker_eps_incl_join": round(wr["eps"]),
                    "worker_eps_incl_owner_finals": round(wr["eps_incl_owner_finals"]),
                    "ratio_to_bare": round(wr["eps_sustained"] / best_bare, 3),
                    "cpu_seconds_worker": round(wr["cpu_seconds_sustained"], 2),
                    "final_alerts": len(finals), "in_process_vs_replay": compare(finals, want)})
    out["loadavg_after"] = loadavg()
    return out


async def process_capacity(s: Settings, ends: dict, events: int, log_dir: Path, expected_finals: int = 0) -> dict:
    """A worker process (fresh group) on a pre-loaded backlog: sustained events/s from the moment its
    ``/status`` shows every partition assigned to the one showing every feed partition at its end offset
    (polled every 0.1 s, so the figure is exact to about 0.1 s over the run)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    proc = start_worker(s, log_dir / "capacity.worker.log")
    n_states = len(ends) + s.owner_partitions
    want = {f"{tp.topic}:{tp.partition}": e for tp, e in ends.items() if e}
    t0 = time.monotonic()
    t_assigned = t_done = None
    try:
        while t_done is None:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker process exited ({proc.returncode})")
            if time.monotonic() - t0 > WORKER_READY_S + 300:
                raise TimeoutError("the worker process did not reach the backlog's end")
            st = await asyncio.to_thread(worker_status, s.web_port)
            now = time.monotonic()
            if st is not None:
                states = st.get("states", {})
                if t_assigned is None and len(states) >= n_states:
                    t_assigned = now
                if all(states.get(k, {}).get("offset", -1) >= e - 1 for k, e in want.items()):
                    t_done = now
            await asyncio.sleep(0.1)
        # the owner stages finalise their alerts after the feed's end: wait for them before the stop (a stop
        # ends the loop at the record it handles, and what is left would be read again by the next worker)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            st = await asyncio.to_thread(worker_status, s.web_port)
            if (st or {}).get("alerts_final", 0) >= expected_finals:
                break
            await asyncio.sleep(0.2)
        t_finals = time.monotonic()
    finally:
        code = stop_worker(proc)
    t_assigned = t_assigned or t_done
    return {"eps_sustained": round(events / max(t_done - t_assigned, 1e-9)), "seconds": round(t_done - t_assigned, 2),
            "seconds_to_assignment": round(t_assigned - t0, 2),
            "seconds_from_feed_end_to_last_final": round(t_finals - t_done, 2), "exit_code": code}


# --------------------------------------------------------------------------------------------------
# a worker process under load


def start_worker(s: Settings, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, **s.to_env()}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "surveil.stream.app", "--log-level", "warning"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)


def worker_status(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
            return json.loads(r.read())
    except Exception:  # noqa: BLE001 - not up yet, or busy
        return None


async def wait_assigned(s: Settings, proc: subprocess.Popen, n_states: int, settle: float = 2.0) -> float:
    """Until the worker has every partition and no new assignment for ``settle`` s; returns the seconds."""
    t0 = time.monotonic()
    last, since = None, time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({proc.returncode}) before it was assigned its partitions")
        if time.monotonic() - t0 > WORKER_READY_S:
            raise TimeoutError(f"the worker was not assigned {n_states} partitions within {WORKER_READY_S:.0f} s")
        st = await asyncio.to_thread(worker_status, s.web_port)
        if st is not None:
            key = (len(st.get("states", {})), st.get("fresh", 0) + st.get("restored", 0))
            if key != last:
                last, since = key, time.monotonic()
            elif key[0] >= n_states and time.monotonic() - since >= settle:
                return time.monotonic() - t0
        await asyncio.sleep(0.2)


def stop_worker(proc: subprocess.Popen, timeout: float = 60.0) -> int | None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return None


def latencies(alert_records: list, day: Day, sent: Sent) -> dict:
    """Per raised alert: its record timestamp minus the append timestamp of the feed record that carried the
    event that raised it (see the module docstring), in ms."""
    out: dict = {"account": [], "owner": [], "unmatched": 0, "other_rules": 0}

    def frame_ts(ts: int, g: int) -> int:
        rep, i = day.locate(ts)
        while rep >= 0:  # the latest record of partition g sent at or before the event's chunk
            arr = sent.frame_ts.get((rep, i))
            if arr is not None and arr[g] >= 0:
                return int(arr[g])
            i -= 1
            if i < 0:
                rep, i = rep - 1, day.n_chunks - 1
        return -1

    for m in alert_records:
        a = orjson.loads(m.value)
        if a.get("status") != "raised":
            continue
        rule, ev = a["rule"], a["evidence"]
        if rule in worker_bench.ACCOUNT_RULES:
            ts = ev["raised_at"] if rule == "order_rate_1s" else ev["threshold_reached_at"]
            t_in = frame_ts(ts, day.partition_of(a["subject"]["venue"], a["subject"]["account"]))
            kind = "account"
        elif rule in worker_bench.OWNER_RULES:
            ts = ev["raised_at"]
            gs = {day.partition_of(x["venue"], x["account"]) for x in ev.get("by_account", [])}
            t_in = max((frame_ts(ts, g) for g in gs), default=-1)
            kind = "owner"
        else:
            out["other_rules"] += 1
            continue
        if t_in < 0:
            out["unmatched"] += 1
            continue
        out[kind].append({"rule": rule, "ms": int(m.timestamp - t_in), "alert_ts_type": m.timestamp_type,
                          "t": round(t_in / 1000 - sent.wall0, 3)})
    return out


async def load_run(bootstrap: str, day: Day, accounts: Path, phases: list[tuple[str, Phase]], out_dir: Path,
                   name: str, broker_pid: int | None = None, drain_timeout: float = 300.0,
                   checkpoint_interval_ms: int | None = None) -> dict:
    """A worker process under ``phases`` (named); see the module docstring. Writes ``<name>.json`` and the
    worker's log into ``out_dir`` and returns the result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    port = kafka_local.free_ports(1)[0]
    kw = {"web_port": port}
    if checkpoint_interval_ms:
        kw["checkpoint_interval_ms"] = checkpoint_interval_ms
    s = run_settings(bootstrap, accounts, **kw)
    specs = [topics_mod.TopicSpec(t, s.feed_partitions, worker_bench.LOG_APPEND) for t in s.feed_topics]
    specs.append(topics_mod.TopicSpec(s.alerts_topic, 4, {**topics_mod.COMPACT, **worker_bench.LOG_APPEND}))
    await worker_bench.create_topics(bootstrap, specs)
    await worker_bench.seed_markers(s, day_start_ns(day.day))  # see worker_bench.seed_markers: why
    log_path = out_dir / f"{name}.worker.log"
    log_path.unlink(missing_ok=True)
    machine_before = machine_now()
    proc = start_worker(s, log_path)
    result: dict = {"name": name, "machine": machine_before, "events_per_day": day.events,
                    "chunk_events": int(day.chunk_events[0]), "feed_partitions": len(day.targets_for(s)),
                    "checkpoint_interval_ms": s.checkpoint_interval_ms,
                    "phases": [{"name": n, "seconds": p.seconds, "target_eps": p.rate} for n, p in phases]}
    try:
        n_states = len(day.targets_for(s)) + s.owner_partitions
        result["worker_start_seconds"] = round(await wait_assigned(s, proc, n_states), 2)
        gen = Generator(day, s)
        mon = Monitor(s, gen.targets, gen.sent, proc, broker_pid)
        stop = asyncio.Event()
        mon_task = asyncio.create_task(mon.run(stop))
        try:
            t_start = time.monotonic()
            mon.t0 = t_start
            sent = await gen.run([p for _, p in phases])
            t_feed_end = time.monotonic() - t_start
            # drain: until the committed lag is 0 (the monitor samples meanwhile) ...
            deadline = time.monotonic() + drain_timeout
            t_lag0 = None
            while time.monotonic() < deadline and proc.poll() is None:
                lat = mon.latest()
                if lat.get("lag_records") == 0 and lat.get("t", 0) > t_feed_end:
                    t_lag0 = lat["t"]
                    break
                await asyncio.sleep(0.2)
            # ... then replay's alerts for the events sent (in a thread: the monitor goes on sampling), and
            # until the worker has published as many finals
            want, replay_s = await asyncio.to_thread(expected_alerts, day, accounts, sent, int(day.chunk_events[0]))
            finals_seen = 0
            while t_lag0 is not None and time.monotonic() < deadline + 60 and proc.poll() is None:
                st = await asyncio.to_thread(worker_status, port)
                finals_seen = (st or {}).get("alerts_final", finals_seen)
                if finals_seen >= len(want):
                    break
                await asyncio.sleep(0.5)
            result["drained"] = t_lag0 is not None
        finally:
            stop.set()
            await mon_task
        alive_at_end = proc.poll() is None
    finally:
        exit_code = stop_worker(proc)
    recs = await worker_bench.alerts_records(bootstrap, s.alerts_topic)
    finals = worker_bench.latest_finals(recs)
    lat = latencies(recs, day, sent)
    if canonical(finals) != canonical(want):  # kept for a look
        (out_dir / f"{name}.live-finals.jsonl").write_bytes(canonical(finals))
        (out_dir / f"{name}.replay-alerts.jsonl").write_bytes(canonical(want))
    samples = [x for x in mon.samples if "error" not in x]
    phase_bounds = []
    t = 0.0
    for n, p in phases:
        phase_bounds.append((n, t, t + p.seconds))
        t += p.seconds
    result.update({
        "sent": {"events": sent.events, "records": sent.records, "markers": sent.markers, "bytes": sent.bytes,
                 "days": sent.last_rep + 1, "last_chunk": sent.last_chunk, "feed_seconds": round(t_feed_end, 2),
                 "achieved_eps": round(sent.events / t_feed_end), "progress": sent.progress,
                 "timestamp_types": sorted(sent.timestamp_types)},
        "phase_results": [_phase_stats(n, a, b, samples, sent.progress, ph, lat) for (n, a, b), (_, ph)
                          in zip(phase_bounds, phases)],
        "lag_zero_at_s": t_lag0,
        "seconds_to_drain_after_feed": None if t_lag0 is None else round(t_lag0 - t_feed_end, 2),
        "worker_alive_throughout": all(x["worker_alive"] for x in samples) and alive_at_end,
        "worker_exit_code_after_sigterm": exit_code,
        "worker_rss_mib": {"first": samples[0]["worker_rss_mib"] if samples else None,
                           "max": max((x["worker_rss_mib"] or 0) for x in samples) if samples else None,
                           "last": samples[-1]["worker_rss_mib"] if samples else None},
        "lag_events_max": max((x["lag_events"] for x in samples), default=None),
        "final_alerts": len(finals), "replay_alerts": len(want), "replay_seconds": round(replay_s, 2),
        **compare(finals, want),
        "latency": {"account": worker_bench.dist(lat["account"]), "owner": worker_bench.dist(lat["owner"]),
                    "unmatched": lat["unmatched"], "other_rules": lat["other_rules"],
                    "alert_timestamp_types": sorted({m.timestamp_type for m in recs})},
        "samples": mon.samples, "machine_after": machine_now(),
    })
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def _phase_stats(name: str, a: float, b: float, samples: list[dict], progress: list, ph: Phase, lat: dict) -> dict:
    """A phase's achieved input rate, the worker's consumption rate (committed events), lag, memory, and the
    latency of the alerts whose triggering record was sent in it."""
    inside = [x for x in samples if a <= x["t"] <= b + 0.5]
    sent_at = np.array([p[0] for p in progress]), np.array([p[1] for p in progress])

    def sent(t: float) -> float:
        return float(np.interp(t, *sent_at))

    out = {"name": name, "seconds": ph.seconds, "target_eps": ph.rate,
           "achieved_eps": round((sent(b) - sent(a)) / max(b - a, 1e-9)),
           "latency_account": worker_bench.dist([x for x in lat["account"] if a <= x["t"] < b]),
           "latency_owner": worker_bench.dist([x for x in lat["owner"] if a <= x["t"] < b])}
    if len(inside) >= 2:
        x0, x1 = inside[0], inside[-1]
        out["consumed_eps"] = round((x1["committed_events"] - x0["committed_events"]) / max(x1["t"] - x0["t"], 1e-9))
        out["lag_events_start"] = x0["lag_events"]
        out["lag_events_end"] = x1["lag_events"]
        out["lag_events_max"] = max(x["lag_events"] for x in inside)
        out["worker_rss_mib_max"] = max((x["worker_rss_mib"] or 0) for x in inside)
        out["loadavg_1m"] = [min(x["loadavg_1m"] for x in inside), max(x["loadavg_1m"] for x in inside)]
    return out


@contextlib.contextmanager
def own_broker():
    """A single-node Kafka on free ports in a temporary folder (bench/worker_bench.py's), removed afterwards."""
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="surveil-load-"))
    try:
        info = worker_bench.start_broker(tmp / "kafka")
        yield info
    finally:
        kafka_local.stop(tmp / "kafka")
        shutil.rmtree(tmp, ignore_errors=True)
