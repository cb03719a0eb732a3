"""Every Grafana panel query returns data from a real Prometheus that scraped a real worker.

A real Kafka broker (the session fixture), a real worker process (``python -m surveil.stream.app``) with its
web port, and Debian's real Prometheus scraping the worker's ``/metrics`` every second, with the pipeline's
alert rules loaded. A small simulated day with every scenario is fed, plus three malformed records (rejects).
Once Prometheus has the whole day, every variable query of every dashboard, and then every panel query
(variables replaced by a real value, Grafana's intervals by fitting durations), runs through Prometheus'
HTTP API and must return a non-empty result with a number in it.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time

import aiohttp
import pytest
from dashboards import load_dashboards, panel_queries, parse_label_values, substitute, variable_query, variables
from kafkatools import settings
from promtools import PROM_DIR, binary

from surveil.feed import feed, partition_for
from surveil.kafka_local import free_ports
from surveil.replay import replay
from surveil.sim import simulate
from surveil.stream.settings import Settings

pytestmark = pytest.mark.kafka

#: Grafana's built-in intervals, for a run of a minute or two scraped every second
INTERVALS = {"__rate_interval": "2m", "__interval": "15s", "__range": "10m"}


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("desk") / "day.svb", events=50_000, accounts=1_000, seed=3)


def env_of(s: Settings) -> dict[str, str]:
    return s.to_env(os.environ)


def prometheus_config(tmp_path, worker_port: int) -> str:
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {PROM_DIR / "surveil-rules.yml"}
scrape_configs:
  - job_name: surveil
    static_configs:
      - targets: ["127.0.0.1:{worker_port}"]
""")
    return str(cfg)


async def get_json(http, url, **params):
    async with http.get(url, params=params, timeout=aiohttp.ClientTimeout(total=10)) as r:
        body = await r.json(content_type=None)
        assert r.status == 200 and body["status"] == "success", (url, params, body)
        return body["data"]


