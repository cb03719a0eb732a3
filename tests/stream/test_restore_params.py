"""A stage restored from its checkpoint runs under the worker's current configuration, not the one the
checkpoint was written under; a rule new since then starts fresh; a rule state of an unknown version is reset.
Each case is reported in the notes the worker logs."""

import zlib

import msgpack
import orjson

from surveil.engine import load_config
from surveil.engine.refdata import RefData
from surveil.events.schema import NS_PER_SECOND
from surveil.stream import checkpoint
from surveil.stream.partition import PartitionState

T0 = 1708306200 * NS_PER_SECOND + 30 * 60 * NS_PER_SECOND  # 2024-02-19 10:00:00 +08:00
SRC = ("f.sse", 0)


def burst(account: str, second: int, n: int, start_id: int) -> bytes:
    """A JSON-array record: ``n`` orders of ``account`` within one second."""
    base = T0 + second * NS_PER_SECOND
    return orjson.dumps([{"ts": base + i * 1000, "venue": "SSE", "type": "order", "account": account,
                          "symbol": "600000", "side": "B", "price": 10.0, "qty": 100, "order_id": start_id + i}
                         for i in range(n)])


def alerted(out) -> set[str]:
    return {a["subject"]["account"] for a in out.alerts if a["rule"] == "order_rate_1s"}


def first_half():
    st = PartitionState(f"{SRC[0]}:{SRC[1]}", load_config(), RefData(), 2)
    out = st.handle_many([(0, burst("A", 1, 350, 0))], *SRC)
    out2 = st.handle_many([(1, burst("X", 3, 1, 10_000))], *SRC)  # closes second 1
    assert "A" in alerted(out) | alerted(out2)
    return st


def test_restore_applies_the_current_thresholds_and_says_what_changed():
    blob = first_half().dumps()
    stricter = load_config(overrides={"order_rate_1s": {"threshold": 360}})
    notes: list[str] = []
    st = PartitionState.loads(blob, RefData(), stricter, 2, notes=notes)
    assert st.engine.rules[[r.meta.id for r in st.engine.rules].index("order_rate_1s")].threshold == 360
    assert any("order_rate_1s: threshold changed from 300 to 360" in n for n in notes), notes
    out = st.handle_many([(2, burst("B", 5, 350, 20_000)), (3, burst("X", 7, 1, 30_000))], *SRC)
    assert "B" not in alerted(out)  # 350 in a second is below the current threshold
    # the same checkpoint under the old configuration does raise it (so the check above means something)
    quiet: list[str] = []
    same = PartitionState.loads(blob, RefData(), load_config(), 2, notes=quiet)
    assert quiet == []  # nothing changed, nothing to say
    again = same.handle_many([(2, burst("B", 5, 350, 20_000)), (3, burst("X", 7, 1, 30_000))], *SRC)
    assert "B" in alerted(again)


def _edit(blob: bytes, change) -> bytes:
    doc = checkpoint.unseal(blob)
    change(doc)
    return checkpoint.seal(msgpack.packb(doc, use_bin_type=True))


def test_a_rule_new_since_the_checkpoint_starts_fresh():
    st = first_half()  # A's day count so far: 350 orders
    blob = _edit(st.dumps(), lambda d: d["engine"]["rules"].pop("daily_orders_20k"))
    notes: list[str] = []
    back = PartitionState.loads(blob, RefData(), load_config(), 2, notes=notes)
    assert any("daily_orders_20k is new" in n for n in notes), notes
    daily = next(r for r in back.engine.rules if r.meta.id == "daily_orders_20k")
    key = back.reg.accounts.ids["A"] * 4
    assert daily.activity(key)["messages"] == 0  # fresh: nothing counted before the restore
    kept = next(r for r in PartitionState.loads(st.dumps(), RefData()).engine.rules if r.meta.id == "daily_orders_20k")
    assert kept.activity(key)["messages"] == 350  # restored as it was when the state was there


def test_a_state_version_this_code_does_not_know_is_reset():
    st = first_half()

    def bump(d):
        d["engine"]["rules"]["order_rate_1s"][0] = 99

    notes: list[str] = []
    back = PartitionState.loads(_edit(st.dumps(), bump), RefData(), load_config(), 2, notes=notes)
    assert any("order_rate_1s: state version 99" in n and "reset" in n for n in notes), notes
    rate = next(r for r in back.engine.rules if r.meta.id == "order_rate_1s")
    assert rate.alerts == {}  # reset: A's alert of the day is not carried
    kept = next(r for r in PartitionState.loads(st.dumps(), RefData()).engine.rules if r.meta.id == "order_rate_1s")
    assert len(kept.alerts) == 1


def test_a_damaged_checkpoint_is_an_error_not_a_crash():
    blob = first_half().dumps()
    for bad in (blob[:-10], blob[:5] + zlib.compress(b"\x93\x01\x02\x03")):
        try:
            PartitionState.loads(bad, RefData())
        except checkpoint.CheckpointError as e:
            assert str(e)
        else:  # pragma: no cover - the assertion below explains
            raise AssertionError("a damaged checkpoint loaded")
