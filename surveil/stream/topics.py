"""Topic set-up: every topic the workers read or write, with its partitions and clean-up policy."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

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


async def ensure(admin: AIOKafkaAdminClient, wanted: list[TopicSpec]) -> dict[str, int]:
    """Create missing topics; returns the partition count of every wanted topic (existing ones as they are)."""
    existing = set(await admin.list_topics())
    missing = [t for t in wanted if t.name not in existing]
    if missing:
        try:
            await admin.create_topics([NewTopic(t.name, t.partitions, 1, topic_configs=t.config) for t in missing])
        except TopicAlreadyExistsError:
            pass
    counts: dict[str, int] = {}
    for _ in range(50):
        desc = await admin.describe_topics([t.name for t in wanted])
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
