"""The compiled JSON columns (``_svev.json_columns``) against their reference (``jsonl._columns_py``)."""
import random

import pytest

from surveil.events import jsonl
from surveil.events.batch import Registry

GOOD = {"ts": 1708306200000000000, "venue": "SSE", "type": "order", "account": "A1", "side": "B",
        "price": 10.01, "qty": 100, "order_id": "o1", "seq": 3}

ODD_VALUES = {  # per field: values the compiled pass must leave to the reference (which may accept some)
    "ts": [True, 1.7e18, 2**63, "1708306200000000000", None, [1]],
    "venue": ["NYSE", None, 1, ["SSE"]],
    "type": ["quote", None, 2, {"a": 1}],
    "side": ["X", 1, ["B"]],
    "aggressor": ["yes", [True]],
    "account": [12345, True, 1.5, {"a": 1}],
    "symbol": [600000, ["x"]],
    "price": [True, "12.5", 2**64, [1]],
    "qty": [True, 1.5, 2**63, "100"],
    "seq": [False, 2.0, -(2**63) - 1],
    "order_id": [True, 1.5, ["o"]],
}


def _reference_and_compiled(objs):
    """(outcome of _columns_py, outcome of _columns) on fresh registries: columns or "slow", and names."""
    out = []
    for fn in (jsonl._columns_py, jsonl._columns):
        reg = Registry()
        try:
            cols, code = fn(objs, reg)
            res = ({k: v.tolist() for k, v in cols.items()}, code.tolist())
        except jsonl._Slow:
            res = "slow"
        out.append((res, [list(i.names) for i in (reg.accounts, reg.symbols, reg.owners, reg.brokers)]))
    return out


pytestmark = pytest.mark.skipif(jsonl._svev is None, reason="the compiled module is not built (setup.py)")


def test_compiled_columns_equal_the_reference_and_leave_odd_values_to_it():
    rnd = random.Random(7)
    base = [{**GOOD, "ts": GOOD["ts"] + i, "account": f"A{i % 13}", "owner": f"M{i % 3}", "broker": "B1",
             "order_id": i if i % 2 else f"S{i}", "aggressor": [None, True, False][i % 3], "symbol": "600000",
             "price": [10.01, 10, 1e-9, 0, -1, 5e13][i % 6], "qty": [100, 0, -5, 2**62][i % 4]}
            for i in range(60)]
    base[5].pop("seq")
    base[6]["type"] = "index"
    base[6].pop("account")
    base[7]["type"] = "trade"
    base[7].pop("side")
    accepted = 0
    for field, odd in ODD_VALUES.items():
        for value in odd:
            objs = [dict(o) for o in base]
            objs[rnd.randrange(len(objs))][field] = value
            assert jsonl._columns_compiled(objs, Registry()) is None, (field, value)
            ref, comp = _reference_and_compiled(objs)
            assert ref == comp, (field, value)
    for _ in range(30):  # clean lists (some strings refused, some rows with semantic errors): taken as they are
        objs = [dict(o) for o in rnd.sample(base, 40)]
        if rnd.random() < 0.3:
            objs[3]["owner"] = rnd.choice(["", "M\x00x"])
        ref, comp = _reference_and_compiled(objs)
        assert ref == comp
        accepted += ref[0] != "slow"
        if objs[3].get("owner") not in ("", "M\x00x"):
            assert jsonl._columns_compiled(objs, Registry()) is not None
    assert accepted >= 15
    # strings already interned keep their ids; new ones get the next ids in order of first appearance
    reg = Registry()
    reg.accounts.intern("A5")
    cols, _ = jsonl._columns(base, reg)
    assert reg.accounts.names[:3] == ["A5", "A0", "A1"] and cols["account"].tolist()[:6] == [1, 2, 3, 4, 5, 0]


def test_extra_keys_are_ignored_and_unshared_keys_left_to_the_reference():
    objs = [{**GOOD, "ts": GOOD["ts"] + i, "venue_note": "x", "extra": [1, {"a": None}]} for i in range(30)]
    assert jsonl._columns_compiled(objs, Registry()) is not None
    ref, comp = _reference_and_compiled(objs)
    assert ref == comp and ref[0] != "slow"
    # keys not shared between objects (not orjson's): more key objects than the compiled pass remembers
    fresh = [{"".join(k): v for k, v in o.items()} for o in objs]
    assert jsonl._columns_compiled(fresh, Registry()) is None
    assert _reference_and_compiled(fresh) == [ref, ref]


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("frame, field", [
    ([{**GOOD, "ts": [GOOD["ts"]]}], "ts"),  # one event: numpy made a 2-D column of it
    ([{**GOOD, "ts": [1]}], "ts"),
    ([{**GOOD, "qty": [100]}] * 2, "qty"),  # every row a list of the same length
    ([{**GOOD, "price": [10.0]}] * 2, "price"),
    ([{**GOOD, "seq": [1]}, {**GOOD, "seq": [2]}], "seq"),
    ([GOOD, {**GOOD, "qty": [100, 200]}], "qty"),  # lists of different lengths (numpy raised ValueError)
])
def test_a_list_where_a_number_belongs_is_a_reject_in_every_shape(monkeypatch, compiled, frame, field):
    import orjson
    if not compiled:
        monkeypatch.setattr(jsonl, "_svev", None)
    rejects = []
    b = jsonl.decode_json_frame(orjson.dumps(frame if len(frame) > 1 else frame[0]), Registry(), "t", rejects)
    bad = [o for o in frame if o is not GOOD]
    assert len(rejects) == len(bad) and {r.field for r in rejects} == {field}
    assert len(b) == len(frame) - len(bad) and b.ts.ndim == 1


def test_a_reject_whose_event_cannot_be_re_encoded_keeps_the_frame_text():
    import orjson
    deep = orjson.dumps({**GOOD, "qty": -1})[:-1] + b',"x":' + b"[" * 300 + b"]" * 300 + b"}"
    rejects = []
    b = jsonl.decode_json_frame(b"[" + orjson.dumps(GOOD) + b"," + deep + b"]", Registry(), "t", rejects)
    assert len(b) == 1 and [r.field for r in rejects] == ["qty"] and rejects[0].raw.startswith('[{"ts"')


def test_values_the_reference_alone_decides():
    calls = []

    class Venue(str):  # a str subclass: its own __hash__ and __eq__ may run Python code
        def __hash__(self):
            calls.append("hash")
            return hash(str(self))

    cases = [
        [{**GOOD, "price": float("nan")}, {**GOOD, "price": None}],  # NaN: the reference counts no price
        [{**GOOD, "aggressor": 1}],  # 1 == True in the reference's map
        [{**GOOD, "venue": Venue("SSE")}],
    ]
    for objs in cases:
        assert jsonl._columns_compiled(objs, Registry()) is None
        assert not calls
        ref, comp = _reference_and_compiled(objs)
        assert ref == comp
    with pytest.raises(TypeError, match="field names must be str"):
        jsonl._svev.json_columns([GOOD], (1,) * 14, jsonl._JSON_MAPS, ({}, {}, {}, {}), bytearray(64))
