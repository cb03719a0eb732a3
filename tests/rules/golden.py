"""Golden cases of the rules (the format is in README.md next to this file): loading a case, building its
events, and running them through every path an event can take to an alert:

- ``replay_variant``: replay of the case's events as one JSON Lines file (with a rules file holding the
  case's parameters): the reference, checked against the case's expected alerts (``check_expected``);
- ``cuts_variant``: the engine fed the same events in random-size batches;
- ``splits_variant``: the events split across 2-3 files (JSON Lines or binary), merged by replay, read in
  random batch sizes;
- ``topology_variant``: the in-process stream topology: feed partitions (binary frames and JSON arrays,
  grouped at random) -> partition stages -> owner and security stages, with checkpoints taken (``dumps``)
  and stages restored (``loads``) at random points and records re-delivered from the checkpoint's offset.

Every variant returns the final alerts as canonical JSON Lines bytes (``dumps`` sorted by ``sort_key``), so
that they compare byte for byte with the replay's.
"""

from __future__ import annotations

import json
import random
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from surveil.engine import Engine, load_config
from surveil.engine.alerts import dumps, sort_key
from surveil.engine.plan import plan
from surveil.engine.refdata import RefData
from surveil.events import binary, jsonl
from surveil.events.batch import Batch, Registry
from surveil.events.io import EventWriter, read_events
from surveil.events.jsonl import parse_ts
from surveil.events.schema import NS_PER_SECOND, PRICE_SCALE, day_start_ns, trading_day_index
from surveil.replay import replay
from surveil.rules import all_rules
from surveil.stream.owner import KeyedState
from surveil.stream.partition import PartitionState

CASES_ROOT = Path(__file__).parent
DEFAULT_DAY = "2024-02-19"
#: the seeds of the random variants (fixed: a failure names its seed and reproduces)
SEEDS = (1, 2, 3)

_CASE_KEYS = {"description", "day", "params", "accounts", "events", "generate", "alerts"}
_GEN_KEYS = {"type", "venue", "account", "symbol", "owner", "broker", "side", "price", "qty", "value_yuan",
             "aggressor", "count", "start", "step", "over", "ids"}
_ALERT_KEYS = {"rule", "subject", "value", "threshold", "unit", "severity", "window_start", "window_end",
               "trading_day", "evidence"}
_TIME_KEYS = ("window_start", "window_end")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ns|us|ms|s|min|m|h)$")
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": NS_PER_SECOND, "m": 60 * NS_PER_SECOND,
            "min": 60 * NS_PER_SECOND, "h": 3600 * NS_PER_SECOND}
_TIME_OF_DAY = re.compile(r"^\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$")


class CaseError(ValueError):
    """A case file that does not follow the format (named in the message)."""


@dataclass
class Case:
    rule: str
    path: Path
    description: str
    params: dict[str, dict[str, Any]]
    accounts: str | None
    events: list[dict[str, Any]]  # in event-time order (stable: the file's order breaks ties), ts in ns
    alerts: list[dict[str, Any]]  # expected final alerts (the fields given), times in ns
    rules: frozenset[str] = field(default=frozenset())  # the rules whose alerts the case pins down

    @property
    def name(self) -> str:
        return f"{self.rule}/{self.path.stem}"


# -- the case format ------------------------------------------------------------------------------
def duration_ns(v: Any, where: str) -> int:
    """A duration: integer nanoseconds, or text such as ``"1ms"``, ``"2.5s"``, ``"1min"``."""
    if type(v) is int and v >= 0:
        return v
    m = _DURATION.match(str(v).strip())
    if not m:
        raise CaseError(f"{where}: {v!r} is not a duration (e.g. 250us, 1ms, 2s, 1min)")
    return int(round(float(m.group(1)) * _UNIT_NS[m.group(2)]))


def time_ns(v: Any, day: str, where: str) -> int:
    """A time: integer nanoseconds, ISO-8601 with an offset, or a time of day (``09:30:01.5``) on ``day``
    in Asia/Shanghai."""
    if type(v) is int:
        return v
    s = str(v).strip()
    if _TIME_OF_DAY.match(s):
        s = f"{day}T{s if s.count(':') == 2 else s + ':00'}+08:00"
    try:
        return parse_ts(s)
    except Exception as e:  # noqa: BLE001 - named in the case error
        raise CaseError(f"{where}: {v!r}: {e}") from None


