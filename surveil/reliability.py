"""What was tried and what happened: fault scenarios run in-process, each measured (``surveil reliability``).

Every row runs now: a small simulated day (``surveil.sim``, fixed seed) or a few stream records, once clean and
once with the fault, through the same code the replay and the stream workers run (``replay``,
``PartitionState.handle_many`` and ``declare_idle``, the checkpoint loader, reference data, topic names). What
the table says (events, rejects, their size, whether the alerts equal the clean run's, the reason given) is
read from the results, never written by hand; it holds no timing, so the output is the same on every run and
``docs/reliability.md`` is checked against it (``tests/test_reliability.py``). Faults that need a broker (a
broker restart, kill -9, a worker leaving, the same records through Kafka) are in ``tests/stream/test_faults.py``
and ``tests/stream/test_recovery.py``.

    surveil reliability --markdown > docs/reliability.md
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from surveil.engine import Engine, load_config
from surveil.engine.alerts import dumps, sort_key
from surveil.engine.engine import ENGINE_PARAMS
from surveil.engine.refdata import BROKER_ID_MAX_BYTES, RefData, RefDataError
from surveil.events import binary, jsonl
from surveil.events.batch import Registry
from surveil.events.io import read_events
from surveil.events.schema import day_start_ns, trading_day_index
from surveil.replay import replay
from surveil.stream import checkpoint
from surveil.stream.partition import PartitionState
from surveil.stream.rejects import FIELD_KEEP, REJECT_KEEP
from surveil.stream.settings import Settings

REGENERATE = "surveil reliability --markdown > docs/reliability.md"
DAY_EVENTS = 50_000
SEED = 7
T0 = 1_708_306_200_000_000_000  # 2024-02-19 09:30:00 Asia/Shanghai
S = 1_000_000_000
TOPIC = "surveil.feed.sse"
DLQ = "Kafka Connect: dead-letter queue with context (`errors.tolerance=all`, " \
      "`errors.deadletterqueue.context.headers.enable`)"
CHECKPOINT = "Flink: checkpoint recovery (a checkpoint that cannot be restored)"


def _param(name: str) -> str:
    p = next(p for p in ENGINE_PARAMS if p.name == name)
    return f"`engine.{name}` ({p.default:,})"


TOLERANCE, JUMP, CORROBORATE = (_param(n) for n in ("reorder_tolerance_ms", "future_jump_ms", "corroboration_events"))


def _account_rules():
    """The per-second and the whole-day account rules, asked of the rules (only they name their ids): the
    scenarios are sized by their thresholds."""
    from surveil.rules import all_rules

    metas = [c.meta for c in all_rules() if c.meta.key == "account"]
    return next(m for m in metas if not m.counts_late), next(m for m in metas if m.counts_late)


RATE, DAILY = _account_rules()
RATE_T, DAILY_T = (next(p.default for p in m.params if p.name == "threshold") for m in (RATE, DAILY))


@dataclass
class Row:
    tried: str
    happened: str
    same: str | None  # the alerts (and recommendations) against the clean run's (see _compare); None: not applicable
    concept: str
    governed: str


# -- helpers -------------------------------------------------------------------------------------------------
def _canonical(records) -> bytes:
    return b"".join(dumps(a) + b"\n" for a in sorted(records, key=sort_key))


def _order(ts: int, account: str, oid, venue: str = "SSE", **kw) -> dict[str, Any]:
    d = {"ts": ts, "venue": venue, "type": "order", "account": account, "symbol": "600000", "side": "B",
         "price": 10.0, "qty": 100, "order_id": oid}
    d.update(kw)
    return d


def _frame(events: list[dict]) -> bytes:
    reg = Registry()
    b = jsonl.decode_lines([orjson.dumps(e) for e in events], 1, reg, "scenario", [])
    return binary.encode_frame(b, reg)


def _state(source: str = f"{TOPIC}:0", params: dict | None = None) -> PartitionState:
    return PartitionState(source, params or load_config(), RefData(), 2)


def _finals(alerts) -> list[dict]:
    return [a for a in alerts if a["status"] == "final"]


def _compare(got: list[dict], want: list[dict]) -> str:
    """``yes`` when the records are byte for byte the clean run's; else what differs: alerts missing or extra,
    values, or only evidence fields (named)."""
    if _canonical(got) == _canonical(want):
        return "yes"
    key = lambda r: r.get("alert_id") or r.get("recommendation_id")  # noqa: E731
    g, w = {key(r): r for r in got}, {key(r): r for r in want}
    if g.keys() != w.keys():
        return f"**no**: {len(w.keys() - g.keys())} missing, {len(g.keys() - w.keys())} extra"
    diff = [k for k in w if g[k] != w[k]]
    top = [(w[k].get("rule", "recommendation"), f, g[k].get(f), w[k][f]) for k in diff for f in sorted(w[k])
           if f != "evidence" and g[k].get(f) != w[k][f]]
    if top:
        rule, f, a, b = top[0]
        more = f" (and {len(top) - 1} more)" if len(top) > 1 else ""
        return f"**no**: {rule} {f} {a:,} instead of {b:,}{more}" if isinstance(a, int) and isinstance(b, int) \
            else f"**no**: {rule} {f} differs{more}"
    fields = sorted({f for k in diff for f in set(w[k]["evidence"]) | set(g[k]["evidence"])
                     if g[k]["evidence"].get(f) != w[k]["evidence"].get(f)})
    rules = sorted({w[k].get("rule", "recommendation") for k in diff})
    return f"same alerts and values; {', '.join(rules)} evidence differs: {', '.join(fields)}"


def _stream(records: list[bytes | None], params: dict | None = None) -> tuple[list[dict], list[dict], int]:
    """Final alerts, rejects and events of a partition state over ``records`` (one per call, as polls may
    come), closed by a progress marker at the next day's start."""
    st = _state(params=params)
    alerts, rejects = [], []
    marker = b'{"kind":"progress","ts":%d}' % day_start_ns(trading_day_index(T0) + 1)
    for off, v in enumerate([*records, marker]):
        out = st.handle_many([(off, v)], TOPIC, 0)
        alerts += out.alerts
        rejects += out.rejects
    return _finals(alerts), rejects, st.engine.events_in


