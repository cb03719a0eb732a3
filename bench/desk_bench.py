"""Worker throughput with the desk's surfaces, the metrics and the live console, on and off (issue #4 §6:
on must keep >= 90 % of off).

    python bench/desk_bench.py [--events 2000000] [--accounts 20000] [--rounds 3] [--no-save]

Starts its own single-node Kafka (heap 1g) in a temporary folder, pre-loads a simulated day (binary frames)
into the feed topics, then runs the worker **as the real Faust app process** (``python -m
surveil.stream.app``, which is where the console and ``/metrics`` live) on that backlog, alternately with
``SURVEIL_CONSOLE=off SURVEIL_METRICS=off`` and both ``on``; each round has a fresh group and fresh output
topics. With them on, a client keeps the live event stream (``/api/events``) open for the whole round, as a
desk would, and the round checks that the Lingjun alert reached it; and a scraper reads ``/metrics`` every
second, as Prometheus would (more often than the usual 15 s).

The console runs with its logins on, as deployed (not ``SURVEIL_CONSOLE_AUTH=off``): the benchmark writes a
users file with one desk user (``surveil.web.auth.add_user``, a random password, in its temporary folder),
and the client logs in the way the console's page does (``GET /api/session`` for the CSRF token, ``POST
/api/login`` with it in ``X-CSRF-Token``) before it opens ``/console/`` and the live stream with that session
cookie. ``/status`` and ``/metrics`` need no login. The login's password check (argon2id, about 0.1 s of a
core in the worker) falls within the "on" round, as a desk's login would.

A quick check that it still runs (not a measurement)::

    python bench/desk_bench.py --events 300000 --accounts 3000 --rounds 1 --no-save

A round is timed from the first ``/status`` poll (every 50 ms) that shows a feed partition past offset -1
to the first that shows every feed partition at its end offset: the group join and process start are left
out (they are the same either way). Best of ``--rounds`` per mode; the ratio is
best(on) / best(off). Prints a JSON summary on stdout and saves it with ``common.save("desk", ...)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from surveil import kafka_local  # noqa: E402
from surveil.feed import feed  # noqa: E402
from surveil.stream.settings import Settings  # noqa: E402
from surveil.web.auth import add_user  # noqa: E402


def env_of(s: Settings) -> dict[str, str]:
    return s.to_env(os.environ)


#: the desk user the live stream's client logs in as
DESK_USER = "bench-desk"


def settings(bootstrap: str, feed_prefix: str, accounts: Path, mode: str, port: int,
             users_file: Path | None = None) -> Settings:
    p = f"cb{uuid.uuid4().hex[:8]}."
    fp = feed_prefix
    return Settings(bootstrap_servers=bootstrap, feed_topics=(fp + "feed.sse", fp + "feed.szse", fp + "feed.bse"),
                    alerts_topic=p + "alerts", recommendations_topic=p + "recommendations",
                    broker_topic_prefix=p + "alerts.broker.", rejects_topic=p + "rejects", ref_topic=p + "ref",
                    owner_topic=p + "owner", checkpoint_topic=p + "checkpoints", group_id=p + "workers",
                    accounts_csv=str(accounts), console=mode == "on", metrics=mode == "on", web_port=port,
                    console_users_file=str(users_file) if users_file and mode == "on" else "")


async def scrape(base: str, got: dict) -> None:
    """Read /metrics every second, as Prometheus would."""
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(base + "/metrics") as r:
                body = await r.read()
                if r.status == 200 and b"surveil_events_total" in body:
                    got["scrapes"] = got.get("scrapes", 0) + 1
            await asyncio.sleep(1.0)


async def login(http: aiohttp.ClientSession, base: str, password: str) -> None:
    """Log in as :data:`DESK_USER` as the console's page does: the session's CSRF token from ``GET
    /api/session``, sent back in ``X-CSRF-Token`` with ``POST /api/login``; the session cookie stays in
    ``http``'s jar."""
    async with http.get(base + "/api/session") as r:
        body = await r.json()
        assert r.status == 200 and body["auth"] == "on", body
    async with http.post(base + "/api/login", json={"username": DESK_USER, "password": password},
                         headers={"X-CSRF-Token": body["csrf"]}) as r:
        assert r.status == 200, await r.text()


async def listen(base: str, got: dict, password: str) -> None:
    """Log in, then keep the console's live stream open; count alert events, note Lingjun's."""
    # unsafe: the jar keeps cookies of an IP address (127.0.0.1) too, as a browser does
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await login(http, base, password)
        got["logged_in"] = True
        async with http.get(base + "/console/", allow_redirects=False) as r:
            assert r.status == 200, r.status  # not 302 to the login page
        async with http.get(base + "/api/events", timeout=aiohttp.ClientTimeout(total=None)) as r:
            async for line in r.content:
                if line.startswith(b"data: ") and b'"rule"' in line:
                    got["alerts"] = got.get("alerts", 0) + 1
                    if orjson.loads(line[6:]).get("subject_text") == "LINGJUN":
                        got["lingjun"] = True


