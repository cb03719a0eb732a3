"""A real secure single-node Kafka for the ACL tests: SASL_SSL with SCRAM-SHA-512, TLS from a CA the test set-up
generates, and the StandardAuthorizer with allow.everyone.if.no.acl.found=false (``kafka_local.start(secure=True)``).

Started once per session on free loopback ports under pytest's basetemp, stopped at the end. There is no external
variant: the tests need the broker's super user to apply ACLs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafkatools import start_broker

from surveil import acl, kafka_local
from surveil.kafka_local import SecureFiles
from surveil.stream.settings import Settings


@dataclass(frozen=True)
class SecureBroker:
    bootstrap: str
    data_dir: Path
    files: SecureFiles
    lib: Path

    def tools(self) -> acl.KafkaTools:
        """Kafka's admin tools as the super user."""
        return acl.KafkaTools(self.bootstrap, self.files.admin_config, self.lib)

    def settings(self, base: Settings, user: str, password: str) -> Settings:
        """``base`` (topic names) connecting as ``user`` over SASL_SSL."""
        from dataclasses import replace

        return replace(base, bootstrap_servers=self.bootstrap, security_protocol="SASL_SSL",
                       sasl_mechanism="SCRAM-SHA-512", sasl_username=user, sasl_password=password,
                       ssl_cafile=str(self.files.ca_file))

    def admin(self, base: Settings) -> Settings:
        return self.settings(base, self.files.admin_user, self.files.admin_password)


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    data_dir = tmp_path_factory.mktemp("kafka-secure")
    info = start_broker(data_dir, "a secure local Kafka broker", secure=True)
    assert info.secure is not None
    try:
        yield SecureBroker(info.bootstrap, data_dir, info.secure, kafka_local.ensure_kafka_libs())
    finally:
        kafka_local.stop(data_dir)
