"""The console's store, filters and HTTP handlers, with fakes (no broker): the real-Kafka, real-Chromium
proof is test_console_chromium.py."""

import asyncio
import copy

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from surveil.replay import replay
from surveil.sim import simulate
from surveil.stream.settings import Settings, SettingsError
from surveil.web.api import Console
from surveil.web.store import FilterError, Filters, Store


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    day = simulate(d / "day.svb", events=20_000, accounts=500, seed=6)
    return replay([day.events_path], accounts=day.accounts_path)


def raised(a):
    r = copy.deepcopy(a)
    r["status"] = "raised"
    return r


def filled(result) -> Store:
    s = Store()
    for a in result.alerts:
        s.put_alert(raised(a))
        s.put_alert(a)
    for r in result.recommendations:
        s.put_recommendation(r)
    return s


def console_client(store: Store) -> TestClient:
    """An HTTP test client of the console's routes over ``store``."""
    app = web.Application()
    app.router.add_routes(Console(store).routes())
    return TestClient(TestServer(app))


def test_final_replaces_raised_and_a_later_raised_does_not_replace_final(result):
    s = Store()
    a = next(x for x in result.alerts if x["rule"] == "sell_burst_1m")
    assert s.put_alert(raised(a))
    assert s.alerts[a["alert_id"]]["status"] == "raised"
    assert s.put_alert(a)
    assert not s.put_alert(raised(a))  # a worker re-processing from a checkpoint
    assert s.alerts[a["alert_id"]]["status"] == "final" and s.counts["stale_raised"] == 1


def test_filters(result):
    s = filled(result)
    every, n = s.list(Filters())
    assert n == len(result.alerts) == len(every)
    lj = next(a for a in result.alerts if a["subject"] == {"owner": "LINGJUN"})
    brokers = {x["broker"] for x in lj["evidence"]["by_account"]}
    for q, want in [
        ({"rule": "sell_burst_1m"}, {a["alert_id"] for a in result.alerts if a["rule"] == "sell_burst_1m"}),
        ({"severity": "critical"}, {a["alert_id"] for a in result.alerts if a["severity"] == "critical"}),
        ({"venue": "BSE"}, set()),
        ({"broker": sorted(brokers)[0]}, {lj["alert_id"]}),
        ({"rule": "order_rate_1s,daily_orders_20k"},
         {a["alert_id"] for a in result.alerts if a["rule"] != "sell_burst_1m"}),
    ]:
        got, _ = s.list(Filters.parse(q))
        assert {x["alert_id"] for x in got} == want, q
    venue_sse, _ = s.list(Filters.parse({"venue": "SSE"}))
    assert lj["alert_id"] in {x["alert_id"] for x in venue_sse}


@pytest.mark.parametrize("query, message", [
    ({"rule": "nope"}, "rule='nope': unknown rule; expected one of daily_orders_20k, order_rate_1s"),
    ({"venue": "NYSE"}, "venue='NYSE': unknown venue; expected one of SSE, SZSE, BSE"),
    ({"severity": "low"}, "severity='low': unknown severity"),
    ({"colour": "red"}, "colour='red': unknown parameter"),
    ({"day": "19/02/2024"}, "day='19/02/2024': expected YYYY-MM-DD"),
])
def test_bad_filters_are_named(query, message):
    with pytest.raises(FilterError) as e:
        Filters.parse(query)
    assert message in str(e.value)


def test_console_setting_is_validated():
    assert Settings.from_env({"SURVEIL_CONSOLE": "off"}).console is False
    assert Settings.from_env({"SURVEIL_CONSOLE": "on"}).console is True and Settings().console is True
    with pytest.raises(SettingsError, match="SURVEIL_CONSOLE='maybe': expected on or off"):
        Settings.from_env({"SURVEIL_CONSOLE": "maybe"})
    with pytest.raises(SettingsError, match="SURVEIL_CONSOLE='off': expected on or off"):
        Settings(console="off").validate()


