"""A stage restored from its checkpoint runs under the current configuration, whatever the checkpoint was
written under: changed parameters apply (and the notes say which, for the log), a rule the checkpoint has no
state of starts fresh, a rule state of a version this code does not know is reset, and the state of a rule
no longer configured is dropped; the rules whose state was restored carry on from it."""

from __future__ import annotations

import orjson
from evtools import T0, S

from surveil.engine import load_config as _load_config
from surveil.engine.refdata import RefData
from surveil.events.schema import day_start_ns, trading_day_index
from surveil.stream import checkpoint
from surveil.stream.owner import KeyedState
from surveil.stream.partition import PartitionState


def load_config(overrides=None):
    """The configuration with reorder tolerance 0: the counts below are written for an engine that holds back
    only the events at the newest timestamp."""
    return _load_config(overrides={"engine": {"reorder_tolerance_ms": 0}, **(overrides or {})})

SRC, TOPIC = "f.sse:0", "f.sse"
T = T0 + 30 * 60 * S  # 2024-02-19 10:00:00 Asia/Shanghai
END = day_start_ns(int(trading_day_index(T)) + 1)  # a progress marker past the trading day


def burst(account, start, n, span=S // 2, type_="order"):
    """``n`` messages of ``account`` evenly over ``span`` from ``start``, as one feed record (a JSON array)."""
    return orjson.dumps([{"ts": start + i * (span // n), "venue": "SSE", "type": type_, "account": account,
                          **({"side": "B", "price": 10.0, "qty": 100} if type_ == "order" else {})}
                         for i in range(n)])


def marker(ts):
    return orjson.dumps({"kind": "progress", "ts": ts})


def feed(st, records, first_offset):
    """Records to a partition stage one by one from ``first_offset``; the final alerts it published."""
    finals = []
    for i, value in enumerate(records):
        out = st.handle_many([(first_offset + i, value)], TOPIC, 0)
        assert out.rejects == []
        finals += [a for a in out.alerts if a["status"] == "final"]
    return finals


def summary(finals, rule):
    return sorted((a["subject"]["account"], a["value"], a["threshold"]) for a in finals if a["rule"] == rule)


def edited(blob, change):
    doc = checkpoint.unseal(blob)
    change(doc)
    return checkpoint.seal(checkpoint.pack(doc))


def before_and_after(params=None):
    """A partition stage that has read the first records of a day, and the records that follow them."""
    st = PartitionState(SRC, params or load_config(), RefData(), 1)
    feed(st, [burst("D", T0, 250, span=300 * S), burst("A0", T, 200)], 0)
    after = [burst("A0", T + S // 2, 160),  # A0's second 10:00:00: 200 before the checkpoint, 160 after
             burst("B", T + 5 * S, 350, span=S),  # 350 in a second: above 300, below 360
             burst("C", T + 10 * S, 360, span=S),  # 360 in a second
             burst("D", T + 20 * S, 250, span=300 * S),  # D's day: 250 before the checkpoint, 250 after
             burst("E", T + 400 * S, 400, span=400 * S),  # 400 in a day, at a low rate
             marker(END)]
    return st, after


def test_changed_parameters_apply_after_a_restore_and_the_notes_say_so():
    st, after = before_and_after()
    blob = st.dumps()
    notes: list[str] = []
    params = load_config(overrides={"order_rate_1s": {"threshold": 360}})
    back = PartitionState.loads(blob, RefData(), params, 1, notes=notes)
    assert notes == ["rule order_rate_1s: threshold changed from 300 to 360 (the current configuration applies)"]
    got = feed(back, after, st.offset + 1)
    # 350 in a second is not alerted any more; A0's second, half of it from before the checkpoint, reaches 360
    assert summary(got, "order_rate_1s") == [("A0", 360, 360), ("C", 360, 360)]
    # the stage as it was (threshold 300) alerts B too
    assert summary(feed(st, after, st.offset + 1), "order_rate_1s") == [("A0", 360, 300), ("B", 350, 300),
                                                                         ("C", 360, 300)]


def test_a_rule_without_state_in_the_checkpoint_starts_fresh():
    params = load_config(overrides={"daily_orders_20k": {"threshold": 400}})
    st, after = before_and_after(params)
    blob = edited(st.dumps(), lambda d: d["engine"]["rules"].pop("daily_orders_20k"))
    notes: list[str] = []
    back = PartitionState.loads(blob, RefData(), params, 1, notes=notes)
    assert notes == ["rule daily_orders_20k is new: it starts with a fresh state"]
    got = feed(back, after, st.offset + 1)
    # D's 250 messages before the checkpoint are not counted by the fresh rule; E's 400 after it are; the
    # other rule's state (A0's open second) was restored
    assert summary(got, "daily_orders_20k") == [("E", 400, 400)]
    assert summary(got, "order_rate_1s") == [("A0", 360, 300), ("B", 350, 300), ("C", 360, 300)]
    whole = feed(PartitionState.loads(st.dumps(), RefData(), params, 1), after, st.offset + 1)
    assert summary(whole, "daily_orders_20k") == [("D", 500, 400), ("E", 400, 400)]


def test_a_rule_state_of_an_unknown_version_is_reset_and_a_dropped_rule_s_state_is_dropped():
    st, after = before_and_after()

    def change(d):
        d["engine"]["rules"]["order_rate_1s"][0] = 99
        d["engine"]["rules"]["retired_rule"] = [1, {"anything": 1}]

    notes: list[str] = []
    back = PartitionState.loads(edited(st.dumps(), change), RefData(), load_config(), 1, notes=notes)
    assert notes == ["rule order_rate_1s: state version 99 is not this code's (1): its state is reset",
                     "rule retired_rule is no longer configured: its state is dropped"]
    got = feed(back, after, st.offset + 1)
    # A0's 200 messages of 10:00:00 before the checkpoint went with the reset state (the one the engine held
    # back, at the newest timestamp, is still counted): 161 of 360 in that second
    assert summary(got, "order_rate_1s") == [("B", 350, 300), ("C", 360, 300)]


def test_an_owner_stage_restored_under_changed_parameters_says_so():
    sources = [SRC]
    st = KeyedState("owner:0", load_config(), sources)
    blob = st.dumps()
    notes: list[str] = []
    params = load_config(overrides={"sell_burst_1m": {"threshold_yuan": 2_000_000_000, "window_seconds": 30}})
    back = KeyedState.loads(blob, params, stage="owner", notes=notes)
    assert sorted(notes) == [
        "rule sell_burst_1m: threshold_yuan changed from 1000000000 to 2000000000 (the current configuration "
        "applies)",
        "rule sell_burst_1m: window_seconds changed from 60 to 30 (the current configuration applies)"]
    (rule,) = back.engine.rules
    assert rule.threshold == 2_000_000_000 * 10_000 and rule.window == 30 * S
    assert KeyedState.loads(blob, load_config(), stage="owner", notes=(same := [])) is not None and same == []
