"""Stream workers: the same engine over Kafka feed topics (partition stage + owner stage)."""
