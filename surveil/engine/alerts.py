"""Alert records: deterministic ids and the JSON contract."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from surveil.events.schema import day_str


def alert_id(rule: str, version: int, subject: dict[str, str], trading_day: str, window_start: int) -> str:
    """Deterministic id: a hash of (rule id, rule version, subject, trading day, window start)."""
    key = orjson.dumps([rule, version, subject, trading_day, window_start], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def alert_record(draft, subject: dict[str, str]) -> dict[str, Any]:
    day = day_str(draft.trading_day)
    return {
        "kind": "alert",
        "alert_id": alert_id(draft.rule, draft.rule_version, subject, day, draft.window_start),
        "rule": draft.rule,
        "rule_version": draft.rule_version,
        "subject": subject,
        "trading_day": day,
        "window_start": draft.window_start,
        "window_end": draft.window_end,
        "value": draft.value,
        "threshold": draft.threshold,
        "unit": draft.unit,
        "severity": draft.severity,
        "status": draft.status,
        "evidence": draft.evidence,
    }


def dumps(record: dict[str, Any]) -> bytes:
    """Canonical JSON (sorted keys), the form written by replay and published by workers."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def sort_key(record: dict[str, Any]) -> tuple:
    """Output order: alerts by (window_start, rule, subject); then recommendations by (day, subject, measure)."""
    subj = orjson.dumps(record.get("subject"), option=orjson.OPT_SORT_KEYS)
    if record.get("kind") == "alert":
        return (0, record["window_start"], record["rule"], subj)
    return (1, record.get("trading_day", ""), subj, record.get("measure", ""))
