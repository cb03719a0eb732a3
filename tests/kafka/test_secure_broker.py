"""The whole pipeline over SASL_SSL with the authorizer on, each part as its own principal with only its role's
ACLs (``surveil acl apply``'s layout): the worker, the feed gateway, the desk's console reader, and a member firm
subscribing with Kafka's own console consumer and the README's ``client.properties``. Live equals replay."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import uuid

import orjson
import pytest
from kafkatools import settings as fresh_settings
from stream.test_worker import canonical, latest_finals, read_topic, run_worker, stop_worker, wait_for_finals

from surveil import acl, kafka_local
from surveil.engine.alerts import sort_key
from surveil.engine.refdata import RefData
from surveil.feed import feed
from surveil.replay import replay
from surveil.sim import simulate
from surveil.web.alert_feed import AlertFeed
from surveil.web.store import Store

pytestmark = pytest.mark.kafka

#: the member firm's consumer: the class Kafka 3.9's kafka-console-consumer.sh runs (kafka-tools)
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"


def readme_block(marker: str) -> str:
    """The fenced block after ``<!-- marker`` in the README."""
    text = (kafka_local.repo_root() / "README.md").read_text()
    assert f"<!-- {marker}" in text, marker
    return text.split(f"<!-- {marker}", 1)[1].split("```", 2)[1].split("\n", 1)[1]


def substitute(text: str, values: dict[str, str]) -> str:
    for old, new in values.items():
        assert old in text, f"the README's block no longer has {old!r}"
        text = text.replace(old, new)
    return text


def readme_console_consumer(secure_broker, user, password, properties, topic, group, timeout_ms=8000,
                            max_messages=None):
    """The README's member-firm command with its client.properties, for ``user`` on the test's broker (placeholders
    and paths replaced, nothing else), ending after ``max_messages`` records or ``timeout_ms`` without one."""
    properties.write_text(substitute(readme_block("member-firm client.properties"), {
        'username="firm-b007"': f'username="{user}"', "<its password>": password,
        "/etc/surveil/truststore.p12": str(secure_broker.files.truststore),
        "<the truststore's password>": secure_broker.files.truststore_password}))
    tools = kafka_local.ensure_kafka_tools()
    command = substitute(readme_block("member-firm console consumer").replace("\\\n", " "), {
        "java ": f"{kafka_local._java()} ",  # noqa: SLF001 - the java the broker runs with
        "file:deploy/kafka/": f"file:{kafka_local.repo_root()}/deploy/kafka/",
        "'.cache/kafka/lib/*:.cache/kafka/tools/*'": f"'{secure_broker.lib}/*:{tools}/*'",
        "127.0.0.1:19094": secure_broker.bootstrap, "client.properties": str(properties),
        "--topic surveil.alerts.broker.B007": f"--topic {topic}",
        "--group surveil.alerts.broker.B007": f"--group {group}"})
    assert CONSOLE_CONSUMER in command
    extra = ["--timeout-ms", str(timeout_ms), *(["--max-messages", str(max_messages)] if max_messages else [])]
    return subprocess.run([*shlex.split(command), *extra], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def small_day(tmp_path_factory):
    d = tmp_path_factory.mktemp("secure-day")
    return simulate(d / "day.svb", events=60_000, accounts=1_000, seed=4)


def test_live_equals_replay_over_sasl_ssl_each_part_as_its_own_principal(secure_broker, small_day, tmp_path):
    day = small_day
    want = replay([day.events_path], accounts=day.accounts_path)
    assert want.alerts
    base = fresh_settings("127.0.0.1:1", accounts_csv=str(day.accounts_path))
    # a member firm of the day's reference data with alerts, and another one (which it must not read)
    firms = sorted({x["broker"] for a in want.alerts for x in a["evidence"].get("by_account", [])})
    mine, other = firms[0], firms[1]
    tag = uuid.uuid4().hex[:6]
    rows = {"worker": dict(name=f"w-{tag}", role="worker"), "feed": dict(name=f"f-{tag}", role="feed"),
            "desk": dict(name=f"d-{tag}", role="desk"), "firm": dict(name=f"firm-{tag}", role="broker", broker=mine)}
    lines = []
    for key, r in rows.items():
        r["password"] = f"pw-{key}-{tag}"
        (tmp_path / f"{key}.pw").write_text(r["password"] + "\n")
        lines += ["[[principal]]", *(f'{k} = "{v}"' for k, v in r.items() if k != "password"),
                  f'password_file = "{key}.pw"', ""]
    (tmp_path / "principals.toml").write_text("\n".join(lines))
    acl.apply(acl.load_principals(tmp_path / "principals.toml", settings=base), base, secure_broker.tools())
    as_ = {k: secure_broker.settings(base, r["name"], r["password"]) for k, r in rows.items()}

    async def go():
        store = Store()
        console = asyncio.create_task(AlertFeed(as_["desk"], store).run())  # the desk's console reader
        w, task = await run_worker(as_["worker"])
        try:
            await asyncio.wait_for(w.ready.wait(), 60)
            await feed([day.events_path], as_["feed"], speed="max")
            finals = await wait_for_finals(as_["desk"], base.alerts_topic, len(want.alerts))
            assert canonical(finals) == canonical(want.alerts)  # live equals replay, over SASL_SSL
            recs = {orjson.loads(m.value)["recommendation_id"]: orjson.loads(m.value)
                    for m in await read_topic(as_["desk"], base.recommendations_topic)}
            assert sorted(recs.values(), key=sort_key) == sorted(want.recommendations, key=sort_key)
            for _ in range(40):  # the console caught up with every final alert
                if store.caught_up and {a["alert_id"] for a in want.alerts} <= {
                        k for k, a in store.alerts.items() if a["status"] == "final"}:
                    break
                await asyncio.sleep(0.25)
            else:
                raise AssertionError(f"the console has {len(store.alerts)} alerts")
            records = await read_topic(as_["desk"], base.broker_topic(mine))
            views = latest_finals(records)
            assert views
            return views, len(records)
        finally:
            console.cancel()
            await asyncio.gather(console, return_exceptions=True)
            await stop_worker(w, task)

    views, n_records = asyncio.run(asyncio.wait_for(go(), 240))
    # every broker of the reference data got its topic, written by the worker
    assert {r.broker for r in RefData.load_csv(day.accounts_path).accounts.values() if r.broker} >= {mine, other}

    # the member firm, with the README's console consumer command and client.properties: its own alerts ...
    firm = rows["firm"]
    props = tmp_path / "client.properties"
    got = readme_console_consumer(secure_broker, firm["name"], firm["password"], props, base.broker_topic(mine),
                                  acl.member_group(base, mine), max_messages=n_records)
    assert got.returncode == 0, got.stderr[-2000:]
    lines = [line for line in got.stdout.splitlines() if line.strip()]
    assert len(lines) == n_records
    got_views = [orjson.loads(line.split("\t", 1)[1]) for line in lines]  # key <TAB> value
    assert {v["alert_id"] for v in views} <= {v["alert_id"] for v in got_views}
    for view in got_views:
        ev = view["evidence"]
        assert ({x["broker"] for x in ev["by_account"]} if "by_account" in ev else {ev["broker"]}) == {mine}
    # ... and not another firm's
    refused = readme_console_consumer(secure_broker, firm["name"], firm["password"], props, base.broker_topic(other),
                                      acl.member_group(base, mine), timeout_ms=5000)
    assert "TopicAuthorizationException: Not authorized to access topics" in refused.stderr, refused.stderr[-2000:]
    assert f"[{base.broker_topic(other)}]" in refused.stderr and not refused.stdout.strip()