#: the stream's valid records: a burst above the per-second rule's threshold (JSON array), one in a frame, calm events
def _valid() -> list[bytes]:
    return [orjson.dumps([_order(T0 + S + i * 2_000_000, "RATEJSON", i) for i in range(RATE_T + 50)]),
            _frame([_order(T0 + 3 * S + i * 3_000_000, "RATEFRAME", 1000 + i, "SZSE") for i in range(RATE_T + 20)]),
            orjson.dumps([_order(T0 + 5 * S + i * 100_000_000, f"CALM{i % 3}", 2000 + i) for i in range(20)])]


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n >= 1024 else f"{n} B"


def _size(r: dict) -> int:
    from surveil.stream.rejects import encode

    return len(encode(r))


class Day:
    """The simulated day, as .svb and as JSON lines, and its clean replay."""

    def __init__(self, folder: Path):
        from surveil.sim import simulate

        self.folder = folder
        self.sim = simulate(folder / "day.svb", events=DAY_EVENTS, accounts=2_000, seed=SEED)
        reg, rejects = Registry(), []
        self.batches = list(read_events(self.sim.events_path, reg, rejects))
        self.reg = reg
        self.lines = b"".join(jsonl.encode_lines(b, reg) for b in self.batches).splitlines()
        self.clean = self.replay(self.write("clean.jsonl", self.lines))

    def write(self, name: str, lines: list[bytes]) -> Path:
        p = self.folder / name
        p.write_bytes(b"\n".join(lines) + b"\n")
        return p

    def replay(self, path: Path):
        return replay([path], accounts=self.sim.accounts_path)

    def same(self, res) -> str:
        return _compare(res.records, self.clean.records)


def _events(res) -> str:
    return f"{res.events:,} events, {len(res.rejects):,} reject{'s' if len(res.rejects) != 1 else ''}"


def _first_reason(res) -> str:
    r = res.rejects[0]
    return f"line {r.location}, `{r.field}`: {_cut(r.reason)}"


def _cut(text: str, n: int = 150) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= n else text[: n - 1] + "…"