async def one_round(s: Settings, ends: dict[str, int], events: int, log: Path, password: str) -> dict:
    base = f"http://127.0.0.1:{s.web_port}"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "surveil.stream.app", "--log-level", "warning"],
                                env=env_of(s), stdout=out, stderr=subprocess.STDOUT)
    got: dict = {}
    listener = scraper = None
    t0 = t1 = None
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    async with http.get(base + "/status", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        st = orjson.loads(await r.read())["states"] if r.status == 200 else {}
                except (aiohttp.ClientError, TimeoutError):
                    st = {}
                if st and listener is None and s.console:
                    listener = asyncio.create_task(listen(base, got, password))
                    scraper = asyncio.create_task(scrape(base, got))
                now = time.perf_counter()
                if t0 is None and any(st.get(k, {}).get("offset", -1) >= 0 for k in ends):
                    t0 = now
                if t0 is not None and all(st.get(k, {}).get("offset", -1) >= ends[k] - 1 for k in ends):
                    t1 = now
                    break
                await asyncio.sleep(0.05)
        assert t0 is not None and t1 is not None, "the worker did not finish within 300 s"
        if s.console:
            for _ in range(100):  # the final alerts follow the last feed record by a little
                if listener is not None and listener.done():
                    listener.result()  # a failed login or a closed stream raises here, not as a missing alert
                if got.get("lingjun"):
                    break
                await asyncio.sleep(0.1)
    finally:
        for t in (listener, scraper):
            if t is not None:
                t.cancel()
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 60)
        except subprocess.TimeoutExpired:
            proc.kill()
    secs = t1 - t0
    mode = "on" if s.console else "off"
    if s.console:
        assert got.get("logged_in") and got.get("lingjun") and got.get("scrapes"), got
    return {"console": mode, "metrics": mode, "seconds": round(secs, 3), "eps": round(events / secs),
            "live_alert_events": got.get("alerts"), "lingjun_seen_live": got.get("lingjun", False)
            if s.console else None, "metrics_scrapes": got.get("scrapes")}


async def main_async(args) -> dict:
    svb, acc = common.day_file(args.events, args.accounts)
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        info = None
        for _ in range(3):
            port, cport = kafka_local.free_ports(2)
            try:
                info = kafka_local.start(Path(tmp) / "kafka", port=port, controller_port=cport, heap="1g",
                                         die_with_parent=True, echo=lambda m: print(m, file=sys.stderr))
                break
            except kafka_local.PortBusy:
                continue
        assert info is not None, "no free ports for the broker"
        try:
            users, password = Path(tmp) / "console-users.toml", secrets.token_urlsafe(16)
            add_user(users, DESK_USER, "desk", None, password)
            fp = f"cbfeed{uuid.uuid4().hex[:6]}."
            s0 = settings(info.bootstrap, fp, acc, "off", 1)
            print(f"pre-loading {svb.name}...", file=sys.stderr, flush=True)
            st = await feed([svb], s0, speed="max")
            print(st.summary(), file=sys.stderr, flush=True)
            from aiokafka import AIOKafkaConsumer, TopicPartition

            c = AIOKafkaConsumer(bootstrap_servers=info.bootstrap)
            await c.start()
            try:
                tps = [TopicPartition(t, p) for t in s0.feed_topics for p in range(s0.feed_partitions)]
                ends = {f"{tp.topic}:{tp.partition}": o for tp, o in (await c.end_offsets(tps)).items()}
            finally:
                await c.stop()
            rounds = []
            for i in range(args.rounds):
                for mode in ("off", "on"):
                    (wport,) = kafka_local.free_ports(1)
                    r = await one_round(settings(info.bootstrap, fp, acc, mode, wport, users), ends, st.events,
                                        Path(tmp) / f"worker-{i}-{mode}.log", password)
                    print(json.dumps(r), file=sys.stderr, flush=True)
                    rounds.append(r)
        finally:
            kafka_local.stop(Path(tmp) / "kafka")
    best = {m: max(r["eps"] for r in rounds if r["console"] == m) for m in ("off", "on")}
    return {"machine": common.machine(), "events": st.events, "accounts": args.accounts, "rounds": rounds,
            "best_eps_off": best["off"], "best_eps_on": best["on"], "ratio_on_off": round(best["on"] / best["off"], 3),
            "target_ratio": 0.9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    res = asyncio.run(main_async(args))
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=2))
    if not args.no_save:
        print(f"saved {common.save('desk', res)}", file=sys.stderr)


if __name__ == "__main__":
    main()