def generate(spec: dict[str, Any], day: str, where: str) -> list[dict[str, Any]]:
    """``count`` events alike, from ``start``, ``step`` apart (or spread evenly ``over`` a duration)."""
    unknown = set(spec) - _GEN_KEYS
    if unknown:
        raise CaseError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_GEN_KEYS))})")
    for k in ("count", "start"):
        if k not in spec:
            raise CaseError(f"{where}: {k} is required")
    n = spec["count"]
    if type(n) is not int or n <= 0:
        raise CaseError(f"{where}: count must be a positive integer")
    if ("step" in spec) == ("over" in spec):
        raise CaseError(f"{where}: give either step or over")
    start = time_ns(spec["start"], day, f"{where}: start")
    step = (duration_ns(spec["step"], f"{where}: step") if "step" in spec
            else duration_ns(spec["over"], f"{where}: over") // n)
    typ = spec.get("type", "order")
    base: dict[str, Any] = {"venue": spec.get("venue", "SSE"), "type": typ}
    for k in ("account", "symbol", "owner", "broker", "aggressor"):
        if k in spec:
            base[k] = spec[k]
    if typ in ("order", "trade"):
        base["side"] = spec.get("side", "B")
    if typ in ("order", "trade", "index"):
        price = spec.get("price", 10.0)
        base["price"] = price
        if typ != "index":
            qty = spec.get("qty", 100)
            if "value_yuan" in spec:
                units = round(spec["value_yuan"] * PRICE_SCALE)
                p_units = round(price * PRICE_SCALE)
                if units % p_units:
                    raise CaseError(f"{where}: value_yuan {spec['value_yuan']} is not a whole number of shares "
                                    f"at price {price}")
                qty = units // p_units
            base["qty"] = qty
    ids = spec.get("ids")
    out = []
    for i in range(n):
        e = {"ts": start + i * step, **base}
        if ids is not None:
            e["order_id"] = f"{ids}{i}"
        out.append(e)
    return out


def load_case(path: Path, rule: str | None = None) -> Case:
    """A case file (``tests/rules/<rule id>/<name>.toml``); ``rule`` defaults to its folder's name."""
    path = Path(path)
    rule = rule or path.parent.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CaseError(f"{path}: not valid TOML: {e}") from None
    unknown = set(data) - _CASE_KEYS
    if unknown:
        raise CaseError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_CASE_KEYS))})")
    for k in ("description", "alerts"):
        if k not in data:
            raise CaseError(f"{path}: {k} is required (a negative case says alerts = [])")
    day = data.get("day", DEFAULT_DAY)
    events: list[dict[str, Any]] = []
    for n, line in enumerate(data.get("events", "").splitlines(), start=1):
        if line.strip():
            try:
                e = orjson.loads(line)
                e["ts"] = parse_ts(e["ts"])
            except Exception as ex:  # noqa: BLE001
                raise CaseError(f"{path}: events line {n}: {ex}") from None
            events.append(e)
    for i, spec in enumerate(data.get("generate", [])):
        events.extend(generate(spec, day, f"{path}: generate[{i}]"))
    events.sort(key=lambda e: e["ts"])  # stable: listed events, then each generator's, in order
    if not events:
        raise CaseError(f"{path}: no events")
    alerts = []
    for i, a in enumerate(data["alerts"]):
        unknown = set(a) - _ALERT_KEYS
        if unknown:
            raise CaseError(f"{path}: alerts[{i}]: unknown key(s) {', '.join(sorted(unknown))}")
        a = {"rule": rule, **a}
        for k in _TIME_KEYS:
            if k in a:
                a[k] = time_ns(a[k], day, f"{path}: alerts[{i}].{k}")
        for k in ("subject", "window_start"):
            if k not in a:
                raise CaseError(f"{path}: alerts[{i}]: {k} is required")
        alerts.append(a)
    return Case(rule=rule, path=path, description=data["description"], params=data.get("params", {}),
                accounts=data.get("accounts"), events=events, alerts=alerts,
                rules=frozenset({rule} | {a["rule"] for a in alerts}))


def case_files(root: Path = CASES_ROOT, rule: str | None = None) -> list[Path]:
    rules = [rule] if rule else [c.meta.id for c in all_rules()]
    return [p for r in rules for p in sorted((root / r).glob("*.toml"))]