# -- scenarios on the simulated day (replay) ------------------------------------------------------------------
def future_mid_file(day: Day) -> Row:
    k = len(day.lines) // 2
    bad = orjson.loads(day.lines[k])
    bad.update(ts="2024-02-20T11:24:00+08:00", account="FUTURE_ONE")
    res = day.replay(day.write("future.jsonl", day.lines[:k] + [orjson.dumps(bad)] + day.lines[k:]))
    whole = orjson.loads(res.rejects[0].raw).get("account") == "FUTURE_ONE"
    return Row("one event mid-file stamped the next day (ISO `2024-02-20T11:24:00+08:00`)",
               f"{_events(res)} ({_first_reason(res)}); the event {'kept whole' if whole else 'NOT kept'} in the "
               "reject",
               day.same(res), "Flink: a watermark that one outlier timestamp would push a day ahead (here it does "
               "not move event time)", f"{JUMP}, {CORROBORATE}")


def future_at_head(day: Day) -> Row:
    bad = orjson.loads(day.lines[0])
    bad.update(ts="2099-01-01T10:00:00+08:00", account="FROM_2099")
    res = day.replay(day.write("head.jsonl", [orjson.dumps(bad)] + day.lines))
    return Row("the first event of the file stamped 2099 (before event time is known)",
               f"{_events(res)} ({_first_reason(res)})", day.same(res),
               "Flink: the first watermark of a source (here a suspect until later events corroborate it)",
               f"{JUMP}, {CORROBORATE}")


def flipped_bit(day: Day) -> Row:
    batches = [b.copy() for b in day.batches]
    k = len(batches) // 2
    row = len(batches[k]) // 2
    before = int(batches[k].ts[row])
    bit = next(b for b in range(47, 62) if not before >> b & 1)  # a flip that moves it ahead (≥ 1.6 days)
    batches[k].ts[row] ^= 1 << bit
    days = (int(batches[k].ts[row]) - before) / 86_400e9
    path = day.folder / "flip.svb"
    without = day.folder / "without.svb"
    with open(path, "wb") as f, open(without, "wb") as g:
        for i, b in enumerate(batches):
            f.write(binary.encode_frame(b, day.reg))
            g.write(binary.encode_frame(b.take(np.arange(len(b)) != row) if i == k else b, day.reg))
    res, ref = day.replay(path), day.replay(without)
    same = _compare(res.records, ref.records)
    r = res.rejects[0]
    return Row(f"one bit flipped in a `.svb` record's timestamp (bit {bit}: {abs(days):.0f} days "
               f"{'ahead' if days > 0 else 'earlier'})",
               f"{_events(res)} (record {r.location}, `{r.field}`: {_cut(r.reason, 110)}); alerts compared with the "
               "day without that event", same, "Flink: an outlier timestamp (bounded out-of-orderness does not "
               "cover it)", f"{JUMP}, {CORROBORATE}")


def swapped_lines(day: Day) -> Row:
    lines = list(day.lines)
    pairs = range(49, len(lines) - 1, 50)
    tol = next(p for p in ENGINE_PARAMS if p.name == "reorder_tolerance_ms").default * 1_000_000
    apart = sum(orjson.loads(lines[i + 1])["ts"] - orjson.loads(lines[i])["ts"] > tol for i in pairs)
    for i in pairs:
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    res = day.replay(day.write("swapped.jsonl", lines))
    return Row("every 50th line swapped with the next (several gateways merged)",
               f"{_events(res)}: of {len(pairs):,} swapped pairs, {apart} were more than the tolerance apart (a "
               "sparse day), and those events are late (kept, counted by the daily rule); the others reordered",
               day.same(res), "Flink: `WatermarkStrategy.forBoundedOutOfOrderness`", TOLERANCE)


def late_event(_day: Day) -> Row:
    evs = [_order(T0 + i * 1_000_000, "DAY", i) for i in range(DAILY_T - 1)]
    evs.append(_order(T0 + 100 * S, "OTHER", "x"))
    late = _order(T0 + 5 * S, "DAY", "late-one")
    results = []
    for events in (evs + [late], sorted(evs + [late], key=lambda e: e["ts"])):
        reg = Registry()
        b = jsonl.decode_lines([orjson.dumps(e) for e in events], 1, reg, "late", [])
        eng = Engine(load_config(), registry=reg)
        eng.process(b)
        eng.close()
        results.append((sorted(eng.final_alerts(), key=sort_key), eng.rejects))
    (alerts, rejects), (in_order, _) = results  # late, and the same events in time order
    daily = [a["value"] for a in alerts if a["rule"] == DAILY.id]
    return Row(f"an account's {DAILY_T:,}th order of the day arrives 95 s late (beyond the reorder tolerance)",
               f"{len(rejects)} reject (`ts`: {_cut(rejects[0].reason.split('; ')[-1])}); {DAILY.id} "
               f"still reaches {daily[0]:,} at the close. Against the same events in time order: the 1 s window it "
               f"belonged to had closed, so {RATE.id} does not count it",
               _compare(alerts, in_order),
               "Flink: late data past the watermark: `allowedLateness` / `sideOutputLateData` (here: kept in the "
               "rejects and still counted by whole-day rules)", TOLERANCE)