def test_console_off_adds_no_route():
    from surveil.stream.app import create_app

    paths = {r.resource.canonical for r in create_app(Settings(console=False)).web.web_app.router.routes()}
    assert "/api/alerts" not in paths and "/status" in paths
    paths = {r.resource.canonical for r in create_app(Settings()).web.web_app.router.routes()}
    assert {"/api/alerts", "/api/events", "/console/", "/api/alerts/{alert_id}/chart.svg"} <= paths


def test_http_api(result):
    asyncio.run(_http(result))


async def _http(result):
    store = filled(result)
    async with console_client(store) as c:
        r = await c.get("/api/alerts", params={"rule": "sell_burst_1m"})
        body = await r.json()
        assert r.status == 200 and body["total"] == sum(a["rule"] == "sell_burst_1m" for a in result.alerts)
        r = await c.get("/api/alerts", params={"venue": "NYSE"})
        assert r.status == 400 and "venue='NYSE'" in (await r.json())["error"]
        r = await c.get("/api/alerts", params={"limit": "0"})
        assert r.status == 400 and "limit='0'" in (await r.json())["error"]
        lj = next(a for a in result.alerts if a["subject"] == {"owner": "LINGJUN"})
        r = await c.get(f"/api/alerts/{lj['alert_id']}")
        body = await r.json()
        assert body["alert"] == lj and [x["measure"] for x in body["recommendations"]] == ["restrict_trading"]
        r = await c.get("/api/alerts/0000")
        assert r.status == 404 and "alert_id='0000'" in (await r.json())["error"]
        r = await c.get(f"/api/alerts/{lj['alert_id']}/chart.svg")
        assert r.status == 200 and r.content_type == "image/svg+xml"
        from surveil.report.charts import chart_svg

        assert await r.text() == chart_svg(lj)  # the report's chart, literally
        r = await c.get("/api/owners/LINGJUN")
        body = await r.json()
        assert [a["alert_id"] for a in body["alerts"]] == [lj["alert_id"]]
        assert {f"{x['venue']}:{x['account']}" for x in body["accounts"]} == {
            f"{x['venue']}:{x['account']}" for x in lj["evidence"]["by_account"]}
        x = lj["evidence"]["by_account"][0]
        r = await c.get(f"/api/accounts/{x['venue']}/{x['account']}")
        body = await r.json()
        assert [a["alert_id"] for a in body["alerts"]] == [lj["alert_id"]] and body["activity"] is None
        hft = next(a for a in result.alerts if a["rule"] == "order_rate_1s")
        r = await c.get(f"/api/accounts/{hft['subject']['venue']}/{hft['subject']['account']}")
        body = await r.json()
        assert body["peak_second"]["count"] == hft["value"]
        assert [x["measure"] for x in body["recommendations"]] == ["watch"]
        r = await c.get("/api/accounts/NYSE/X")
        assert r.status == 400
        r = await c.get("/api/recommendations", params={"owner": "LINGJUN"})
        assert [x["measure"] for x in (await r.json())["recommendations"]] == ["restrict_trading"]
        r = await c.get("/console/")
        assert r.status == 200 and "/console/static/app.js" in await r.text()
        for name in ("app.js", "style.css"):
            r = await c.get(f"/console/static/{name}")
            text = await r.text()
            assert r.status == 200 and "http://" not in text and "https://" not in text  # no CDN
        assert (await c.get("/console/static/../x")).status == 404

        # server-sent events: a filtered live stream
        r = await c.get("/api/events", params={"rule": "sell_burst_1m"})
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        assert (await r.content.readuntil(b"\n\n")).startswith(b"event: hello")
        hft2 = copy.deepcopy(hft)
        hft2["alert_id"] = "f" * 32
        store.put_alert(hft2)  # filtered out
        store.put_alert(lj)
        frame = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        lines = dict(x.split(": ", 1) for x in frame.decode().strip().split("\n"))
        assert lines["event"] == "alert" and orjson.loads(lines["data"])["alert_id"] == lj["alert_id"]
        store.close()  # the server is stopping: the stream ends
        assert await asyncio.wait_for(r.content.read(), 5) == b""
        r = await c.get("/api/events", params={"venue": "X"})
        assert r.status == 400


