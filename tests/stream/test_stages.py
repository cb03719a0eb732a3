"""The stream stages in-process (no broker): partition stage + owner stage give the replay's final alerts,
also when records arrive interleaved differently, and when a stage restarts from a checkpoint and re-sends."""

import random

import numpy as np
import orjson
import pytest
from aiokafka.partitioner import murmur2

from surveil.engine import load_config
from surveil.engine.alerts import dumps, sort_key
from surveil.engine.refdata import RefData
from surveil.events import binary
from surveil.events.batch import Registry
from surveil.events.io import read_events
from surveil.events.schema import day_start_ns, trading_day_index
from surveil.replay import replay
from surveil.stream.owner import KeyedState
from surveil.stream.partition import PartitionState

NP, NO = 3, 2  # feed partitions per topic, owner partitions
TOPICS = ("f.sse", "f.szse", "f.bse")


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    from surveil.sim import simulate

    d = tmp_path_factory.mktemp("stages")
    return simulate(d / "day.svb", events=120_000, accounts=3_000, seed=5)


def feed_records(path, frame=500):
    """What a feed gateway would send: per (topic, partition), frames and progress markers."""
    from surveil.replay import merged_batches

    reg, rej = Registry(), []
    out = {(t, p): [] for t in TOPICS for p in range(NP)}
    last_ts = None
    paths = path if isinstance(path, list) else [path]
    for b in merged_batches([read_events(x, reg, rej) for x in paths]):
        names = reg.accounts.names
        syms = reg.symbols.names
        keys = [f"{('SSE', 'SZSE', 'BSE')[v]}:{names[a] if a >= 0 else syms[s]}"
                for v, a, s in zip(b.venue.tolist(), b.account.tolist(), b.symbol.tolist())]
        part = np.array([(murmur2(k.encode()) & 0x7FFFFFFF) % NP for k in keys])
        for v in range(3):
            for p in range(NP):
                sel = np.flatnonzero((b.venue == v) & (part == p))
                for i in range(0, len(sel), frame):
                    out[(TOPICS[v], p)].append(binary.encode_frame(b.take(sel[i:i + frame]), reg))
        last_ts = int(b.ts[-1])
    end = day_start_ns(int(trading_day_index(last_ts)) + 1)
    for k in out:
        out[k].append(orjson.dumps({"kind": "progress", "ts": end}))
    return out


def run_topology(day, seed, restart_at=None, paths=None, group=False):
    """``group``: a partition stage takes 1-12 records at a time (``handle_many``), as a worker's polls
    deliver them; after a restart the same records come in other groups."""
    params = load_config()
    ref = RefData.load_csv(day.accounts_path)
    sources = [f"{t}:{p}" for t in TOPICS for p in range(NP)]
    parts = {s: PartitionState(s, params, ref, NO) for s in sources}
    owners = {p: KeyedState(f"owner:{p}", params, sources) for p in range(NO)}
    recs = feed_records(paths or day.events_path)
    queues = {f"{t}:{p}": list(enumerate(v)) for (t, p), v in recs.items()}
    owner_logs = {p: [] for p in range(NO)}
    alerts = {}
    rnd = random.Random(seed)
    checkpoints = {}
    steps = 0
    while any(queues.values()):
        src = rnd.choice([s for s, q in queues.items() if q])
        k = rnd.randint(1, 12) if group else 1
        chunk, queues[src] = queues[src][:k], queues[src][k:]
        t, p = src.split(":")
        if group:
            out = parts[src].handle_many(chunk, t, int(p))
        else:
            out = parts[src].handle(chunk[0][1], chunk[0][0], t, int(p))
        steps += 1
        if restart_at and steps == restart_at // 2:
            checkpoints[src] = (parts[src].dumps(), list(queues[src]))
            owner_blob = owners[0].dumps()
        for a in out.alerts:
            alerts[a["alert_id"]] = a
        for dest, msg in out.owner:
            for q in ([dest] if dest is not None else range(NO)):
                owner_logs[q].append(msg)
        if restart_at and steps == restart_at:
            # a partition stage dies: restore its checkpoint and re-send what followed it
            for s, (blob, _rest) in checkpoints.items():
                parts[s] = PartitionState.loads(blob, ref)
                replayed = [x for x in recs[tuple([s.split(":")[0], int(s.split(":")[1])])]]
                done_off = parts[s].offset
                queues[s] = [(i, v) for i, v in enumerate(replayed) if i > done_off]
            # and owner stage 0 dies too: it restarts from its checkpoint and reads its log again from there
            owners[0] = KeyedState.loads(owner_blob)
        # owner stages consume what has arrived, in order
        for q in range(NO):
            log = owner_logs[q]
            st = owners[q]
            while len(log) > st.offset + 1:
                o = st.offset + 1
                oo = st.handle(log[o], o, "owner", q)
                for a in oo.alerts:
                    alerts[a["alert_id"]] = a
    finals = [a for a in alerts.values() if a["status"] == "final"]
    if restart_at:
        assert sum(o.duplicates for o in owners.values()) > 0  # the restarted source did re-send
    return b"".join(dumps(a) + b"\n" for a in sorted(finals, key=sort_key))


