"""Topic set-up: every topic the workers read or write, with its partitions and clean-up policy."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError

from surveil.stream.exceptions import AccessDenied
from surveil.stream.settings import Settings

COMPACT = {"cleanup.policy": "compact"}
CHECKPOINT_MAX_BYTES = 64 * 1024 * 1024
OWNER_MAX_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict


def specs(s: Settings) -> list[TopicSpec]:
    out = [TopicSpec(t, s.feed_partitions, {}) for t in s.feed_topics]
    out += [
        # the owner stage's clock for idle sources is its records' timestamps: the broker's, one clock
        TopicSpec(s.owner_topic, s.owner_partitions, {"max.message.bytes": str(OWNER_MAX_BYTES),
                                                      "message.timestamp.type": "LogAppendTime"}),
        TopicSpec(s.security_topic, s.security_partitions, {"max.message.bytes": str(OWNER_MAX_BYTES),
                                                            "message.timestamp.type": "LogAppendTime"}),
        TopicSpec(s.alerts_topic, 4, COMPACT),
        TopicSpec(s.recommendations_topic, 1, COMPACT),
        TopicSpec(s.rejects_topic, 1, {}),
        TopicSpec(s.ref_topic, 1, COMPACT),
        TopicSpec(s.securities_topic, 1, COMPACT),
        TopicSpec(s.checkpoint_topic, 1, {**COMPACT, "max.message.bytes": str(CHECKPOINT_MAX_BYTES)}),
    ]
    return out


async def ensure(admin: AIOKafkaAdminClient, wanted: list[TopicSpec], principal: str = "") -> dict[str, int]:
    """Create missing topics; returns the partition count of every wanted topic (existing ones as they are).
    A topic the principal may not create or see (a missing ACL) is an AccessDenied naming it, at once."""
    existing = set(await admin.list_topics())  # only the topics the principal may see
    missing = [t for t in wanted if t.name not in existing]
    if missing:
        try:
            resp = await admin.create_topics([NewTopic(t.name, t.partitions, 1, topic_configs=t.config)
                                              for t in missing])
            for item in getattr(resp, "topic_errors", []):
                if item[1] == TopicAuthorizationFailedError.errno:
                    raise AccessDenied("CREATE", "topic", item[0], principal or "ANONYMOUS",
                                       "creating the topic, which does not exist or which it may not see")
        except TopicAlreadyExistsError:
            pass
    counts: dict[str, int] = {}
    for _ in range(50):
        desc = await admin.describe_topics([t.name for t in wanted])
        for d in desc:
            if d.get("error_code") == TopicAuthorizationFailedError.errno:
                raise AccessDenied("DESCRIBE", "topic", d["topic"], principal or "ANONYMOUS",
                                   "describing it: READ or WRITE on a topic includes DESCRIBE")
        counts = {d["topic"]: len(d["partitions"]) for d in desc if not d.get("error_code")}
        if all(counts.get(t.name) for t in wanted):
            return counts
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topics not ready: {[t.name for t in wanted if not counts.get(t.name)]}")


async def partitions(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, set[int]]:
    """The partition ids of those of ``names`` that exist now (the others are left out). Asks for the metadata
    of every topic: naming the topics in the request would create missing ones on a broker that creates
    topics on first use (``auto.create.topics.enable``), with its default partitions and settings."""
    wanted = set(names)
    return {d["topic"]: {p["partition"] for p in d["partitions"]} for d in await admin.describe_topics()
            if d["topic"] in wanted and not d.get("error_code") and d["partitions"]}
