"""The console's store, filters and HTTP handlers, with fakes (no broker): the real-Kafka, real-Chromium
proof is test_console_chromium.py."""

import asyncio
import copy

import orjson
import pytest
from console_kit import logged_in

from surveil.replay import replay
from surveil.sim import simulate
from surveil.stream.settings import Settings, SettingsError
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


def console_client(store: Store, users, worker=None):
    """An HTTP test client of the console over ``store``, logged in as a desk user."""
    return logged_in(store, users, "desk1", worker)


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
    ({"day": "0000-00-00"}, "day='0000-00-00': not a calendar date"),
    ({"day": "2024-02-30"}, "day='2024-02-30': not a calendar date (day is out of range for month)"),
    ({"day": "2024-2-19"}, "day='2024-2-19': expected YYYY-MM-DD"),
    ({"day": "２０２４-02-19"}, "expected YYYY-MM-DD"),  # digits, but not ASCII
    ({"owner": "x" * 257}, "owner='xxxxxxxx"),
    ({"broker": ",".join(f"B{i}" for i in range(101))}, "101 values; at most 100"),
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


def test_http_api(result, users_file):
    asyncio.run(_http(result, users_file))


async def _http(result, users):
    store = filled(result)
    async with console_client(store, users) as c:
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
    from surveil.web.alert_feed import AlertFeed

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


def test_owner_page_gives_each_account_its_peak_second(result, users_file):
    asyncio.run(_owner_peak(result, users_file))


async def _owner_peak(result, users):
    hft = next(a for a in result.alerts if a["rule"] == "order_rate_1s")
    owner = hft["evidence"]["owner"]
    async with console_client(filled(result), users) as c:
        body = await (await c.get(f"/api/owners/{owner}")).json()
        row = next(x for x in body["accounts"] if x["account"] == hft["subject"]["account"])
        assert row["peak_second"]["count"] == hft["value"]
        assert row["peak_second"]["at"] == hft["evidence"]["peak_second"]


def test_a_malformed_alert_is_refused_with_a_counted_reason_and_never_a_500(result, users_file, caplog):
    asyncio.run(_malformed(result, users_file))
    assert "evidence.accounts is not a list" in caplog.text


async def _malformed(result, users):
    from surveil.web.alert_feed import AlertFeed
    from surveil.web.store import RecordError

    s = Settings()
    store = Store()
    feed = AlertFeed(s, store)
    good = next(a for a in result.alerts if a["rule"] == "order_rate_1s")
    feed._apply(s.alerts_topic, orjson.dumps(good))
    broken = []
    for change in ({"window_start": None}, {"window_end": "soon"}, {"subject": "X"}, {"status": "done"},
                   {"trading_day": "2024-02-30"}, {"evidence": [1]}, {"value": True}, {"window_start": 2**62},
                   {"evidence": {"accounts": [{"venue": "SSE"}]}}, {"evidence": {"peak_rate": {"count": 1}}},
                   {"subject": {"owner": "X", "venue": "SSE"}}):
        bad = {**copy.deepcopy(good), "alert_id": f"{len(broken):032x}", **change}
        broken.append(bad["alert_id"])
        feed._apply(s.alerts_topic, orjson.dumps(bad))
    no_start = {k: v for k, v in good.items() if k != "window_start"}  # a later state of the good alert
    feed._apply(s.alerts_topic, orjson.dumps(no_start))
    assert list(store.alerts) == [good["alert_id"]] and store.alerts[good["alert_id"]] == good
    assert store.counts["bad_records"] == len(broken) + 1
    assert store.refused["alert: no window_start"] == 1
    assert store.refused["alert: window_start is not an integer"] == 1
    assert store.refused["alert: trading_day is not a date (YYYY-MM-DD)"] == 1
    with pytest.raises(RecordError, match="alert: status is not one of raised, final"):
        store.put_alert({**good, "status": "done"})
    rec = next(r for r in result.recommendations if good["alert_id"] in r["reasons"])
    for change in ({"measure": None}, {"reasons": "x"}, {"subject": {}}, {"duration_days": "3"}):
        with pytest.raises(RecordError):
            store.put_recommendation({**rec, **change})
    async with console_client(store, users) as c:
        for aid in broken:
            for path in (f"/api/alerts/{aid}", f"/api/alerts/{aid}/chart.svg"):
                r = await c.get(path)
                assert r.status == 422, (path, await r.text())
                assert f"alert_id='{aid}': its record on the alerts topic was refused (alert: " in (
                    await r.json())["error"]
        r = await c.get("/api/alerts/" + "0" * 32)
        assert "(alert: window_start is not an integer)" in (await r.json())["error"]
        r = await c.get("/api/alerts/never")
        assert r.status == 404 and "alert_id='never': no such alert" in (await r.json())["error"]
        r = await c.get(f"/api/alerts/{good['alert_id']}")
        assert r.status == 200 and (await r.json())["alert"] == good
        meta = await (await c.get("/api/meta")).json()
        assert meta["counts"]["bad_records"] == store.counts["bad_records"]
        assert meta["refused"]["alert: no window_start"] == 1 and meta["limits"]["limit"] == 5_000
        # whatever an indexed alert's evidence holds, the chart is drawn or a 422 with the reason
        odd = {**copy.deepcopy(good), "alert_id": "d" * 32}
        odd["evidence"]["per_second"] = [["x", None]]
        store.put_alert(odd)
        r = await c.get(f"/api/alerts/{odd['alert_id']}/chart.svg")
        assert r.status == 422 and "cannot be drawn" in (await r.json())["error"]
        dollar = {**copy.deepcopy(good), "alert_id": "c" * 32, "subject": {"venue": "SSE", "account": "$\\frac{$"}}
        store.put_alert(dollar)
        assert (await c.get(f"/api/alerts/{dollar['alert_id']}/chart.svg")).status == 200
        # an unexpected error is a JSON 500, logged
        store.list = None
        r = await c.get("/api/alerts")
        assert r.status == 500 and "internal error (TypeError)" in (await r.json())["error"]


