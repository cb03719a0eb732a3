"""Reference data with validity through the stream workers (real broker): an account moved to another owner at
10:00 gives, live, exactly the replay's alerts and broker copies; an update that arrives after the events it
covers applies from its arrival on and is shown in the status; a bad history is a reject with the reason."""

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from engine.test_refdata_asof import MOVE  # ACC moves from O1 (F1) to O2 (F2) at 10:00
from kafkatools import settings
from test_worker import latest_finals, live_day, read_topic, run_worker, stop_worker, wait_for_finals

from surveil.feed import feed
from surveil.replay import replay

pytestmark = pytest.mark.kafka

YI = 100_000_000


def day_file(tmp_path):
    from evtools import T0, S, sell

    evs = [sell(T0 + 1770 * S, "A1", "SSE", 6 * YI, order_id="a1"),   # 09:59:30, O1
           sell(T0 + 1780 * S, "ACC", "SSE", 6 * YI, order_id="m1"),  # 09:59:40, ACC is O1's
           sell(T0 + 1810 * S, "ACC", "SSE", 6 * YI, order_id="p1"),  # 10:00:10, ACC is O2's
           sell(T0 + 1820 * S, "B1", "SZSE", 6 * YI, order_id="b1")]  # 10:00:20, O2
    path = tmp_path / "day.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in evs))
    return path


def test_an_account_moved_at_ten_live_equals_replay(kafka_bootstrap, tmp_path):
    asyncio.run(asyncio.wait_for(_moved(kafka_bootstrap, tmp_path), 240))


async def _moved(bootstrap, tmp_path):
    acc = tmp_path / "acc.csv"
    acc.write_text(MOVE)
    events = day_file(tmp_path)
    want = replay([events], accounts=acc)
    assert [a["subject"] for a in want.alerts if a["rule"] == "sell_burst_1m"] == [{"owner": "O1"}, {"owner": "O2"}]
    s = settings(bootstrap, accounts_csv=str(acc))
    async with live_day(bootstrap, s, [events], want) as w:
        # the morning's alert goes to F1 only, the afternoon's to F2 only
        for firm, owner in (("F1", "O1"), ("F2", "O2")):
            views = latest_finals(await read_topic(bootstrap, s.broker_topic(firm)))
            assert [v["subject"] for v in views] == [{"owner": owner}], firm
            assert {a["broker"] for a in views[0]["evidence"]["accounts"]} == {firm}
        assert w.status()["ref_late"] == []


def test_a_late_update_applies_from_its_arrival_and_is_shown(kafka_bootstrap, tmp_path):
    asyncio.run(asyncio.wait_for(_late(kafka_bootstrap, tmp_path), 240))


async def _late(bootstrap, tmp_path):
    acc = tmp_path / "acc.csv"
    acc.write_text(MOVE.replace("SSE,ACC,O2,F2,2024-02-19T10:00:00+08:00\n", ""))  # the move not known yet
    events = day_file(tmp_path)
    s = settings(bootstrap, accounts_csv=str(acc))
    w, task = await run_worker(s)
    try:
        await asyncio.wait_for(w.ready.wait(), 60)
        await feed([events], s, speed="max")
        finals = await wait_for_finals(bootstrap, s.alerts_topic, 1)
        # without the move, ACC's afternoon trade is O1's: one burst of O1 (A1 + ACC twice = 1.8 bn)
        assert [a["subject"] for a in finals if a["rule"] == "sell_burst_1m"] == [{"owner": "O1"}]
        p = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await p.start()
        try:
            # a conflicting history: a reject naming both rows, nothing changes
            bad = {"rows": [{"valid_from": "2024-02-19", "owner": "X", "broker": "F1"},
                            {"valid_from": "2024-02-19", "owner": "Y", "broker": "F1"}]}
            await p.send_and_wait(s.ref_topic, orjson.dumps(bad), key=b"SSE:ACC")
            # the move, late: it covers 10:00 on, and events up to 10:00:20 are processed
            late = {"rows": [{"valid_from": "2024-02-01", "owner": "O1", "broker": "F1"},
                             {"valid_from": "2024-02-19T10:00:00+08:00", "owner": "O2", "broker": "F2"}]}
            await p.send_and_wait(s.ref_topic, orjson.dumps(late), key=b"SSE:ACC")
        finally:
            await p.stop()
        deadline = asyncio.get_running_loop().time() + 30
        while not w.status()["ref_late"] and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        (shown,) = w.status()["ref_late"]
        assert shown["key"] == "SSE:ACC" and shown["changed_from"] == "2024-02-19T10:00:00.000000000+08:00"
        assert w.stats["ref_late_updates"] == 1 and w.stats["ref_rejects"] == 1
        rejected = []
        while not rejected and asyncio.get_running_loop().time() < deadline:
            rejected = [r for m in await read_topic(bootstrap, s.rejects_topic)
                        if (r := orjson.loads(m.value)).get("key") == "SSE:ACC"]
        assert "same valid_from" in rejected[0]["reason"] and "'X'" in rejected[0]["reason"]
        assert "'Y'" in rejected[0]["reason"]
        # replay of the day with the file as it now stands gives the as-of answer (the desk can compare)
        acc.write_text(MOVE)
        again = replay([events], accounts=acc)
        assert [a["subject"] for a in again.alerts if a["rule"] == "sell_burst_1m"] == [{"owner": "O1"},
                                                                                        {"owner": "O2"}]
    finally:
        await stop_worker(w, task)