# -- files of a case --------------------------------------------------------------------------------
def toml_text(params: dict[str, dict[str, Any]]) -> str:
    """A rules file (TOML) of ``{section: {key: value}}`` (values: str, int, float, bool, lists of str)."""
    out = []
    for sec, values in params.items():
        out.append(f"[{sec}]")
        for k, v in values.items():
            out.append(f"{k} = {'true' if v is True else 'false' if v is False else json.dumps(v)}")
    return "\n".join(out) + "\n"


@dataclass
class Files:
    workdir: Path
    events: Path  # the case's events as one JSON Lines file
    rules: Path  # the case's parameters as a rules file
    accounts: Path | None


def write_case(case: Case, workdir: Path) -> Files:
    workdir.mkdir(parents=True, exist_ok=True)
    events = workdir / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in case.events))
    rules = workdir / "rules.toml"
    rules.write_text(toml_text(case.params))
    accounts = None
    if case.accounts:
        accounts = workdir / "accounts.csv"
        accounts.write_text(case.accounts.strip() + "\n")
    return Files(workdir, events, rules, accounts)


def canonical(alerts: list[dict[str, Any]]) -> bytes:
    """Final alerts as canonical JSON Lines (the form replay writes)."""
    return b"".join(dumps(a) + b"\n" for a in sorted(alerts, key=sort_key))


def _refdata(files: Files) -> RefData:
    return RefData.load_csv(files.accounts) if files.accounts else RefData()


# -- variants ---------------------------------------------------------------------------------------
def replay_variant(files: Files) -> tuple[bytes, list[dict[str, Any]]]:
    """Replay of the single file, under the case's rules file: (canonical bytes, final alerts)."""
    r = replay([files.events], accounts=files.accounts, rules=files.rules)
    assert not r.rejects, [x.message for x in r.rejects]
    return canonical(r.alerts), r.alerts


def cuts_variant(files: Files, seed: int) -> bytes:
    """The engine fed the events in random-size batches (from one event to the whole day)."""
    rnd = random.Random(seed)
    reg, rejects = Registry(), []
    whole = Batch.concat(list(read_events(files.events, reg, rejects)))
    assert not rejects
    eng = Engine(load_config(files.rules), refdata=_refdata(files), registry=reg)
    n = len(whole)
    k = rnd.choice([1, 2, 5, 20, 100])
    cuts = sorted(rnd.sample(range(1, n), min(n - 1, k))) if n > 1 else []
    for a, z in zip([0, *cuts], [*cuts, n]):
        eng.process(whole.take(slice(a, z)))
    eng.close()
    assert not eng.rejects
    return canonical(eng.final_alerts())


