"""``surveil feed``: files -> frames and progress markers on the feed topics of a real Kafka broker."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from surveil.events import binary, jsonl
from surveil.events.batch import Batch, Registry
from surveil.events.io import read_events
from surveil.events.schema import VENUE_CODE, day_start_ns, trading_day_index
from surveil.feed import (
    encode_binary_frames,
    feed,
    feed_command,
    marker_ts,
    parse_speed,
    partition_for,
    venue_topics,
)
from surveil.stream.settings import Settings

FEED_TIMEOUT_S = 120
CONSUME_TIMEOUT_S = 90
DAY_INDEX = 19772  # 2024-02-19, the simulator's default day


# --------------------------------------------------------------------------------------------------
# helpers


def _uid() -> str:
    return f"{time.time_ns():x}"


def _topics(tag: str) -> tuple[str, str, str]:
    return (f"t.{tag}.sse", f"t.{tag}.szse", f"t.{tag}.bse")


def _settings(bootstrap: str, tag: str, **kw) -> Settings:
    return Settings.from_env({}, bootstrap_servers=bootstrap, feed_topics=_topics(tag), **kw)


def _read(paths, reg: Registry | None = None) -> tuple[Batch, Registry]:
    reg = reg or Registry()
    rejects: list = []
    b = Batch.concat([x for p in paths for x in read_events(p, reg, rejects)])
    return b, reg


def _dumps(b: Batch, reg: Registry) -> list[bytes]:
    return [orjson.dumps(d) for d in jsonl.event_dicts(b, reg)]


async def _consume(bootstrap: str, counts: dict[str, int]) -> dict[tuple[str, int], list[tuple[bytes, bytes, int]]]:
    """Every record of the topics: {(topic, partition): [(key, value, timestamp ms)]}."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        end = await c.end_offsets(tps)
        out: dict[tuple[str, int], list] = {(tp.topic, tp.partition): [] for tp in tps}
        while True:
            pos = [await c.position(tp) for tp in tps]
            if all(x >= end[tp] for x, tp in zip(pos, tps)):
                break
            data = await c.getmany(timeout_ms=1000, max_records=100_000)
            for tp, msgs in data.items():
                out[(tp.topic, tp.partition)].extend((m.key, m.value, m.timestamp) for m in msgs)
        return out
    finally:
        await c.stop()


def consume(bootstrap: str, counts: dict[str, int]):
    return asyncio.run(asyncio.wait_for(_consume(bootstrap, counts), CONSUME_TIMEOUT_S))


def run_feed(paths, settings: Settings, **kw):
    return asyncio.run(asyncio.wait_for(feed(paths, settings, **kw), FEED_TIMEOUT_S))


def check_records(records, settings: Settings, counts: dict[str, int], final_ts: int):
    """Decode every partition; check the marker invariants and the partitioning of every event.

    Returns ({(topic, partition): [event JSON bytes in partition order]}, {(topic, partition): [marker ts]})."""
    topics, topic_of_venue = venue_topics(settings)
    reg = Registry()
    events: dict[tuple[str, int], list[bytes]] = {}
    markers: dict[tuple[str, int], list[int]] = {}
    for (topic, p), recs in records.items():
        assert recs, f"{topic}[{p}] received nothing"
        evs: list[bytes] = []
        mks: list[int] = []
        last_marker = None
        for key, value, _ in recs:
            t = marker_ts(value)
            if t is not None:
                assert last_marker is None or t > last_marker, f"{topic}[{p}]: markers not increasing"
                last_marker = t
                mks.append(t)
                continue
            rejects: list = []
            if value[:4] == binary.MAGIC:
                batches = list(binary.decode_frames(value, reg, "test", rejects))
                assert len(batches) == 1
                dicts = list(jsonl.event_dicts(batches[0], reg))
            else:
                dicts = orjson.loads(value)
                assert isinstance(dicts, list) and dicts
            assert not rejects
            first = dicts[0]
            assert key == f"{first['venue']}:{first.get('account', first.get('symbol'))}".encode()
            for d in dicts:
                if last_marker is not None:
                    assert d["ts"] >= last_marker, f"{topic}[{p}]: event earlier than a marker sent before it"
                assert topics[topic_of_venue[VENUE_CODE[d["venue"]]]] == topic
                subject = d.get("account", d.get("symbol"))
                assert partition_for(f"{d['venue']}:{subject}".encode(), counts[topic]) == p
                evs.append(orjson.dumps(d))
        assert marker_ts(recs[-1][1]) == final_ts, f"{topic}[{p}]: last record is not the end-of-day marker"
        events[(topic, p)] = evs
        markers[(topic, p)] = mks
    return events, markers