def test_stages_equal_replay_for_any_interleaving(day):
    ref = replay([day.events_path], accounts=day.accounts_path)
    want = b"".join(dumps(a) + b"\n" for a in ref.alerts)
    assert want.count(b"\n") >= 4
    for seed in (1, 2):
        assert run_topology(day, seed) == want


def test_partition_checkpoint_restore_and_resend_gives_the_same_alerts(day):
    ref = replay([day.events_path], accounts=day.accounts_path)
    want = b"".join(dumps(a) + b"\n" for a in ref.alerts)
    assert run_topology(day, 3, restart_at=400) == want


def test_grouped_records_and_regrouping_after_a_restart_give_the_same_alerts(day):
    ref = replay([day.events_path], accounts=day.accounts_path)
    want = b"".join(dumps(a) + b"\n" for a in ref.alerts)
    assert run_topology(day, 6, group=True) == want
    assert run_topology(day, 7, restart_at=60, group=True) == want


def test_rows_keep_their_positions_in_any_grouping(day):
    """What the owner stage dedups on: the same rows at the same positions, whatever the grouping."""
    from surveil.stream.envelope import unpack, unpack_rows, unpack_seconds

    recs = feed_records(day.events_path)
    params = load_config()
    ref = RefData.load_csv(day.accounts_path)
    key = ("f.sse", 0)
    records = list(enumerate(recs[key]))

    def sent(sizes):
        st = PartitionState("f.sse:0", params, ref, NO)
        rows = {"index": [], "market": [], **{("trades", p): [] for p in range(NO)}}
        i = 0
        for k in sizes:
            if i >= len(records):
                break
            out = st.handle_many(records[i:i + k], *key)
            i += k
            for dest, msg in out.owner:
                h, payload = unpack(msg)
                if h["kind"] == "trades":
                    rows[("trades", dest)].extend(unpack_rows(payload)[0].tolist())
                elif h["kind"] == "index":
                    rows["index"].extend(unpack_rows(payload)[0].tolist())
                elif h["kind"] == "market":
                    keys, vals = unpack_seconds(payload)
                    rows["market"].extend(zip(keys.tolist(), vals.tolist()))
        return rows

    one = sent([1] * len(records))
    assert sum(len(one[("trades", p)]) for p in range(NO)) > 100 and one["market"] and one["index"]
    for k in [("trades", p) for p in range(NO)] + ["index"]:
        assert one[k] == sorted(set(one[k]))  # per destination: increasing, no repeats
    assert [k for k, _ in one["market"]] == sorted({k for k, _ in one["market"]})  # each second once
    rnd = random.Random(9)
    assert sent([rnd.randint(1, 20) for _ in range(len(records))]) == one
    assert sent([len(records)]) == one