def test_the_alert_gives_every_timestamp_as_exact_text(result, users_file):
    asyncio.run(_display(result, users_file))


async def _display(result, users):
    store = filled(result)
    a = copy.deepcopy(next(x for x in result.alerts if x["rule"] == "order_rate_1s"))
    a["alert_id"] = "e" * 32
    a["window_start"] = 1_708_306_200_815_287_000
    a["evidence"]["raised_at"] = 1_708_306_200_815_287_123
    store.put_alert(a)
    async with console_client(store, users) as c:
        body = await (await c.get(f"/api/alerts/{a['alert_id']}")).json()
        assert body["alert"]["window_start"] == a["window_start"]  # the record as published, unchanged
        assert body["display"]["window_start"] == "2024-02-19 09:30:00.815287 +08:00"
        ev = dict(body["display"]["evidence"])
        assert ev["raised_at"] == "2024-02-19 09:30:00.815287123 +08:00"
        assert "by_account" not in ev and "per_second" in ev
        assert body["summary"]["window_start_ns"] == "1708306200815287000"
        r = await c.get("/api/alerts", params={"limit": "1"})
        assert (await r.json())["alerts"][0]["window_start_ns"] == str(
            max(x["window_start"] for x in store.alerts.values()))
        acct = a["subject"]
        body = await (await c.get(f"/api/accounts/{acct['venue']}/{acct['account']}")).json()
        assert body["peak_second"]["at_text"].endswith(" +08:00")


def test_an_owner_page_is_bounded(result, users_file):
    asyncio.run(_owner_bounded(result, users_file))


async def _owner_bounded(result, users):
    from surveil.web.api import OWNER_ACCOUNTS

    store = filled(result)
    lj = copy.deepcopy(next(a for a in result.alerts if a["subject"] == {"owner": "LINGJUN"}))
    lj["evidence"]["accounts"] = [{"venue": "SSE", "account": f"A{i:05d}", "broker": "B1", "owner": "LINGJUN",
                                   "value": 1, "share": 0.0001} for i in range(10_000)]
    store.put_alert(lj)
    async with console_client(store, users) as c:
        body = await (await c.get("/api/owners/LINGJUN")).json()
        assert body["accounts_total"] == 10_000 and len(body["accounts"]) == OWNER_ACCOUNTS
        assert body["accounts"][0]["account"] == "A00000"
        r = await c.get("/api/owners/" + "x" * 300)
        assert r.status == 400 and "owner='xxxx" in (await r.json())["error"]


def test_owner_page_lists_accounts_with_their_validity_on_the_day_shown(tmp_path, users_file):
    asyncio.run(_owner_validity(tmp_path, users_file))


async def _owner_validity(tmp_path, users):
    from types import SimpleNamespace

    from surveil.engine.refdata import RefData

    f = tmp_path / "acc.csv"
    f.write_text("venue,account,owner,broker,valid_from\nSSE,A1,O1,F1,\nSSE,ACC,O1,F1,2024-02-01\n"
                 "SSE,ACC,O2,F2,2024-02-19T10:00:00+08:00\nSZSE,LATER,O1,F3,2024-03-01\n")
    worker = SimpleNamespace(ref=RefData.load_csv(f), ref_late=[{"key": "SSE:ACC"}], states={}, s=Settings(),
                             event_time=lambda: None)
    async with console_client(Store(), users, worker) as c:
        body = await (await c.get("/api/owners/O1?day=2024-02-19")).json()
        got = {a["account"]: (a["broker"], a["valid_from"], a["valid_until"]) for a in body["accounts"]}
        assert body["day"] == "2024-02-19"
        assert got == {"A1": ("F1", None, None),
                       "ACC": ("F1", "2024-02-01T00:00:00.000000000+08:00", "2024-02-19T10:00:00.000000000+08:00")}
        o2 = await (await c.get("/api/owners/O2?day=2024-02-19")).json()
        assert [a["account"] for a in o2["accounts"]] == ["ACC"]
        assert [a["account"] for a in (await (await c.get("/api/owners/O2?day=2024-02-18")).json())["accounts"]] == []
        later = await (await c.get("/api/owners/O1?day=2024-03-01")).json()
        assert sorted(a["account"] for a in later["accounts"]) == ["A1", "LATER"]
        assert (await c.get("/api/owners/O1?day=someday")).status == 400
        assert (await (await c.get("/api/meta")).json())["ref_late"] == [{"key": "SSE:ACC"}]
