"""A real single-node Kafka (KRaft) for the tests in this folder.

The broker is started once per session on free loopback ports in a folder
under pytest's basetemp, and stopped at the end.  When the environment
variable ``SURVEIL_KAFKA_BOOTSTRAP`` is set, that external broker is used
instead and nothing is started.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafkatools import start_broker

from surveil import kafka_local
from surveil.kafka_local import free_ports

START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    data_dir: Path | None  # None for an external broker
    pid: int | None

    @property
    def external(self) -> bool:
        return self.data_dir is None


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    external = kafka_local.external_bootstrap()
    if external:
        yield Broker(bootstrap=external, data_dir=None, pid=None)
        return

    data_dir = tmp_path_factory.mktemp("kafka")
    info = start_broker(data_dir, "a local Kafka broker")
    try:
        yield Broker(bootstrap=info.bootstrap, data_dir=data_dir, pid=info.pid)
    finally:
        kafka_local.stop(data_dir)


@pytest.fixture
def free_port_pair() -> tuple[int, int]:
    """Two distinct loopback ports that are free right now."""
    port, controller_port = free_ports(2)
    return port, controller_port


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    """``host:port`` of a running broker (local, or ``$SURVEIL_KAFKA_BOOTSTRAP``)."""
    return kafka_broker.bootstrap
