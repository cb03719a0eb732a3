"""Settings for a test worker on the session's broker (every topic and the group under a fresh prefix), and the
start of a test broker on free loopback ports."""

import uuid
from pathlib import Path

import pytest

from surveil import kafka_local
from surveil.stream.settings import Settings


def start_broker(data_dir: Path, what: str, **kw) -> kafka_local.BrokerInfo:
    """A local broker in ``data_dir`` on free loopback ports (three tries: another process may take a "free"
    port meanwhile); a failure fails the test session naming ``what`` broker could not start."""
    for _attempt in range(3):
        port, controller_port = kafka_local.free_ports(2)
        try:
            return kafka_local.start(data_dir, port=port, controller_port=controller_port, timeout=120.0,
                                     die_with_parent=True, **kw)
        except kafka_local.PortBusy:
            continue
        except kafka_local.KafkaLocalError as exc:
            pytest.fail(f"could not start {what}: {exc}", pytrace=False)
    pytest.fail(f"could not find free ports for {what}", pytrace=False)


def settings(bootstrap: str, **kw) -> Settings:
    """Fresh topic names and group (tests share one broker); ``kw`` overrides any setting."""
    p = f"t{uuid.uuid4().hex[:8]}."
    defaults = dict(bootstrap_servers=bootstrap, feed_topics=(p + "feed.sse", p + "feed.szse", p + "feed.bse"),
                    feed_partitions=3, owner_partitions=2, alerts_topic=p + "alerts",
                    recommendations_topic=p + "recommendations", broker_topic_prefix=p + "alerts.broker.",
                    rejects_topic=p + "rejects", ref_topic=p + "ref", securities_topic=p + "securities",
                    owner_topic=p + "owner", security_topic=p + "security", security_partitions=2,
                    checkpoint_topic=p + "checkpoints", group_id=p + "workers", checkpoint_interval_ms=500)
    return Settings(**{**defaults, **kw})
