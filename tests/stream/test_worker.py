"""Stream workers on a real Kafka broker: live equals replay, broker topics, rejects, reference data."""

import asyncio
import contextlib

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from kafkatools import settings

from surveil.engine.alerts import dumps, sort_key
from surveil.engine.refdata import RefData
from surveil.feed import feed
from surveil.replay import replay
from surveil.sim import simulate
from surveil.stream.views import broker_views
from surveil.stream.worker import Worker

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    d = tmp_path_factory.mktemp("live")
    return simulate(d / "day.svb", events=100_000, accounts=2_000, seed=4)


async def read_topic(bootstrap, topic, settle=1.5, timeout=10.0):
    """Every record of a topic (until no new record for ``settle`` seconds). ``bootstrap``: an address, or the
    Settings of a principal (SASL_SSL)."""
    conn = {"bootstrap_servers": bootstrap} if isinstance(bootstrap, str) else bootstrap.kafka_kwargs()
    c = AIOKafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False, **conn)
    await c.start()
    out = []
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        last = loop.time()
        while loop.time() < end and loop.time() - last < settle:
            got = await c.getmany(timeout_ms=200)
            for msgs in got.values():
                out.extend(msgs)
                last = loop.time()
    finally:
        await c.stop()
    return out


def latest_finals(records):
    latest = {}
    for m in records:
        latest[m.key] = orjson.loads(m.value)
    return sorted((a for a in latest.values() if a["status"] == "final"), key=sort_key)