def test_a_late_event_in_a_group_is_rejected_with_its_own_record(day):
    from surveil.events.batch import Batch

    reg = Registry()
    b = next(iter(read_events(day.events_path, reg, [])))
    first = b.take(slice(0, 100))
    late = b.take(slice(0, 1))
    late.ts = late.ts - 10_000_000_000  # 10 s before what the partition has seen
    st = PartitionState("f.sse:0", load_config(), RefData(), NO)
    recs = [(5, binary.encode_frame(first, reg)), (6, binary.encode_frame(Batch.concat([late]), reg))]
    out = st.handle_many(recs, "f.sse", 0)
    assert len(out.rejects) == 1
    r = out.rejects[0]
    assert (r["field"], r["offset"], r["record"], r["topic"], r["partition"]) == ("ts", 6, 0, "f.sse", 0)
    assert r["source"] == "f.sse:0@6"
    assert orjson.loads(r["original"])["ts"] == int(late.ts[0])  # the late event itself, whole
    assert r["record_bytes"] == len(recs[1][1])  # and where to find its record
    assert "late event" in r["reason"]
    assert st.offset == 6 and int(out.counts.sum()) == 101


def test_two_trading_days_roll_over_in_the_stages(day, tmp_path):
    from surveil.sim import simulate

    day2 = simulate(tmp_path / "day2.svb", events=60_000, accounts=3_000, seed=5, date="2024-02-20")
    paths = [day.events_path, day2.events_path]
    ref = replay(paths, accounts=day.accounts_path)
    want = b"".join(dumps(a) + b"\n" for a in ref.alerts)
    assert {a["trading_day"] for a in ref.alerts} == {"2024-02-19", "2024-02-20"}
    assert run_topology(day, 4, paths=paths) == want


def test_a_marker_inside_a_group_still_makes_earlier_events_late(day):
    """Markers between frames are folded into one engine pass unless the next frame has an event earlier
    than the marker: then the marker applies first, exactly as when the records come one by one."""
    from surveil.feed import marker_value

    reg = Registry()
    b = next(iter(read_events(day.events_path, reg, [])))
    first, second, third = b.take(slice(0, 100)), b.take(slice(100, 200)), b.take(slice(200, 300))
    m1 = int(second.ts.min())  # implied by the next frame: folded
    m2 = int(third.ts.min()) + 1  # the third frame's first event is earlier: late
    recs = [(0, binary.encode_frame(first, reg)), (1, marker_value(m1)), (2, binary.encode_frame(second, reg)),
            (3, marker_value(m2)), (4, binary.encode_frame(third, reg)), (5, marker_value(m2 + 10**9))]
    late_ts = sorted(int(t) for t in third.ts.tolist() if t < m2)
    assert late_ts
    results = []
    strict = load_config(overrides={"engine": {"reorder_tolerance_ms": 0}})  # 1 ns earlier than a marker is late
    for grouping in ([recs], [[r] for r in recs], [recs[:3], recs[3:]]):
        st = PartitionState("f.sse:0", strict, RefData(), NO)
        rejects = []
        for g in grouping:
            out = st.handle_many(g, "f.sse", 0)
            rejects += [(r["offset"], r["value"]) for r in out.rejects]
        assert sorted(v for _, v in rejects) == late_ts and {o for o, _ in rejects} == {4}
        results.append((st.mark()[:2], st.engine.max_seen))
    assert len(set(results)) == 1


