"""Principals and ACLs on the real secure broker (SASL_SSL, SCRAM-SHA-512, StandardAuthorizer, nothing allowed by
default): a member firm reads its own alert topic and nothing else, and writes nowhere; a wrong password is refused;
a worker missing one permission stops at once, naming the topic and the operation; ``acl apply`` is idempotent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from click.testing import CliRunner
from kafkatools import settings as fresh_settings

from surveil import acl
from surveil.cli import main
from surveil.feed import feed
from surveil.kafka_local import free_ports
from surveil.sim import simulate
from surveil.stream.exceptions import AccessDenied
from surveil.stream.worker import Worker

pytestmark = pytest.mark.kafka


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def write_principals(tmp_path, rows: list[dict]) -> tuple:
    """A brokers file with these principals, each password in a file next to it."""
    lines = []
    for r in rows:
        (tmp_path / f"{r['name']}.pw").write_text(r["password"] + "\n")
        lines.append("[[principal]]")
        lines += [f'{k} = "{v}"' for k, v in r.items() if k != "password"]
        lines.append(f'password_file = "{r["name"]}.pw"\n')
    path = tmp_path / "principals.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def firms(secure_broker, tmp_path_factory):
    """A worker and two member firms whose ids are a prefix pair (B1, B10), applied with ``acl apply``; the
    alerts, checkpoint and both broker topics exist with one record each (written by the admin)."""
    tag = uuid.uuid4().hex[:6]
    base = fresh_settings("127.0.0.1:1")
    rows = [dict(name=f"w-{tag}", role="worker", password=f"pw-worker-{tag}"),
            dict(name=f"b1-{tag}", role="broker", broker="B1", password=f"pw-b1-{tag}"),
            dict(name=f"b10-{tag}", role="broker", broker="B10", password=f"pw-b10-{tag}")]
    path = write_principals(tmp_path_factory.mktemp("principals"), rows)
    principals = acl.load_principals(path, settings=base)
    done = acl.apply(principals, base, secure_broker.tools())
    assert not done.removed and len(done.added) == len(acl.layout(principals, base))
    topics = [base.alerts_topic, base.checkpoint_topic, base.broker_topic("B1"), base.broker_topic("B10")]
    run(_seed(secure_broker.admin(base), topics))
    return base, path, {r["broker"] if r["role"] == "broker" else r["role"]: r for r in rows}, topics


async def _seed(s, topics):
    admin = AIOKafkaAdminClient(**s.kafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 1, 1) for t in topics])
    finally:
        await admin.close()
    p = AIOKafkaProducer(**s.kafka_kwargs())
    await p.start()
    try:
        for t in topics:
            await p.send_and_wait(t, f"record of {t}".encode(), key=b"k")
    finally:
        await p.stop()


def as_firm(secure_broker, firms, broker):
    base, _, rows, _ = firms
    return secure_broker.settings(base, rows[broker]["name"], rows[broker]["password"])


async def subscribe_and_read(s, topic, group):
    """What a member firm does: subscribe with a consumer group and read from the beginning."""
    c = AIOKafkaConsumer(topic, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
                         **s.kafka_kwargs())
    try:
        await c.start()
        got = []
        for _ in range(20):
            for msgs in (await c.getmany(timeout_ms=500)).values():
                got += [m.value for m in msgs]
            if got:
                return got
        return got
    finally:
        await c.stop()


def test_a_member_firm_reads_its_own_topic_with_its_own_group(secure_broker, firms):
    base = firms[0]
    for broker in ("B1", "B10"):
        s = as_firm(secure_broker, firms, broker)
        got = run(subscribe_and_read(s, base.broker_topic(broker), acl.member_group(base, broker)))
        assert got == [f"record of {base.broker_topic(broker)}".encode()]


@pytest.mark.parametrize("who, topic_of", [
    ("B1", lambda s: s.broker_topic("B10")),  # a prefix pair, both ways
    ("B10", lambda s: s.broker_topic("B1")),
    ("B1", lambda s: s.alerts_topic),
    ("B1", lambda s: s.checkpoint_topic),
])
def test_a_member_firm_is_refused_every_other_topic(secure_broker, firms, who, topic_of):
    base = firms[0]
    topic = topic_of(base)
    s = as_firm(secure_broker, firms, who)
    with pytest.raises(TopicAuthorizationFailedError) as e:
        run(subscribe_and_read(s, topic, acl.member_group(base, who)))
    assert topic in str(e.value)


def test_a_member_firm_cannot_write_anywhere_not_even_its_own_topic(secure_broker, firms):
    s = as_firm(secure_broker, firms, "B1")

    async def write(topic):
        p = AIOKafkaProducer(**s.kafka_kwargs())
        await p.start()
        try:
            await p.send_and_wait(topic, b"forged", key=b"k")
        finally:
            await p.stop()

    for topic in firms[3]:  # its own broker topic, the other's, the alerts and the checkpoints
        with pytest.raises(TopicAuthorizationFailedError):
            run(write(topic), 30)


def test_a_wrong_password_is_refused(secure_broker, firms):
    s = replace(as_firm(secure_broker, firms, "B1"), sasl_password="not-the-password")

    async def connect(s=s):
        admin = AIOKafkaAdminClient(**s.kafka_kwargs())
        try:
            await admin.start()
            return await admin.list_topics()
        finally:
            await admin.close()

    with pytest.raises(KafkaConnectionError):  # aiokafka: SaslAuthenticationFailed, then cannot bootstrap
        run(connect(), 30)
    assert firms[0].broker_topic("B1") in run(connect(as_firm(secure_broker, firms, "B1")), 30)  # the right one


def test_a_failing_tool_never_shows_the_password_it_was_given(secure_broker, tmp_path):
    """Kafka's ConfigCommand echoes its arguments when it fails ("Error while executing config command with args
    '…'"): a SCRAM password given to ``acl apply`` must not reach the error (here: the admin's own credential is
    wrong, so the tool fails after parsing its arguments)."""
    good = secure_broker.files.admin_config.read_text()
    bad = tmp_path / "admin.properties"
    bad.write_text(good.replace(secure_broker.files.admin_password, "not-the-admin-password"))
    secret = f"S3cret-{uuid.uuid4().hex}"
    tools = acl.KafkaTools(secure_broker.bootstrap, bad, secure_broker.lib, timeout=60)
    with pytest.raises(acl.AclError) as e:
        tools.set_password("nobody", secret)
    assert "ConfigCommand failed" in str(e.value)
    assert secret not in str(e.value) and secret[:12] not in str(e.value)


def test_acl_apply_again_changes_nothing_and_show_prints_the_layout(secure_broker, firms):
    base, path, rows, _ = firms
    runner = CliRunner()
    common = ["--bootstrap-server", secure_broker.bootstrap, "--command-config", str(secure_broker.files.admin_config)]
    env = base.to_env()  # the topic names of the test's settings (SURVEIL_*), as an exchange would set them
    env.pop("SURVEIL_BOOTSTRAP_SERVERS")
    r = runner.invoke(main, ["acl", "apply", "--brokers", str(path), *common], env=env)
    assert r.exit_code == 0, r.output
    assert "0 ACLs added, 0 removed" in r.output and "added" not in r.stdout
    for row in rows.values():
        assert row["password"] not in r.output
    r = runner.invoke(main, ["acl", "show", *common], env=env)
    assert r.exit_code == 0, r.output
    b1 = rows["B1"]["name"]
    block = r.stdout.split(f"User:{b1}\n", 1)[1].split("User:", 1)[0]
    assert block.split("\n")[:2] == [f"  GROUP  {base.broker_topic('B1')} (LITERAL): READ",
                                     f"  TOPIC  {base.broker_topic('B1')} (LITERAL): READ"]
    assert b1 in r.stdout.split("SCRAM-SHA-512 users:")[1]


def test_a_bad_brokers_file_names_the_principal_and_the_field(tmp_path):
    base = fresh_settings("127.0.0.1:1")
    cases = [
        ('[[principal]]\nname = "x1"\nrole = "trader"\npassword_env = "PW"\n', "principal 1 ('x1'): role='trader'"),
        ('[[principal]]\nname = "x1"\nrole = "broker"\npassword_env = "PW"\n', "principal 1 ('x1'): broker=None"),
        ('[[principal]]\nname = "x1"\nrole = "desk"\nbroker = "B1"\npassword_env = "PW"\n', "broker='B1'"),
        ('[[principal]]\nname = "a b"\nrole = "desk"\npassword_env = "PW"\n', "principal 1 ('a b'): name='a b'"),
        ('[[principal]]\nname = "x1"\nrole = "desk"\npassword_env = "UNSET_PW"\n', "password_env='UNSET_PW'"),
        ('[[principal]]\nname = "x1"\nrole = "desk"\npassword_file = "nope"\n', "password_file='nope'"),
        ('[[principal]]\nname = "x1"\nrole = "desk"\n', "give exactly one"),
        ('[[principal]]\nname = "x1"\nrole = "desk"\npassword_env = "SHORT"\n', "shorter than 8"),
        ('[[principal]]\nname = "x1"\nrole = "feed"\npassword_env = "PW"\n[[principal]]\nname = "x1"\nrole = "desk"\n'
         'password_env = "PW"\n', "principal 2 ('x1'): name='x1': given twice"),
        ('[[principal]]\nname = "x1"\nrole = "desk"\npasword_env = "PW"\n', "pasword_env"),
    ]
    for text, want in cases:
        path = tmp_path / "p.toml"
        path.write_text(text)
        with pytest.raises(acl.AclError) as e:
            acl.load_principals(path, env={"PW": "long-enough-pw", "SHORT": "abc"}, settings=base)
        assert str(path) in str(e.value) and want in str(e.value), (want, str(e.value))
        assert "long-enough-pw" not in str(e.value)
    r = CliRunner().invoke(main, ["acl", "apply", "--brokers", str(path), "--command-config", str(path)])
    assert r.exit_code != 0 and "pasword_env" in r.output


def test_a_worker_missing_one_permission_stops_naming_the_topic_and_the_operation(secure_broker, firms):
    base, _, rows, _ = firms
    tools = secure_broker.tools()
    # the worker's own topics and group for this test; its principal gets the whole layout but READ on the
    # checkpoint topic (it may still write it)
    s0 = replace(fresh_settings("127.0.0.1:1"), checkpoint_interval_ms=500)
    worker = acl.Principal(rows["worker"]["name"], "worker", password=rows["worker"]["password"])
    wanted = acl.layout([worker], s0)
    missing = acl.Acl(worker.name, "TOPIC", s0.checkpoint_topic, "LITERAL", "READ")
    assert missing in wanted
    tools.add(wanted - {missing})
    s = secure_broker.settings(s0, worker.name, worker.password)

    async def go():
        w = Worker(s)
        t0 = time.monotonic()
        with pytest.raises(AccessDenied) as e:
            await asyncio.wait_for(w.run(), 30)
        return e.value, time.monotonic() - t0

    err, took = run(go(), 60)
    assert took < 30
    assert (err.operation, err.resource, err.name) == ("READ", "topic", s0.checkpoint_topic)
    assert f"READ on topic '{s0.checkpoint_topic}' to User:{worker.name}" in str(err)

    # the real process (``surveil worker``'s Faust app): exits non-zero, saying so
    env = s.to_env(os.environ)
    env.update(SURVEIL_WEB_PORT=str(free_ports(1)[0]), SURVEIL_CONSOLE="off", SURVEIL_METRICS="off")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "surveil.stream.app"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert time.monotonic() - t0 < 30 and proc.returncode != 0
    assert f"Kafka refused READ on topic '{s0.checkpoint_topic}' to User:{worker.name}" in proc.stdout + proc.stderr


def test_the_layout_lets_only_the_worker_write_alerts_and_gives_firms_literal_reads_only():
    s = fresh_settings("127.0.0.1:1")
    ps = [acl.Principal("w", "worker"), acl.Principal("f", "feed"), acl.Principal("d", "desk"),
          acl.Principal("b1", "broker", "B1"), acl.Principal("b10", "broker", "B10")]
    rules = acl.layout(ps, s)
    alert_topics = {s.alerts_topic, s.recommendations_topic, s.broker_topic("B1"), s.broker_topic("B10")}
    writers = {a.principal for a in rules if a.operation in ("WRITE", "CREATE") and (
        a.name in alert_topics or a.name == s.broker_topic_prefix)}
    assert writers == {"w"}
    for firm, broker in (("b1", "B1"), ("b10", "B10")):
        assert {a for a in rules if a.principal == firm} == {
            acl.Acl(firm, "TOPIC", s.broker_topic(broker), "LITERAL", "READ"),
            acl.Acl(firm, "GROUP", acl.member_group(s, broker), "LITERAL", "READ")}
    # the only PREFIXED rules: the worker creating and writing broker topics, the desk reading them and its groups
    assert {(a.principal, a.name, a.operation) for a in rules if a.pattern == "PREFIXED"} == {
        ("w", s.broker_topic_prefix, "CREATE"), ("w", s.broker_topic_prefix, "WRITE"),
        ("d", s.broker_topic_prefix, "READ"), ("d", acl.DESK_GROUP_PREFIX, "READ")}
    assert {(a.resource, a.name) for a in rules if a.principal == "f"} == {("TOPIC", t) for t in s.feed_topics}


def test_a_worker_that_may_not_write_the_alerts_stops_at_its_first_alert(secure_broker, firms, tmp_path):
    """The other way a missing ACL shows: the broker refuses the produce request (the worker may describe the topic),
    so the refusal arrives with the delivery; the worker stops at once instead of rewinding and retrying."""
    rows = firms[2]
    day = simulate(tmp_path / "day.svb", events=20_000, accounts=500, seed=4)
    s0 = replace(fresh_settings("127.0.0.1:1"), checkpoint_interval_ms=500, accounts_csv=str(day.accounts_path))
    worker = acl.Principal(rows["worker"]["name"], "worker", password=rows["worker"]["password"])
    missing = acl.Acl(worker.name, "TOPIC", s0.alerts_topic, "LITERAL", "WRITE")
    secure_broker.tools().add(acl.layout([worker], s0) - {missing})
    s = secure_broker.settings(s0, worker.name, worker.password)

    async def go():
        w = Worker(s)
        task = asyncio.create_task(w.run())
        await asyncio.wait_for(w.ready.wait(), 60)
        await feed([day.events_path], secure_broker.admin(s0), speed="max")  # fed by the super user
        t0 = time.monotonic()
        with pytest.raises(AccessDenied) as e:
            await asyncio.wait_for(task, 30)
        return e.value, time.monotonic() - t0

    err, took = run(go(), 120)
    assert took < 30
    assert (err.operation, err.resource, err.name) == ("WRITE", "topic", s0.alerts_topic)