def splits_variant(case: Case, files: Files, seed: int) -> bytes:
    """The events split across 2-3 files (each event-time ordered; simultaneous events kept together, so the
    merge restores the one file's order), some binary, merged by replay in random batch sizes."""
    rnd = random.Random(seed)
    nfiles = rnd.randint(2, 3)
    parts: list[list[dict[str, Any]]] = [[] for _ in range(nfiles)]
    by_ts: dict[int, int] = {}
    for e in case.events:
        f = by_ts.setdefault(e["ts"], rnd.randrange(nfiles))
        parts[f].append(e)
    paths = []
    d = files.workdir / f"split-{seed}"
    d.mkdir(exist_ok=True)
    n = len(case.events)
    for i, evs in enumerate(parts):
        if rnd.random() < 0.4 and evs:
            path = d / f"part{i}.svb"
            b, reg = batch_of(evs)
            with EventWriter(path, reg, frame_size=max(rnd.choice([1, 7, 500, 65536]), n // 50)) as w:
                w.write(b)
        else:
            path = d / f"part{i}.jsonl"
            path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in evs))
        paths.append(path)
    batch_size = max(rnd.choice([1, 3, 50, 1000, 65536]), n // 50)
    r = replay(paths, accounts=files.accounts, rules=files.rules, batch_size=batch_size)
    assert not r.rejects, [x.message for x in r.rejects]
    return canonical(r.alerts)


def batch_of(events: list[dict[str, Any]], reg: Registry | None = None) -> tuple[Batch, Registry]:
    reg = reg or Registry()
    rej: list = []
    b = jsonl.decode_lines([orjson.dumps(e) for e in events], 1, reg, "case", rej)
    assert not rej, [r.message for r in rej]
    return b, reg


TOPICS = ("f.sse", "f.szse", "f.bse")
VENUE_TOPIC = {"SSE": "f.sse", "SZSE": "f.szse", "BSE": "f.bse"}


def feed_records(case: Case, rnd: random.Random, npart: int) -> dict[str, list[bytes]]:
    """What feed gateways would send, per source ``topic:partition``: each account's (an index's: its
    symbol's) events on the partition of its key, in frames of random sizes, binary or JSON arrays; then a
    progress marker past the last trading day."""
    per: dict[str, list[dict[str, Any]]] = {f"{t}:{p}": [] for t in TOPICS for p in range(npart)}
    for e in case.events:
        key = f"{e['venue']}:{e['account'] if e.get('account') is not None else e.get('symbol', '')}"
        per[f"{VENUE_TOPIC[e['venue']]}:{(murmur2(key.encode()) & 0x7FFFFFFF) % npart}"].append(e)
    out: dict[str, list[bytes]] = {}
    frame = rnd.choice([1, 3, 50, 700])
    frame = max(frame, len(case.events) // 300)  # large cases: a few hundred records at most
    for src, evs in per.items():
        recs = []
        i = 0
        while i < len(evs):
            k = rnd.randint(1, frame)
            chunk = evs[i:i + k]
            i += k
            if rnd.random() < 0.3:
                recs.append(orjson.dumps(chunk))
            else:
                b, reg = batch_of(chunk)
                recs.append(binary.encode_frame(b, reg))
        out[src] = recs
    end = day_start_ns(int(trading_day_index(max(e["ts"] for e in case.events))) + 1)
    for recs in out.values():
        recs.append(orjson.dumps({"kind": "progress", "ts": end}))
    return out


@dataclass
class Topology:
    """What a topology run did, for tests that want to know the paths were taken."""

    restores: dict[str, int] = field(default_factory=lambda: {"partition": 0, "owner": 0, "security": 0})
    routed: dict[str, int] = field(default_factory=lambda: {"owner": 0, "security": 0})
    duplicates: int = 0


def topology_variant(files: Files, case: Case, seed: int, npart: int = 2, nowner: int = 2,
                     nsecurity: int = 3, stats: Topology | None = None) -> bytes:
    """The in-process stream topology. Each step hands one source's next 1-4 records to its partition stage
    (``handle_many``) and lets each downstream stage (``owner``, ``security``) read some of what has arrived,
    in order. Every stage checkpoints (``dumps``) before its first record and at random steps after; at
    random steps, and once per kind of stage (partition, and each downstream stage some rule uses) after the
    input is done, a stage dies: it is restored from one of its checkpoints (``loads``, under the same
    configuration: no notes) and reads its input again from the checkpoint's offset (a partition stage
    sends again what it had sent; the downstream stages recognise it and skip it). Every final alert a
    stage publishes, each time it publishes it, must be the same record: a stage that had published
    something else before it died would show as an extra line."""
    stats = stats or Topology()
    rnd = random.Random(seed)
    params = load_config(files.rules)
    ref = _refdata(files)
    recs = feed_records(case, rnd, npart)
    sources = sorted(recs)
    counts = {"owner": nowner, "security": nsecurity}
    parts = {s: PartitionState(s, params, ref, nowner, nsecurity) for s in sources}
    keyed = {(stage, p): KeyedState(f"{stage}:{p}", params, sources, stage=stage)
             for stage, n in counts.items() for p in range(n)}
    logs: dict[tuple[str, int], list[bytes]] = {k: [] for k in keyed}
    queues = {s: list(enumerate(v)) for s, v in recs.items()}
    by_kind: dict[str, list[Any]] = {"partition": sources}
    for stage in counts:
        if plan().export(stage) is not None:  # a downstream stage some rule uses
            by_kind[stage] = [k for k in keyed if k[0] == stage]
    kinds = sorted(by_kind)
    checkpoints: dict[Any, list[bytes]] = {}
    finals: set[bytes] = set()
    restores_left = 4

    def publish(alerts):
        for a in alerts:
            if a["status"] == "final":
                finals.add(dumps(a))

    def consume():
        for k, st in keyed.items():
            log = logs[k]
            if len(log) > st.offset + 1:
                lo = st.offset + 1
                hi = rnd.randint(lo + 1, len(log))  # a poll: some of what has arrived
                publish(st.handle_many([(o, log[o]) for o in range(lo, hi)], k[0], k[1]).alerts)

    def dump(k):
        st = parts[k] if k in parts else keyed[k]
        checkpoints.setdefault(k, []).append(st.dumps())

    def restore(kind):
        k = rnd.choice(by_kind[kind])
        blob = rnd.choice(checkpoints[k])
        notes: list[str] = []
        if k in parts:
            st = parts[k] = PartitionState.loads(blob, ref, params, nowner, nsecurity, notes)
            queues[k] = [(i, v) for i, v in enumerate(recs[k]) if i > st.offset]
        else:
            keyed[k] = KeyedState.loads(blob, params, stage=k[0], notes=notes)
        stats.restores[kind] += 1
        assert notes == [], notes

    for k in [*sources, *keyed]:
        dump(k)
    at_end = list(kinds)
    while True:
        live = [s for s, q in queues.items() if q]
        if not live and not any(len(logs[k]) > st.offset + 1 for k, st in keyed.items()):
            if not at_end:
                break
            restore(at_end.pop(rnd.randrange(len(at_end))))  # the end of the input is a random point too
            continue
        if live:
            src = rnd.choice(live)
            n = rnd.randint(1, 4)
            chunk, queues[src] = queues[src][:n], queues[src][n:]
            t, p = src.split(":")
            out = parts[src].handle_many(chunk, t, int(p))
            publish(out.alerts)
            for stage, msgs in out.routed.items():
                for dest, msg in msgs:
                    stats.routed[stage] += 1
                    for q in ([dest] if dest is not None else range(counts[stage])):
                        logs[(stage, q)].append(msg)
        consume()
        r = rnd.random()
        if r < 0.25:
            dump(rnd.choice(by_kind[rnd.choice(kinds)]))
        elif r < 0.35 and restores_left:
            restores_left -= 1
            restore(rnd.choice(kinds))
    stats.duplicates += sum(st.duplicates for st in keyed.values())
    return b"".join(x + b"\n" for x in sorted(finals, key=lambda x: sort_key(orjson.loads(x))))


# -- expectations -------------------------------------------------------------------------------------
def _brief(a: dict[str, Any]) -> str:
    return (f"{a['rule']} {json.dumps(a['subject'], sort_keys=True)} value={a['value']} threshold={a['threshold']} "
            f"severity={a['severity']} window_start={_iso(a['window_start'])} "
            f"window_end={_iso(a['window_end'])}")


def _iso(ns: int) -> str:
    from surveil.events.schema import ns_to_iso

    return ns_to_iso(ns)


def check_expected(case: Case, alerts: list[dict[str, Any]]) -> None:
    """The final alerts of the rules the case names are exactly the expected ones (the fields given)."""
    got = [a for a in alerts if a["rule"] in case.rules]
    want = sorted(case.alerts, key=lambda a: (a["window_start"], a["rule"],
                                              orjson.dumps(a["subject"], option=orjson.OPT_SORT_KEYS)))
    listing = "\n".join("  " + _brief(a) for a in got) or "  (none)"
    assert len(got) == len(want), (f"{case.name}: expected {len(want)} alert(s) of {sorted(case.rules)}, got "
                                   f"{len(got)}:\n{listing}")
    for i, (g, w) in enumerate(zip(got, want)):
        for k, v in w.items():
            if k == "evidence":
                for ek, ev in v.items():
                    assert ek in g["evidence"], f"{case.name}: alert {i}: evidence has no {ek!r}"
                    assert g["evidence"][ek] == ev, (f"{case.name}: alert {i}: evidence.{ek} = "
                                                     f"{g['evidence'][ek]!r}, expected {ev!r}")
            else:
                assert g[k] == v, f"{case.name}: alert {i}: {k} = {g[k]!r}, expected {v!r}\n{listing}"


def check_all(case: Case, workdir: Path, seeds=SEEDS, stats: Topology | None = None) -> bytes:
    """Every variant of a case (for a test that runs them in one go): returns the replay's bytes."""
    files = write_case(case, workdir)
    want, alerts = replay_variant(files)
    check_expected(case, alerts)
    for seed in seeds:
        assert cuts_variant(files, seed) == want, f"{case.name}: random batch cuts, seed {seed}"
        assert splits_variant(case, files, seed) == want, f"{case.name}: random file splits, seed {seed}"
        assert topology_variant(files, case, seed, stats=stats) == want, f"{case.name}: topology, seed {seed}"
    return want


__all__ = ["Case", "CaseError", "load_case", "case_files", "write_case", "replay_variant", "cuts_variant",
           "splits_variant", "topology_variant", "check_expected", "check_all", "canonical", "SEEDS",
           "Topology"]