# -- scenarios on stream records (the worker's record handler) -----------------------------------------------
def _stream_row(tried: str, bad: list[bytes | None], concept: str, governed: str,
                describe: Callable[[list[dict], int], str], good: list[bytes] = (), at: int = 1) -> Row:
    """``bad`` records among the valid ones, against the valid ones and ``good`` (what ``bad`` would be
    undamaged, less what the damage costs): the alerts, the bad records' rejects and the events they added."""
    valid = _valid()
    clean, _, events = _stream(valid[:at] + list(good) + valid[at:])
    got, rejects, got_events = _stream(valid[:at] + bad + valid[at:])
    mine = [r for r in rejects if at <= r["offset"] < at + len(bad)]
    assert all(r["topic"] == TOPIC for r in rejects)
    return Row(tried, describe(mine, got_events - events + sum(_count(v) for v in good)), _compare(got, clean),
               concept, governed)


def _count(record: bytes) -> int:
    return binary.HEADER.unpack_from(record)[3] if record[:4] == binary.MAGIC else len(orjson.loads(record))


def tombstone(_day=None) -> Row:
    return _stream_row("a tombstone (null value) in a feed partition", [None], DLQ + "; Kafka Streams "
                       "`LogAndContinueExceptionHandler`", "—",
                       lambda rej, extra: f"{len(rej)} reject at its offset: {_cut(rej[0]['reason'])}; "
                                          "the partition goes on")


def bad_array(_day=None) -> Row:
    bad = orjson.dumps([{"ts": T0 + i, "venue": "NYSE", "type": "order", "account": f"X{i}", "pad": "p" * 100}
                        for i in range(2_000)])
    return _stream_row("a JSON-array record of 2,000 bad events (unknown venue), "
                       f"{_kib(len(bad))}", [bad], DLQ,
                       f"`REJECT_KEEP` ({REJECT_KEEP // 1024} KiB)",
                       lambda rej, extra: f"{len(rej):,} rejects, each its own event with topic/partition/offset and "
                                          f"the record's length and hash: largest {_kib(max(map(_size, rej)))}, "
                                          f"{_kib(sum(map(_size, rej)))} in all ({sum(map(_size, rej)) / len(bad):.1f}"
                                          "× the record, not 2,000 copies of it)")


def _damage_venue(frame: bytes, row: int) -> bytes:
    b = bytearray(frame)
    h = binary.HEADER.unpack_from(b)
    b[binary.header_size(h[1]) + h[-1] + row * binary.RECORD.itemsize + binary.RECORD.fields["venue"][1]] = 0x7F
    return bytes(b)


def large_frame(_day=None) -> Row:
    evs = [_order(T0 + 6 * S + i * 10_000, f"BIG{i % 50}", 5000 + i) for i in range(12_000)]
    frame = _damage_venue(_frame(evs), 6_000)
    return _stream_row(f"a binary frame of 12,000 events ({_kib(len(frame))}) with one byte damaged (a venue code); "
                       "against the stream without that frame",
                       [frame], DLQ + "; Kafka's own record-batch CRC32C", "frame checksums (binary frames v5/v6)",
                       lambda rej, extra: f"{len(rej)} reject for the whole record (`{rej[0]['field']}`: "
                                          f"{_cut(rej[0]['reason'])}), {_kib(_size(rej[0]))}; its events are not read "
                                          "as others (the record is found at its offset)")