def test_account_activity_reads_the_partition_state_that_holds_the_account():
    from types import SimpleNamespace

    from aiokafka import TopicPartition
    from evtools import T0, S, cancel, order

    from surveil.engine import load_config
    from surveil.engine.refdata import RefData
    from surveil.feed import partition_for
    from surveil.stream.partition import PartitionState
    from surveil.web.activity import account_activity

    s = Settings()
    p = partition_for(b"SZSE:ACC1", s.feed_partitions)
    tp = TopicPartition("surveil.feed.szse", p)
    st = PartitionState(f"{tp.topic}:{p}", load_config(), RefData(), 4)
    events = [order(T0 + i * S // 10, "ACC1", "SZSE", oid=i) for i in range(30)]
    events += [cancel(T0 + 4 * S + i, "ACC1", "SZSE", oid=i) for i in range(5)]
    events += [order(T0 + 9 * S, "OTHER", "SZSE", oid=99)]  # a later event releases the earlier ones
    st.handle(orjson.dumps(events), 0, tp.topic, p)
    w = SimpleNamespace(s=s, states={tp: st}, sources=[f"{t}:{i}" for t in s.feed_topics for i in range(4)])
    act = account_activity(w, "SZSE", "ACC1")
    assert act == {"partition": f"surveil.feed.szse:{p}", "held_here": True, "day": "2024-02-19",
                   "day_closed": False, "orders": 30, "cancels": 5, "messages": 35}
    # the same account name on another venue is another account, on a partition this worker does not hold
    other = account_activity(w, "SSE", "ACC1")
    assert other["held_here"] is False and other["partition"].startswith("surveil.feed.sse:")
    assert "orders" not in other
    st.handle(orjson.dumps({"kind": "progress", "ts": T0 + 86_400 * S}), 1, tp.topic, p)  # past midnight
    assert account_activity(w, "SZSE", "ACC1")["day_closed"] is True


def test_the_topic_reader_skips_and_counts_what_is_not_an_alert(result, caplog):
    from surveil.web.feed import AlertFeed

    s = Settings()
    store = Store()
    f = AlertFeed(s, store)
    a = result.alerts[0]
    rec = result.recommendations[0]
    f._apply(s.alerts_topic, orjson.dumps(a))
    f._apply(s.recommendations_topic, orjson.dumps(rec))
    f._apply(s.alerts_topic, None)  # a tombstone
    f._apply(s.alerts_topic, b"{not json")
    f._apply(s.alerts_topic, orjson.dumps(rec))  # a recommendation on the alert topic
    f._apply(s.recommendations_topic, orjson.dumps([1, 2]))
    assert list(store.alerts) == [a["alert_id"]] and list(store.recos) == [rec["recommendation_id"]]
    assert store.counts["bad_records"] == 3
    assert "skipped a record of surveil.alerts" in caplog.text


def test_owner_page_gives_each_account_its_peak_second(result):
    asyncio.run(_owner_peak(result))


async def _owner_peak(result):
    hft = next(a for a in result.alerts if a["rule"] == "order_rate_1s")
    owner = hft["evidence"]["owner"]
    async with console_client(filled(result)) as c:
        body = await (await c.get(f"/api/owners/{owner}")).json()
        row = next(x for x in body["accounts"] if x["account"] == hft["subject"]["account"])
        assert row["peak_second"]["count"] == hft["value"]
        assert row["peak_second"]["at"] == hft["evidence"]["peak_second"]