def expected_by_partition(b: Batch, reg: Registry, settings: Settings, counts: dict[str, int]):
    topics, topic_of_venue = venue_topics(settings)
    out: dict[tuple[str, int], list[bytes]] = {(t, p): [] for t, n in counts.items() for p in range(n)}
    for d in jsonl.event_dicts(b, reg):
        topic = topics[topic_of_venue[VENUE_CODE[d["venue"]]]]
        subject = d.get("account", d.get("symbol"))
        out[(topic, partition_for(f"{d['venue']}:{subject}".encode(), counts[topic]))].append(orjson.dumps(d))
    return out


def next_day(b: Batch) -> int:
    return day_start_ns(int(trading_day_index(int(b.ts.max()))) + 1)


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    from surveil.sim import simulate

    d = tmp_path_factory.mktemp("feed")
    return simulate(d / "d.svb", events=20_000, accounts=500, seed=2).events_path


# --------------------------------------------------------------------------------------------------
# without a broker


def test_partition_for_is_kafkas_default_partitioner():
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed 32-bit results of the Java client)
    for key, java in [(b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
                      (b"a-little-bit-longer-string", -1486304829),
                      (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971), (b"abc", 479470107)]:
        for n in (1, 3, 4, 12, 1000):
            assert partition_for(key, n) == (java & 0x7FFFFFFF) % n


def test_parse_speed():
    assert parse_speed("max") is None
    assert parse_speed("1x") == 1.0
    assert parse_speed("10X") == 10.0
    assert parse_speed("2.5x") == 2.5
    assert parse_speed(50) == 50.0
    for bad in ("fast", "0x", "-1x", "x", "1xx"):
        with pytest.raises(ValueError):
            parse_speed(bad)


def test_venue_topics():
    s = Settings.from_env({})
    assert venue_topics(s) == (list(s.feed_topics), [0, 1, 2])
    one = Settings.from_env({}, feed_topics=("only",))
    assert venue_topics(one) == (["only"], [0, 0, 0])


def test_vectorised_frames_are_byte_identical_to_encode_frame(day):
    b, reg = _read([day])
    rng = np.random.default_rng(7)
    for _ in range(10):
        part = b.take(rng.permutation(len(b))[:5000])
        cuts = np.sort(rng.choice(np.arange(1, len(part)), size=int(rng.integers(0, 300)), replace=False))
        bounds = [0, *cuts.tolist(), len(part)]
        expected = [binary.encode_frame(part.take(slice(x, y)), reg) for x, y in zip(bounds[:-1], bounds[1:])]
        assert encode_binary_frames(part, bounds, reg) == expected


def test_missing_file_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(feed_command, [str(tmp_path / "nope.svb"), "--bootstrap", "127.0.0.1:1"])
    assert res.exit_code != 0
    assert "not found" in res.output and "nope.svb" in res.output


def test_bad_settings_and_speed_are_clear_errors(day):
    res = CliRunner().invoke(feed_command, [str(day), "--partitions", "0"])
    assert res.exit_code != 0 and "SURVEIL_FEED_PARTITIONS" in res.output
    res = CliRunner().invoke(feed_command, [str(day)], env={"SURVEIL_BOOTSTRAP_SERVERS": "no-port"})
    assert res.exit_code != 0 and "SURVEIL_BOOTSTRAP_SERVERS" in res.output
    res = CliRunner().invoke(feed_command, [str(day), "--speed", "fast"])
    assert res.exit_code == 2 and "--speed" in res.output


def test_unreachable_broker_is_a_clear_error(day, free_port_pair):
    port, _ = free_port_pair
    t0 = time.monotonic()
    res = CliRunner().invoke(feed_command, [str(day), "--bootstrap", f"127.0.0.1:{port}", "--timeout", "5"])
    assert res.exit_code != 0
    assert f"127.0.0.1:{port}" in res.output and "Kafka" in res.output
    assert time.monotonic() - t0 < 30


# --------------------------------------------------------------------------------------------------
# with a real broker


@pytest.mark.kafka
def test_feed_binary_day(day, kafka_bootstrap):
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    tag = _uid()
    settings = _settings(kafka_bootstrap, tag, feed_partitions=4)

    async def precreate():  # an existing topic is used as it is (3 partitions, not 4)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(settings.feed_topics[1], 3, 1)])
        finally:
            await admin.close()

    asyncio.run(precreate())
    stats = run_feed([day], settings)
    b, reg = _read([day])
    assert stats.events == len(b) and stats.rejects == 0 and stats.late == 0
    counts = {settings.feed_topics[0]: 4, settings.feed_topics[1]: 3, settings.feed_topics[2]: 4}
    assert stats.topics == counts
    assert sorted(stats.created_topics) == sorted([settings.feed_topics[0], settings.feed_topics[2]])
    final = next_day(b)
    assert stats.final_marker_ts == final == day_start_ns(DAY_INDEX + 1)  # 2024-02-20 00:00 Asia/Shanghai

    records = consume(kafka_bootstrap, counts)
    got, markers = check_records(records, settings, counts, final)
    # every event exactly once, each partition holding its (venue, account)s' events in input order
    assert Counter(x for evs in got.values() for x in evs) == Counter(_dumps(b, reg))
    assert got == expected_by_partition(b, reg, settings, counts)
    assert stats.frames == sum(1 for recs in records.values() for _, v, _ in recs if marker_ts(v) is None)
    assert stats.markers == sum(len(m) for m in markers.values())
    # at --speed max a partition gets a marker about once per MAX_PROGRESS_NS of event time, not more often
    from surveil.feed import MAX_PROGRESS_NS

    span = int(b.ts.max()) - int(b.ts.min())
    for tp, mks in markers.items():
        assert len(mks) <= span / MAX_PROGRESS_NS + 2, tp
        assert len(mks) >= span / MAX_PROGRESS_NS // 2, tp  # markers all along the day, also for BSE


@pytest.mark.kafka
def test_feed_json_from_two_files_with_rejects(day, kafka_bootstrap, tmp_path):
    b, reg = _read([day])
    b = b.take(slice(0, 6000))
    sse = b.take(b.venue == 0)
    rest = b.take(b.venue != 0)
    f1, f2 = tmp_path / "sse.jsonl", tmp_path / "rest.jsonl"
    lines = jsonl.encode_lines(sse, reg).splitlines(keepends=True)
    f1.write_bytes(b"".join(lines[:10]) + b'{"ts": "yesterday", "venue": "SSE", "type": "order"}\n'
                   + b"".join(lines[10:]) + b"not json\n")
    f2.write_bytes(jsonl.encode_lines(rest, reg))
    tag = _uid()
    env = {"SURVEIL_FEED_TOPICS": ",".join(_topics(tag)), "SURVEIL_FEED_PARTITIONS": "2"}
    res = CliRunner().invoke(feed_command, [str(f1), str(f2), "--format", "json", "--frame-size", "100",
                                            "--bootstrap", kafka_bootstrap, "--no-progress"], env=env)
    assert res.exit_code == 0, res.output
    assert f"{len(b):,} events sent" in res.stderr and "2 rejects" in res.stderr
    rej = tmp_path / "sse.jsonl.feed-rejects.jsonl"
    assert str(rej) in res.stderr
    rows = [orjson.loads(x) for x in rej.read_bytes().splitlines()]
    assert [r["line"] for r in rows] == [11, len(lines) + 2]

    settings = _settings(kafka_bootstrap, tag, feed_partitions=2)
    counts = dict.fromkeys(settings.feed_topics, 2)
    records = consume(kafka_bootstrap, counts)
    for recs in records.values():
        for _, v, _ in recs:
            assert marker_ts(v) is not None or (v[:1] == b"[" and len(orjson.loads(v)) <= 100)
    got, _ = check_records(records, settings, counts, next_day(b))
    assert Counter(x for evs in got.values() for x in evs) == Counter(_dumps(b, reg))
    assert got == expected_by_partition(b, reg, settings, counts)


def _write_sse_only(path: Path, n: int, span_ns: int) -> int:
    t0 = day_start_ns(DAY_INDEX) + (9 * 3600 + 30 * 60) * 10**9
    ts = t0 + np.sort(np.random.default_rng(3).integers(0, span_ns, n))
    rows = [{"ts": int(t), "venue": "SSE", "type": "order", "account": f"A{i % 37:05d}", "symbol": "600000",
             "side": "B" if i % 2 else "S", "price": 10.5, "qty": 100, "order_id": i, "seq": i}
            for i, t in enumerate(ts.tolist())]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return t0


@pytest.mark.kafka
@pytest.mark.parametrize("speed", ["10x", "max"])
def test_markers_reach_partitions_without_events(kafka_bootstrap, tmp_path, speed):
    path = tmp_path / "sse.jsonl"
    span = 2 * 10**9
    _write_sse_only(path, 600, span)
    tag = _uid()
    settings = _settings(kafka_bootstrap, tag, feed_partitions=2)
    stats = run_feed([path], settings, speed=speed, frame_size=50)
    assert stats.events == 600 and stats.speed == speed
    b, reg = _read([path])
    counts = dict.fromkeys(settings.feed_topics, 2)
    records = consume(kafka_bootstrap, counts)
    got, markers = check_records(records, settings, counts, next_day(b))
    assert got == expected_by_partition(b, reg, settings, counts)
    if speed == "10x":
        # paced: the frames' (wall clock) record timestamps spread like the events, at a tenth of their span
        sent = [t for p in range(2) for _, v, t in records[(settings.feed_topics[0], p)] if marker_ts(v) is None]
        event_span_ms = (int(b.ts.max()) - int(b.ts.min())) / 1e6
        assert 0.8 * event_span_ms / 10 <= max(sent) - min(sent) <= event_span_ms / 10 + 1000
    # SZSE and BSE have no events, their partitions still get markers: every 100 ms of event time when paced,
    # about every second at --speed max
    least, gap = (10, 100_000_000) if speed == "10x" else (2, 100_000_000)
    for topic in settings.feed_topics[1:]:
        for p in range(2):
            assert got[(topic, p)] == []
            mks = markers[(topic, p)]
            assert len(mks) >= least, (topic, p, len(mks))
            assert all(y - x >= gap for x, y in zip(mks[:-2], mks[1:-1]))
            assert mks[0] <= int(b.ts.min()) + 10**9


@pytest.mark.kafka
def test_missing_topic_without_create_is_a_clear_error(kafka_bootstrap, tmp_path):
    path = tmp_path / "sse.jsonl"
    _write_sse_only(path, 10, 10**9)
    tag = _uid()
    env = {"SURVEIL_FEED_TOPICS": ",".join(_topics(tag))}
    res = CliRunner().invoke(feed_command, [str(path), "--bootstrap", kafka_bootstrap, "--no-create-topics"], env=env)
    assert res.exit_code != 0
    assert "do not exist" in res.output and f"t.{tag}.sse" in res.output