def large_frame_unchecked(_day=None) -> Row:
    evs = [_order(T0 + 6 * S + i * 10_000, f"BIG{i % 50}", 5000 + i) for i in range(12_000)]
    frame = _damage_venue(binary.reseal(_frame(evs), 3), 6_000)  # a frame of a version without checksums
    return _stream_row(f"a binary frame of version 3 (no checksum) of 12,000 events ({_kib(len(frame))}) with one "
                       "byte damaged (a venue code); against the frame without that event",
                       [frame], DLQ, f"`REJECT_KEEP` ({REJECT_KEEP // 1024} KiB)",
                       lambda rej, extra: f"{len(rej)} reject (record {rej[0]['record']}, `{rej[0]['field']}`), "
                                          f"{_kib(_size(rej[0]))}; the other {extra:,} events read",
                       good=[_frame(evs[:6_000] + evs[6_001:])])


def huge_field(_day=None) -> Row:
    bad = orjson.dumps({"ts": T0, "venue": "V" * 2_000_000, "type": "order"})
    return _stream_row(f"an event whose venue is a 2 MB string ({_kib(len(bad))} record; a broker takes 1 MB)",
                       [bad], DLQ + "; the broker's `max.message.bytes`",
                       f"`FIELD_KEEP` ({FIELD_KEEP:,} B), `REJECT_KEEP` ({REJECT_KEEP // 1024} KiB)",
                       lambda rej, extra: f"{len(rej)} reject of {_kib(_size(rej[0]))} (value cut: "
                                          f"`value_truncated` {rej[0].get('value_truncated', False)}); "
                                          + ("publishable on a default broker (1 MB)" if _size(rej[0]) < 1_000_000
                                             else "NOT publishable on a default broker (1 MB)"))


def deep_value(_day=None) -> Row:
    bad = b'{"ts":%d,"venue":%s,"type":"order"}' % (T0, b"[" * 300 + b"]" * 300)
    return _stream_row("an event whose venue is an array nested 300 deep (JSON writers stop at 254)", [bad], DLQ,
                       f"`FIELD_KEEP` ({FIELD_KEEP:,} B)",
                       lambda rej, extra: f"{len(rej)} reject of {_kib(_size(rej[0]))}, the value replaced by a note: "
                                          f"{_cut(str(rej[0]['value']), 90)}")


def frame_tail(_day=None) -> Row:
    frame = _frame([_order(T0 + 7 * S + i, f"T{i}", 7000 + i) for i in range(5)])
    return _stream_row("a frame followed by 13 bytes its header does not announce; against the frame alone",
                       [frame + b"not announced"], DLQ, "—",
                       lambda rej, extra: f"{extra} events read, {len(rej)} reject: {_cut(rej[0]['reason'], 110)}",
                       good=[frame])


def ahead_in_a_later_poll(_day=None) -> Row:
    ahead = orjson.dumps(_order(T0 + 3 * 3600 * S, "AHEAD", 1))
    return _stream_row("an event 3 h ahead of event time as the last record of a poll (decided by the next poll)",
                       [ahead], "Flink: an outlier timestamp; " + DLQ, f"{JUMP}, {CORROBORATE}",
                       lambda rej, extra: f"{len(rej)} reject at its own offset, with its record's length and hash "
                                          f"({rej[0]['record_bytes']} B): {_cut(rej[0]['reason'], 100)}")


def idle_partition(_day=None) -> Row:
    st = _state()
    out = st.handle_many([(0, _valid()[0])], TOPIC, 0)
    before = len(out.alerts)
    idle = st.declare_idle()
    got = [f"{a['rule']} {a['status']}" for a in idle.alerts]
    owner = sum(len(v) for v in idle.routed.values())
    return Row(f"a feed partition goes quiet right after a burst above {RATE.id}",
               f"alerts before the idle declaration: {before}; at the declaration: {', '.join(got) or 'none'}; "
               f"{owner} record(s) telling the downstream stages that the partition is idle (they stop waiting "
               "for it: tested on the broker, tests/stream/test_worker.py)", None,
               "Flink: `WatermarkStrategy.withIdleness`", "`SURVEIL_ALLOWED_LATENESS_MS` (2,000)")


# -- checkpoints ---------------------------------------------------------------------------------------------
_RAN: list[str] = []


def _ran(what: str) -> None:  # what a pickle would call when unpickled
    _RAN.append(what)


class _Payload:
    def __reduce__(self):
        return (_ran, ("code from a checkpoint",))


