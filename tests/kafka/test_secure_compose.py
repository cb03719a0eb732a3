"""deploy/kafka/secure-broker.sh, the compose file's secure broker, run here against Kafka's jars (no Docker): it
makes its TLS files with keytool, formats with the admin's SCRAM credential and serves SASL_SSL on both listeners,
with the authorizer on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import TopicAuthorizationFailedError
from aiokafka.helpers import create_ssl_context

from surveil import acl, kafka_local
from surveil.kafka_local import free_ports

pytestmark = pytest.mark.kafka

SCRIPT = kafka_local.repo_root() / "deploy" / "kafka" / "secure-broker.sh"
PASSWORD = "compose-admin-pw"


def kwargs(secure, port, user="admin", password=PASSWORD):
    return dict(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                sasl_plain_username=user, sasl_plain_password=password,
                ssl_context=create_ssl_context(cafile=str(secure / "ca.pem")))


async def cluster(secure, port, timeout=90.0):
    """The cluster's description as the admin, once the script's broker answers (its CA is made first)."""
    end = time.monotonic() + timeout
    while True:
        admin = None
        try:
            admin = AIOKafkaAdminClient(**kwargs(secure, port))
            await admin.start()
            return await admin.describe_cluster()
        except Exception:
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.5)
        finally:
            if admin is not None:
                await admin.close()


def test_the_compose_secure_broker_script_serves_sasl_ssl_with_the_authorizer_on(tmp_path):
    external, internal, controller = free_ports(3)
    secure = tmp_path / "secure"
    env = {**os.environ, "SURVEIL_KAFKA_ADMIN_PASSWORD": PASSWORD, "KAFKA_LIBS": str(kafka_local.ensure_kafka_libs()),
           "SECURE_DIR": str(secure), "DATA_DIR": str(tmp_path / "logs"), "HOSTNAME_IN": "localhost",
           "INTERNAL_PORT": str(internal), "EXTERNAL_PORT": str(external), "CONTROLLER_PORT": str(controller),
           "KAFKA_HEAP_OPTS": "-Xmx256m",
           "KAFKA_LOG4J_OPTS": f"-Dlog4j.configuration=file:{SCRIPT.parent / 'tools-log4j.properties'}"}
    with open(tmp_path / "out", "wb") as out:
        proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        for port in (external, internal):  # the published listener and the in-network one
            assert asyncio.run(cluster(secure, port))["brokers"], (tmp_path / "out").read_text()[-3000:]
        # the authorizer is on: a user without ACLs may not write
        tools = acl.KafkaTools(f"127.0.0.1:{external}", secure / "admin.properties", kafka_local.ensure_kafka_libs())
        tools.set_password("nobody-much", "nobody-much-pw")

        async def write():
            p = AIOKafkaProducer(**kwargs(secure, external, "nobody-much", "nobody-much-pw"))
            await p.start()
            try:
                await p.send_and_wait("anything", b"x")
            finally:
                await p.stop()

        with pytest.raises(TopicAuthorizationFailedError):
            asyncio.run(asyncio.wait_for(write(), 30))
        assert (secure / "truststore.p12").is_file() and (secure / "truststore.password").is_file()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
