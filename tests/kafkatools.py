"""Settings for a test worker on the session's broker: every topic and the group under a fresh prefix."""

import uuid

from surveil.stream.settings import Settings


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