KEY = b"the group's key"
BINDING = f"workers|{TOPIC}:0".encode()


def _sealed() -> bytes:
    st = _state()
    st.handle_many([(0, _valid()[0])], TOPIC, 0)
    return st.dumps(KEY, BINDING)


def _refused(blob: bytes) -> str:
    try:
        PartitionState.loads(blob, RefData(), key=KEY, binding=BINDING)
    except checkpoint.CheckpointError as e:
        return f"refused ({_cut(str(e), 110)}); the worker rebuilds the partition from the trading day's start"
    return "loaded"


def pickled_checkpoint(_day=None) -> Row:
    _RAN.clear()
    blob = pickle.dumps(_Payload())
    verdict = _refused(blob)
    return Row("a pickled object written to the checkpoint topic (unpickled, it runs a function)",
               f"{verdict}; code run: {'yes' if _RAN else 'no'}", None, CHECKPOINT, "checkpoints are data "
               "(`SVCP`, msgpack), never pickle")


def forged_checkpoint(_day=None) -> Row:
    doc = checkpoint.unseal(_sealed(), key=KEY, binding=BINDING)
    doc["offset"] = 10**9  # what a forger wants: skip the input
    forged = checkpoint.seal(checkpoint.pack(doc), b"not the group's key", BINDING)
    return Row("a well-formed checkpoint claiming offset 10⁹, sealed with another key", _refused(forged), None,
               CHECKPOINT, "`SURVEIL_CHECKPOINT_KEY` (HMAC-SHA256)")


def truncated_checkpoint(_day=None) -> Row:
    blob = _sealed()
    short = _refused(blob[:20]).split(";")[0]
    return Row(f"a checkpoint cut in half ({_kib(len(blob) // 2)} of {_kib(len(blob))}: a write that did not "
               "complete)", f"{_refused(blob[: len(blob) // 2])}; cut to 20 B: {short}", None,
               CHECKPOINT, "`SURVEIL_CHECKPOINT_KEY`")


def changed_threshold(_day=None) -> Row:
    notes: list[str] = []
    stricter = load_config(overrides={RATE.id: {"threshold": RATE_T + 60}})
    st = PartitionState.loads(_sealed(), RefData(), stricter, 2, notes=notes, key=KEY, binding=BINDING)
    rule = next(r for r in st.engine.rules if r.meta.id == RATE.id)
    return Row(f"a partition restored from its checkpoint under a rules file that raised {RATE.id} to {RATE_T + 60}",
               f"restored, running threshold {rule.threshold}; logged: {'; '.join(_cut(n, 80) for n in notes)}", None,
               "Flink: restoring a savepoint into a changed job (parameters are never taken from state)",
               "`SURVEIL_RULES_FILE`")


# -- member firms' topics ------------------------------------------------------------------------------------
def long_broker_id(_day=None) -> Row:
    long = "B" * (BROKER_ID_MAX_BYTES + 1)
    try:
        RefData().set("SSE", "A1", "O", long)
        ref = "accepted"
    except RefDataError as e:
        ref = f"refused when reference data loads ({_cut(str(e).split(': ', 1)[-1], 90)})"
    try:
        Settings().broker_topic("B" * 300)
        inline = "named a topic"
    except ValueError as e:
        inline = f"an id of 300 bytes inline in events: a reject, never a crash ({_cut(str(e).split(': ', 1)[1], 70)})"
    return Row(f"a member firm id of {BROKER_ID_MAX_BYTES + 1} bytes (Kafka topic names: 249 characters)",
               f"{ref}; {inline}", None, "Kafka: topic name limits (`InvalidTopicException`)",
               f"`BROKER_ID_MAX_BYTES` ({BROKER_ID_MAX_BYTES})")


def slash_broker_ids(_day=None) -> Row:
    s = Settings()
    names = {b: s.broker_topic(b) for b in ("B/1", "B_1", "B.1")}
    distinct = len(set(names.values())) == len(names) and len({n.replace(".", "_") for n in names.values()}) == 3
    return Row("member firms `B/1`, `B_1` and `B.1`",
               f"{', '.join(f'`{b}` → `{n[len(s.broker_topic_prefix):]}`' for b, n in names.items())}: "
               f"{'distinct' if distinct else 'COLLIDING'} topics, also under Kafka's `.` = `_` rule", None,
               "Kafka: topic names that collide (`.` vs `_`)", "`SURVEIL_BROKER_TOPIC_PREFIX`")