async def wait_for_finals(bootstrap, topic, n, timeout=90.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        finals = latest_finals(await read_topic(bootstrap, topic, settle=0.5, timeout=5))
        if len(finals) >= n:
            return finals
        await asyncio.sleep(0.5)
    raise AssertionError(f"only {len(finals)} of {n} final alerts on {topic}")


def canonical(alerts):
    return b"".join(dumps(a) + b"\n" for a in sorted(alerts, key=sort_key))


async def ensure_topics(bootstrap, s):
    """Every topic of settings ``s``, created as a worker creates them (a test that writes some first)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from surveil.stream import topics

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await topics.ensure(admin, topics.specs(s))
    finally:
        await admin.close()


async def run_worker(s, **kw):
    w = Worker(s, **kw)
    task = asyncio.create_task(w.run())
    return w, task


@contextlib.asynccontextmanager
async def live_day(bootstrap, s, paths, want):
    """A worker fed ``paths`` at full speed, whose final alerts must equal ``want``'s (replay's); yields the worker,
    still running, for what the test checks next, and stops it."""
    w, task = await run_worker(s)
    try:
        await asyncio.wait_for(w.ready.wait(), 60)
        await feed(paths, s, speed="max")
        finals = await wait_for_finals(bootstrap, s.alerts_topic, len(want.alerts))
        assert canonical(finals) == canonical(want.alerts)  # live equals replay: nothing else lost
        yield w
    finally:
        await stop_worker(w, task)


async def stop_worker(w, task):
    w.stop.set()
    await asyncio.wait_for(task, 30)


def test_live_equals_replay_and_broker_topics(kafka_bootstrap, day):
    asyncio.run(asyncio.wait_for(_live_equals_replay(kafka_bootstrap, day), 240))


async def _live_equals_replay(kafka_bootstrap, day):
    want = replay([day.events_path], accounts=day.accounts_path)
    s = settings(kafka_bootstrap, accounts_csv=str(day.accounts_path))
    w, task = await run_worker(s)
    try:
        await asyncio.wait_for(w.ready.wait(), 60)
        # every broker of the reference data has its topic before any alert: a broker can subscribe at once
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
        finally:
            await admin.close()
        brokers_in_ref = {r.broker for r in RefData.load_csv(day.accounts_path).accounts.values() if r.broker}
        assert brokers_in_ref and {s.broker_topic(b) for b in brokers_in_ref} <= existing
        await feed([day.events_path], s, speed="max")
        finals = await wait_for_finals(kafka_bootstrap, s.alerts_topic, len(want.alerts))
        assert canonical(finals) == canonical(want.alerts)
        # recommendations equal replay's too
        recs = {orjson.loads(m.value)["recommendation_id"]: orjson.loads(m.value)
                for m in await read_topic(kafka_bootstrap, s.recommendations_topic)}
        assert sorted(recs.values(), key=sort_key) == sorted(want.recommendations, key=sort_key)
        # a broker's topic carries only its own accounts
        lingjun = next(a for a in finals if a["subject"] == {"owner": "LINGJUN"})
        brokers = {x["broker"] for x in lingjun["evidence"]["by_account"]}
        assert len(brokers) >= 2
        b = sorted(brokers)[0]
        views = latest_finals(await read_topic(kafka_bootstrap, s.broker_topic(b)))
        assert views, "the broker topic is empty"
        for v in views:
            ev = v["evidence"]
            if "by_account" in ev:
                assert {x["broker"] for x in ev["by_account"]} == {b}
            else:
                assert ev["broker"] == b
        others = {x["account"] for x in lingjun["evidence"]["by_account"] if x["broker"] != b}
        for v in views:  # no other broker's account anywhere in the view (evidence, chart data, samples)
            text = orjson.dumps(v).decode()
            assert not [a for a in others if f'"{a}"' in text], v["alert_id"]
        lj = next(v for v in views if v["subject"] == {"owner": "LINGJUN"})
        # the firm's copy is replay's copy for that firm, with its own id and figures (not the owner's)
        assert dumps(lj) == dumps(broker_views(lingjun)[b])
        assert lj["alert_id"] != lingjun["alert_id"] and lj["value"] < lingjun["value"]
        assert len(lj["evidence"]["by_account"]) < len(lingjun["evidence"]["by_account"])
    finally:
        await stop_worker(w, task)
    # input offsets are committed for lag monitoring (in the background during the run, waited for at the
    # stop): after the stop every feed partition's committed offset is its end
    from aiokafka import TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=s.group_id, enable_auto_commit=False)
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in s.feed_topics for p in range(s.feed_partitions)]
        ends = await c.end_offsets(tps)
        committed = {tp: await c.committed(tp) for tp in tps}
    finally:
        await c.stop()
    assert sum(ends.values()) > 0 and committed == ends


def test_malformed_records_go_to_rejects_and_the_worker_goes_on(kafka_bootstrap, day):
    asyncio.run(asyncio.wait_for(_rejects(kafka_bootstrap, day), 240))


async def _rejects(bootstrap, day):
    from aiokafka import AIOKafkaProducer

    from surveil.feed import partition_for

    want = replay([day.events_path], accounts=day.accounts_path)
    s = settings(bootstrap, accounts_csv=str(day.accounts_path))
    w, task = await run_worker(s)
    try:
        await asyncio.wait_for(w.ready.wait(), 60)
        p = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await p.start()
        part = partition_for(b"SSE:A0000001", 3)
        bad = [b"SVEV\x01\x00garbage", b"{not json", b'[{"ts": 1708306200000000000, "venue": "NYSE", "type": "order"}]']
        for v in bad:
            await p.send_and_wait(s.feed_topics[0], v, partition=part)
        await p.stop()
        await feed([day.events_path], s, speed="max")
        finals = await wait_for_finals(bootstrap, s.alerts_topic, len(want.alerts))
        assert canonical(finals) == canonical(want.alerts)  # the bad records did not disturb anything
        rejects = [orjson.loads(m.value) for m in await read_topic(bootstrap, s.rejects_topic)]
        mine = [r for r in rejects if r.get("topic") == s.feed_topics[0] and r.get("partition") == part]
        assert len(mine) == 3, rejects
        assert [r["offset"] for r in mine] == [0, 1, 2]
        assert "frame" in mine[0]["reason"] or "magic" in mine[0]["reason"] or "truncated" in mine[0]["reason"]
        assert "bad JSON" in mine[1]["reason"] and mine[1]["original"] == "{not json"
        assert mine[2]["field"] == "venue" and mine[2]["value"] == "NYSE" and "unknown venue" in mine[2]["reason"]
        assert w.stats["rejects"] >= 3
    finally:
        await stop_worker(w, task)


def test_reference_data_update_applies_without_restart(kafka_bootstrap, tmp_path):
    asyncio.run(asyncio.wait_for(_refdata(kafka_bootstrap, tmp_path), 240))


async def _refdata(bootstrap, tmp_path):
    from aiokafka import AIOKafkaProducer
    from evtools import T0, S, sell

    s = settings(bootstrap)
    w, task = await run_worker(s)
    try:
        await asyncio.wait_for(w.ready.wait(), 60)
        # two accounts on two venues become one owner's, while the worker runs
        p = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await p.start()
        # bad reference records first: rejected with the reason, kept on the rejects topic, never fatal
        await p.send_and_wait(s.ref_topic, orjson.dumps({"owner": 123, "broker": "B1"}), key=b"SSE:BAD1")
        await p.send_and_wait(s.ref_topic, b"[1, 2]", key=b"SSE:BAD2")
        for key, broker in ((b"SSE:NEW1", "B1"), (b"SZSE:NEW2", "B2")):
            await p.send_and_wait(s.ref_topic, orjson.dumps({"owner": "NEWMGR", "broker": broker}), key=key)
        await p.stop()
        deadline = asyncio.get_running_loop().time() + 30
        topics_b = {s.broker_topic("B1"), s.broker_topic("B2")}

        def applied():
            return w.stats["ref_updates"] >= 2 and w.stats["ref_rejects"] >= 2 and topics_b <= w._topics  # noqa: SLF001

        while not applied() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        # the two rejects counted, and the topics of the brokers new in reference data exist before any alert
        assert w.stats["ref_rejects"] == 2 and applied()
        rejected = {}
        while len(rejected) < 2 and asyncio.get_running_loop().time() < deadline:
            rejected = {r["key"]: r for m in await read_topic(bootstrap, s.rejects_topic)
                        if "key" in (r := orjson.loads(m.value))}
        assert "owner=123" in rejected["SSE:BAD1"]["reason"] and rejected["SSE:BAD2"]["original"] == "[1, 2]"
        evs = [sell(T0 + i * S, "NEW1" if i % 2 else "NEW2", "SSE" if i % 2 else "SZSE", 120_000_000, order_id=i)
               for i in range(10)]
        path = tmp_path / "new.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in evs))
        await feed([path], s, speed="max")
        finals = await wait_for_finals(bootstrap, s.alerts_topic, 1)
        assert [a["subject"] for a in finals] == [{"owner": "NEWMGR"}]
        assert {x["broker"] for x in finals[0]["evidence"]["by_account"]} == {"B1", "B2"}
    finally:
        await stop_worker(w, task)


def test_securities_are_seeded_from_a_csv_and_followed_without_restart(kafka_bootstrap, tmp_path):
    asyncio.run(asyncio.wait_for(_securities(kafka_bootstrap, tmp_path), 240))


async def _securities(bootstrap, tmp_path):
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from surveil.engine.securities import Security

    csv = tmp_path / "sec.csv"
    csv.write_text("venue,symbol,prev_close,risk_warning,limit_up,limit_down\nSSE,600000,10.01,false,11.01,9.01\n"
                   "SZSE,000001,9.5,true,,\nBSE,830799,bad,false,,\n")
    s = settings(bootstrap, securities_csv=str(csv))
    w, task = await run_worker(s)
    try:
        await asyncio.wait_for(w.ready.wait(), 60)
        assert w.securities.get(0, "600000") == Security(100100, False, 110100, 90100)
        assert w.securities.get(1, "000001") == Security(95000, True) and len(w.securities) == 2
        p = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await p.start()
        await p.send_and_wait(s.securities_topic, b'{"prev_close": 0, "risk_warning": false}', key=b"SSE:BAD1")
        await p.send_and_wait(s.securities_topic, b"[1]", key=b"SSE:BAD2")
        await p.send_and_wait(s.securities_topic, b'{"prev_close": 10.5, "risk_warning": true}', key=b"SSE:600000")
        await p.send_and_wait(s.securities_topic, None, key=b"SZSE:000001")  # a tombstone: removed
        await p.stop()
        deadline = asyncio.get_running_loop().time() + 30
        while w.stats["securities_rejects"] < 2 or w.securities.get(1, "000001") is not None:
            assert asyncio.get_running_loop().time() < deadline, w.stats
            await asyncio.sleep(0.1)
        assert w.securities.get(0, "600000") == Security(105000, True) and len(w.securities) == 1
        rejected = {}
        while len(rejected) < 3 and asyncio.get_running_loop().time() < deadline:
            rejected = {r.get("key") or r.get("source"): r for m in await read_topic(bootstrap, s.rejects_topic)
                        if (r := orjson.loads(m.value))}
        assert rejected["SSE:BAD1"]["field"] == "prev_close" and "positive" in rejected["SSE:BAD1"]["reason"]
        assert rejected["SSE:BAD2"]["field"] == "value" and rejected["SSE:BAD2"]["original"] == "[1]"
        assert rejected[str(csv)]["line"] == 4 and rejected[str(csv)]["field"] == "prev_close"  # the CSV's row
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:  # a compacted topic, as the accounts'
            desc = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.securities_topic)])
            conf = {c[0]: c[1] for c in desc[0].resources[0][4]}
            assert conf["cleanup.policy"] == "compact"
        finally:
            await admin.close()
    finally:
        await stop_worker(w, task)


def test_an_idle_feed_partition_does_not_hold_back_owner_alerts(kafka_bootstrap, tmp_path):
    """Bounded allowed lateness: a gateway that sends no progress markers, and partitions that never get a
    record. Without idle partitions the owner stage would wait for them forever."""
    asyncio.run(asyncio.wait_for(_idle(kafka_bootstrap), 240))


async def _idle(bootstrap):
    from aiokafka import AIOKafkaProducer
    from evtools import T0, S, sell

    from surveil.feed import partition_for

    s = settings(bootstrap, allowed_lateness_ms=500)
    w, task = await run_worker(s)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    try:
        await asyncio.wait_for(w.ready.wait(), 60)
        for key, broker in ((b"SSE:IDL1", "B1"), (b"SZSE:IDL2", "B2")):
            await p.send_and_wait(s.ref_topic, orjson.dumps({"owner": "IDLEMGR", "broker": broker}), key=key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while w.stats["ref_updates"] < 2 and loop.time() < deadline:
            await asyncio.sleep(0.1)
        # one JSON-array record per account, no markers: 8 sells of 130 M yuan reach the 1e9 threshold
        for topic, acct, venue, first in ((s.feed_topics[0], "IDL1", "SSE", 0), (s.feed_topics[1], "IDL2", "SZSE", 1)):
            evs = [sell(T0 + i * S, acct, venue, 130_000_000, order_id=i) for i in range(first, 10, 2)]
            part = partition_for(f"{venue}:{acct}".encode(), s.feed_partitions)
            await p.send_and_wait(topic, orjson.dumps(evs), key=f"{venue}:{acct}".encode(), partition=part)
        deadline = loop.time() + 60
        raised = []
        while not raised and loop.time() < deadline:
            recs = await read_topic(bootstrap, s.alerts_topic, settle=0.5, timeout=3)
            raised = [orjson.loads(m.value) for m in recs]
        assert [(a["rule"], a["status"], a["subject"]) for a in raised] == [
            ("sell_burst_1m", "raised", {"owner": "IDLEMGR"})]
        st = w.status()["states"]
        feed = [k for k in st if not k.startswith(s.owner_topic)]
        assert len(feed) == 3 * s.feed_partitions and all(st[k]["idle"] for k in feed)
        assert w.stats["idle_declared"] >= len(feed)
        owners = [v for k, v in st.items() if k.startswith(s.owner_topic)]
        assert all(len(v["idle"]) == len(feed) for v in owners)
    finally:
        await p.stop()
        await stop_worker(w, task)


def test_live_recommendations_escalate_with_the_topic_history(kafka_bootstrap, day, tmp_path):
    """Live recommendations use the same escalation history as replay: the recommendations topic (compacted,
    so it survives restarts) is read at start and followed. A worker started on a topic that already holds an
    earlier day's measure for a subject escalates that day's recommendation exactly as ``replay --history``."""
    asyncio.run(asyncio.wait_for(_escalation(kafka_bootstrap, day, tmp_path), 240))


async def _escalation(kafka_bootstrap, day, tmp_path):
    import datetime as dt

    from aiokafka import AIOKafkaProducer

    plain = replay([day.events_path], accounts=day.accounts_path)
    today = plain.alerts[0]["trading_day"]
    # a subject whose measure can go one step up (not "watch", which never escalates, nor the top step)
    target = next(r for r in plain.recommendations if r["measure"] not in ("watch", "restrict_trading"))
    earlier = {"kind": "recommendation", "recommendation_id": "earlier-case", "subject": target["subject"],
               "trading_day": (dt.date.fromisoformat(today) - dt.timedelta(days=3)).isoformat(),
               "measure": "restrict_trading", "duration_days": 3, "reasons": [], "rationale": "an earlier case"}
    hist = tmp_path / "history.jsonl"
    hist.write_bytes(dumps(earlier) + b"\n")
    want = replay([day.events_path], accounts=day.accounts_path, history=hist)
    again = next(r for r in want.recommendations if r["subject"] == target["subject"])
    assert again.get("escalated_from"), again  # the history changes the answer (else the test proves nothing)
    assert want.recommendations != plain.recommendations

    s = settings(kafka_bootstrap, accounts_csv=str(day.accounts_path))
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await p.start()
    try:  # the topic as an earlier day left it (the worker creates it as compacted; here the test does first)
        await ensure_topics(kafka_bootstrap, s)
        await p.send_and_wait(s.recommendations_topic, dumps(earlier), key=b"earlier-case")
    finally:
        await p.stop()
    w, task = await run_worker(s)
    try:
        await asyncio.wait_for(w.ready.wait(), 60)
        await feed([day.events_path], s, speed="max")
        await wait_for_finals(kafka_bootstrap, s.alerts_topic, len(want.alerts))
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while True:
            recs = {orjson.loads(m.value)["recommendation_id"]: orjson.loads(m.value)
                    for m in await read_topic(kafka_bootstrap, s.recommendations_topic, settle=0.5, timeout=5)}
            got = sorted((r for r in recs.values() if r["trading_day"] == today), key=sort_key)
            if got == sorted(want.recommendations, key=sort_key) or loop.time() > end:
                break
            await asyncio.sleep(0.5)
        assert got == sorted(want.recommendations, key=sort_key)
    finally:
        await stop_worker(w, task)