async def until(what: str, fn, timeout: float, procs=()):
    """Await ``fn()`` until it returns something true (bounded), checking that the processes still run."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        for name, p, log in procs:
            assert p.poll() is None, f"{name} exited:\n" + log.read_text()[-3000:]
        try:
            last = await fn()
            if last:
                return last
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            last = e
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def test_every_panel_query_returns_data_from_a_real_prometheus(kafka_bootstrap, day, tmp_path):
    asyncio.run(asyncio.wait_for(_live(kafka_bootstrap, day, tmp_path), 240))


async def _live(bootstrap, day, tmp_path):
    want = replay([day.events_path], accounts=day.accounts_path)
    worker_port, prom_port = free_ports(2)
    s = settings(bootstrap, feed_partitions=2, accounts_csv=str(day.accounts_path), web_port=worker_port)
    wlog, plog = tmp_path / "worker.log", tmp_path / "prometheus.log"
    procs = []
    try:
        with open(wlog, "ab") as out:
            w = subprocess.Popen([sys.executable, "-m", "surveil.stream.app", "--log-level", "info"], env=env_of(s),
                                 stdout=out, stderr=subprocess.STDOUT)
        procs.append(("worker", w, wlog))
        with open(plog, "ab") as out:
            p = subprocess.Popen([binary("prometheus"), f"--config.file={prometheus_config(tmp_path, worker_port)}",
                                  f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                  f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                                 stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        procs.append(("prometheus", p, plog))
        prom = f"http://127.0.0.1:{prom_port}"
        async with aiohttp.ClientSession() as http:
            async def status(url):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    return r.status == 200

            await until("the worker's /health", lambda: status(f"http://127.0.0.1:{worker_port}/health"), 60, procs)
            await until("Prometheus ready", lambda: status(prom + "/-/ready"), 60, procs)

            # the alert rules of deploy/prometheus load into a real Prometheus
            groups = (await get_json(http, prom + "/api/v1/rules"))["groups"]
            assert {r["name"] for g in groups for r in g["rules"]} >= {"SurveilWorkerDown",
                                                                       "SurveilNoEventsDuringTradingHours"}

            async def scalar(q):
                res = (await get_json(http, prom + "/api/v1/query", query=q))["result"]
                return float(res[0]["value"][1]) if res else None

            # one scrape before the day starts: every rate then has a point before and after the processing
            await until("a first scrape of the worker", lambda: scalar('sum(up{job="surveil"})'), 60, procs)

            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
            await producer.start()
            try:
                part = partition_for(b"SSE:A0000001", s.feed_partitions)
                for v in (b"SVEV\x01\x00garbage", b"{not json",
                          b'[{"ts": 1708306200000000000, "venue": "NYSE", "type": "order"}]'):
                    await producer.send_and_wait(s.feed_topics[0], v, partition=part)
            finally:
                await producer.stop()
            await feed([day.events_path], s, speed="max")

            finals = sum(a["status"] == "final" for a in want.alerts)

            async def whole_day_scraped():
                return (await scalar('sum(surveil_events_total{job="surveil"})') == want.events
                        and await scalar('sum(surveil_alerts_total{job="surveil", status="final"})') == finals
                        and (await scalar('sum(surveil_rejects_total{job="surveil"})') or 0) >= 3)

            await until("Prometheus to scrape the whole day", whole_day_scraped, 150, procs)
            await asyncio.sleep(2)  # a couple more scrapes: every rate has points on both sides

            # headline numbers as Prometheus has them
            assert await scalar('sum(up{job="surveil"})') == 1
            assert await scalar('sum(surveil_recommendations_total{job="surveil"})') == len(want.recommendations)
            assert await scalar('sum(surveil_assigned_partitions{job="surveil"})') == 3 * 2 + 2
            assert await scalar('sum(surveil_state_accounts{job="surveil"})') > 0
            assert await scalar('sum(surveil_state_owners{job="surveil"})') > 0
            assert await scalar('min(surveil_event_time_lag_seconds{job="surveil"})') > 86400  # a 2024 day
            # all read. The owner topic keeps getting the idle feed partitions' repeated declarations (a
            # record about every second: a lease), so one scrape can fall between a record's fetch and its
            # processing: wait for a scrape that finds every partition read
            async def all_read():
                return await scalar('max(surveil_consumer_lag_records{job="surveil"})') == 0
            await until("a scrape with every partition read", all_read, 30, procs)
            assert await scalar('count(surveil_consumer_lag_records{job="surveil"})') == 3 * 2 + 2
            records = await scalar('sum(surveil_records_total{job="surveil"})')
            passes = await scalar('sum(surveil_processing_seconds_count{job="surveil"})')  # per partition per poll
            assert records > 0 and 0 < passes <= records
            assert await scalar('sum(surveil_checkpoints_total{job="surveil"})') > 0
            assert await scalar('sum(surveil_rewinds_total{job="surveil"})') == 0
            q = 'surveil_alerts_total{job="surveil", status="final"} > 0'
            rules = {r["metric"]["rule"] for r in (await get_json(http, prom + "/api/v1/query", query=q))["result"]}
            assert rules == {a["rule"] for a in want.alerts}

            checked = 0
            for path, d in load_dashboards().items():
                one, every = dict(INTERVALS), dict(INTERVALS)
                for v in variables(d):  # variable queries: label_values(selector, label) via the series API
                    selector, label = parse_label_values(variable_query(v))
                    series = await get_json(http, prom + "/api/v1/series", **{"match[]": selector})
                    found = sorted({x[label] for x in series if label in x})
                    assert found, f"{path.name}: variable {v['name']} ({variable_query(v)}) has no value"
                    one[v["name"]] = found[0]  # one value picked
                    every[v["name"]] = v.get("allValue") or "|".join(found)  # "All", the default
                for values in (one, every):
                    for where, expr in panel_queries(d):
                        q = substitute(expr, values)
                        res = await get_json(http, prom + "/api/v1/query", query=q)
                        nums = [float(x["value"][1]) for x in res["result"]]
                        assert nums, f"{where}: no data for {q}"
                        assert any(math.isfinite(n) for n in nums), f"{where}: only NaN/Inf for {q}: {nums}"
                        checked += 1
            assert checked >= 60
    finally:
        for _name, proc, _log in procs:
            if proc.poll() is None:
                proc.terminate()
        for _name, proc, _log in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