DAY_SCENARIOS = [future_mid_file, future_at_head, flipped_bit, swapped_lines, late_event]
STREAM_SCENARIOS = [tombstone, bad_array, large_frame, large_frame_unchecked, huge_field, deep_value, frame_tail,
                    ahead_in_a_later_poll, idle_partition]
STATE_SCENARIOS = [pickled_checkpoint, forged_checkpoint, truncated_checkpoint, changed_threshold, long_broker_id,
                   slash_broker_ids]


def run() -> list[tuple[str, list[Row]]]:
    """Every scenario, grouped: (title, rows)."""
    with tempfile.TemporaryDirectory(prefix="surveil-reliability-") as d:
        day = Day(Path(d))
        clean = f"{day.clean.events:,} events, {len(day.clean.alerts)} alerts, {len(day.clean.rejects)} rejects"
        groups = [(f"Files (`surveil replay`), on a simulated day of {clean}", [f(day) for f in DAY_SCENARIOS])]
    groups.append(("Feed records (the worker's record handler, `PartitionState.handle_many`): the clean records "
                   f"are a burst of {RATE_T + 50} orders in a second (JSON array), one of {RATE_T + 20} (binary "
                   "frame) and 20 calm events",
                   [f() for f in STREAM_SCENARIOS]))
    groups.append(("State and names", [f() for f in STATE_SCENARIOS]))
    return groups


INTRO = """# Reliability: what was tried and what happened

Generated by `{cmd}`
(`tests/test_reliability.py` fails when this file is not its current output). Each row is a fault run in-process
when the command runs, measured, never typed in: a small simulated day replayed once clean and once with the
fault, or a few feed records through the stream worker's record handler (`PartitionState.handle_many`), the
checkpoint loader, reference data and topic names. *Alerts as clean* compares the final alerts and
recommendations with the same input without the fault (— where the fault is not about alerts).

The faults that need a broker run in the test suite on a real one: `tests/stream/test_faults.py` (a tombstone,
a 2099 timestamp and a forged checkpoint at the head of a partition; a 600 KB frame with one bad byte, a 5 MB
array of bad events, a 2 MB field, a 300-deep value and a truncated checkpoint: the worker stays ready, rebuilds
the partition, publishes every reject, and its alerts equal replay's) and `tests/stream/test_recovery.py`
(kill -9 of a worker, a broker restart under the workers and `surveil feed`, a worker leaving the group).
Property tests over any input: `tests/stream/test_record_handler_properties.py`.

In the terms Kafka Connect and Flink users know: a bad record goes to a **dead-letter topic with its context**
(`surveil.rejects`: the reason, the field, its own bytes, topic/partition/offset, the record's length and hash),
and the partition goes on; **late data** beyond the bounded out-of-orderness is kept there too (whole-day rules
still count it); a partition that goes quiet is declared **idle** so the watermark moves on; a **checkpoint**
that cannot be trusted is never used: the partition is rebuilt from its input.
"""


def markdown(groups: list[tuple[str, list[Row]]] | None = None) -> str:
    groups = run() if groups is None else groups
    out = [INTRO.format(cmd=REGENERATE)]
    n = 0
    for title, rows in groups:
        out.append(f"\n## {title}\n\n| # | tried | what happened | alerts as clean | concept | governed by |\n"
                   "|---|---|---|---|---|---|\n")
        for r in rows:
            n += 1
            same = "—" if r.same is None else r.same
            out.append(f"| {n} | {r.tried} | {r.happened} | {same} | {r.concept} | {r.governed} |\n")
    return "".join(out)


def text(groups: list[tuple[str, list[Row]]] | None = None) -> str:
    groups = run() if groups is None else groups
    out = []
    for title, rows in groups:
        out.append(title)
        for r in rows:
            same = "" if r.same is None else f" [alerts as clean: {r.same.replace('**', '')}]"
            out.append(f"  - {r.tried}\n      {r.happened}{same}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    import sys

    args = sys.argv[1:] if argv is None else argv
    sys.stdout.write(markdown() if "--markdown" in args else text())


if __name__ == "__main__":
    main()