def test_partition_checkpoints_carry_no_market_context(day):
    """The partition stage's account rules need no market context (the downstream stages build their own
    from the market seconds and index levels the partitions send), so its checkpoints do not carry one."""
    ref = RefData.load_csv(day.accounts_path)
    recs = feed_records(day.events_path, frame=500)
    idx = next(k for k, v in recs.items() if any(binary.decode_frame_at(r, 0, Registry(), "x", 0, [])[0].etype.max()
                                                   == 3 for r in v if r[:4] == b"SVEV"))  # index levels
    st = PartitionState(f"{idx[0]}:{idx[1]}", load_config(), ref, NO)
    st.handle_many(list(enumerate(recs[idx][:-1])), *idx)
    assert st.engine.events_processed > 0 and st.engine.market.days == {}
    back = PartitionState.loads(st.dumps(), ref)
    assert not back.engine.market.from_events and back.engine.market.days == {}
    assert back.handle_many([(len(recs[idx]) - 1, recs[idx][-1])], *idx).rejects == []


def test_a_pickled_checkpoint_is_refused_not_executed(tmp_path):
    """A checkpoint is data: a pickle (what earlier versions wrote, or what anyone could write to the topic)
    is refused with a clear error, and its code never runs."""
    import pickle
    import zlib

    from surveil.stream.checkpoint import CheckpointError

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (marker.write_text, ("code ran",))

    for blob in (zlib.compress(pickle.dumps(Evil())), pickle.dumps(Evil()), b"", b"SVCP\x01garbage",
                 b"SVCP\x09" + zlib.compress(b"{}")):
        with pytest.raises(CheckpointError):
            PartitionState.loads(blob, RefData())
        with pytest.raises(CheckpointError):
            KeyedState.loads(blob)
    assert not marker.exists()


def test_stage_engines_drain_final_alerts_without_keeping_them(day):
    """A stage publishes every final alert as it comes; its engine keeps none (they would grow every
    checkpoint, day after day). Replay's engine keeps them (it prints them at the end)."""
    from surveil.engine import Engine

    ref = RefData.load_csv(day.accounts_path)
    got = {}
    for keep in (True, False):
        eng = Engine(load_config(), ref, keep_finals=keep)
        for b in read_events(day.events_path, eng.reg, []):
            eng.process(b)
        eng.close()
        got[keep] = (eng.drain(), eng.finals)
    finals = [r for r in got[False][0] if r["status"] == "final"]
    assert len(finals) >= 4 and got[False][1] == {}
    assert got[True][0] == got[False][0] and set(got[True][1]) == {r["alert_id"] for r in finals}
    owner = KeyedState("owner:0", load_config(), ["f.sse:0"])
    part = PartitionState("f.sse:0", load_config(), ref, NO)
    assert not owner.engine.keep_finals and not part.engine.keep_finals


def test_a_partition_stage_reuses_its_poll_block(day):
    """Each poll's frames are decoded into a block (FrameBlock.reused): once a poll is handled nothing refers
    to it any more (the engine copies the rows it holds back, the export takes copies), so the next poll
    reuses it instead of a new block of fresh pages; and the outputs equal those of new blocks each time."""
    if not binary.FAST:
        pytest.skip("the compiled decoder is not built (test_the_compiled_decoder_is_built fails)")
    recs = feed_records(day.events_path)
    src = ("f.sse", 0)
    chunks = [list(enumerate(recs[src]))[i:i + 8] for i in range(0, 48, 8)]
    params, ref = load_config(), RefData.load_csv(day.accounts_path)

    def run(reuse: bool):
        st = PartitionState("f.sse:0", params, ref, NO)
        blocks, outs = [], []
        for c in chunks:
            if not reuse:
                binary._reuse.block = None  # noqa: SLF001 - every poll gets a new block
            out = st.handle_many(c, *src)
            blocks.append(binary._reuse.block)  # noqa: SLF001
            outs.append((out.alerts, out.rejects, out.owner, out.counts.tolist()))
        return blocks, outs

    blocks, outs = run(True)
    assert len({id(b) for b in blocks}) == 1 and blocks[0].total > 0
    _, fresh = run(False)
    assert outs == fresh
