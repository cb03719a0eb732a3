"""Securities reference data (surveil/engine/securities.py): the CSV, the topic's records, the engine's lookup."""

import dataclasses

import orjson
import pytest
from evtools import T0, batch_of

from surveil.engine import Engine, load_config
from surveil.engine.securities import Securities, SecuritiesError, Security
from surveil.events.schema import VENUE_CODE

CSV = """venue,symbol,prev_close,risk_warning,limit_up,limit_down
SSE,600000,10.01,false,11.01,9.01
SZSE,000001,9.5,TRUE,9.98,9.03
BSE,830799,12.3456,0,,
SSE,600001,7,Y,7.35,6.65
"""


def write(tmp_path, text, name="sec.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_a_securities_csv_reads_as_integer_prices_and_booleans(tmp_path):
    rej = []
    sec = Securities.load_csv(write(tmp_path, CSV), rej)
    assert not rej and len(sec) == 4
    assert sec.get(VENUE_CODE["SSE"], "600000") == Security(100100, False, 110100, 90100)
    assert sec.get(VENUE_CODE["SZSE"], "000001") == Security(95000, True, 99800, 90300)
    assert sec.get(VENUE_CODE["BSE"], "830799") == Security(123456, False, None, None)
    assert sec.get(VENUE_CODE["SSE"], "600001").risk_warning is True
    assert sec.get(VENUE_CODE["SZSE"], "600000") is None  # the venue is part of the key
    with pytest.raises(dataclasses.FrozenInstanceError):
        sec.get(0, "600000").prev_close = 1


def test_the_limit_columns_are_optional_and_the_header_any_order_and_case(tmp_path):
    text = "\ufeffRisk_Warning, Symbol ,VENUE,prev_close,note\nno,600000,SSE,10,x\n"
    sec = Securities.load_csv(write(tmp_path, text))
    assert sec.get(0, "600000") == Security(100000, False)


def test_a_header_lacking_columns_names_them(tmp_path):
    with pytest.raises(SecuritiesError, match=r"lacks column\(s\) prev_close, risk_warning"):
        Securities.load_csv(write(tmp_path, "venue,symbol,close\nSSE,600000,10\n"))
    with pytest.raises(SecuritiesError, match="is empty"):
        Securities.load_csv(write(tmp_path, ""))
    with pytest.raises(SecuritiesError, match="not found"):
        Securities.load_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize("row, field, value, words", [
    ("NYSE,600000,10,false", "venue", "NYSE", "unknown venue"),
    ("SSE,,10,false", "symbol", "", "non-empty"),
    ("SSE,600000,,false", "prev_close", "", "missing field"),
    ("SSE,600000,ten,false", "prev_close", "ten", "not a price"),
    ("SSE,600000,0,false", "prev_close", "0", "must be positive"),
    ("SSE,600000,-1,false", "prev_close", "-1", "must be positive"),
    ("SSE,600000,10.00001,false", "prev_close", "10.00001", "4 decimal places"),
    ("SSE,600000,nan,false", "prev_close", "nan", "not a price"),
    ("SSE,600000,1e12,false", "prev_close", "1e12", "out of range"),
    ("SSE,600000,10,maybe", "risk_warning", "maybe", "true or false"),
    ("SSE,600000,10,", "risk_warning", "", "true or false"),
    ("SSE,600000,10,false,9,8", "limit_up", "9", "below prev_close"),
    ("SSE,600000,10,false,11,10.5", "limit_down", "10.5", "above prev_close"),
    ("SSE,600000,10,false,x,", "limit_up", "x", "not a price"),
    ("SSE,600000,10", "row", 3, "has 3 columns, header has 6"),
])
def test_a_bad_row_is_a_reject_with_its_line_field_and_value(tmp_path, row, field, value, words):
    rej = []
    text = "venue,symbol,prev_close,risk_warning,limit_up,limit_down\nSSE,600009,10,false,,\n" + row + "\n"
    sec = Securities.load_csv(write(tmp_path, text + "SZSE,000002,5,true,,\n"), rej)
    assert len(sec) == 2 and len(rej) == 1
    r = rej[0]
    assert (r.location, r.field, r.value) == (3, field, value) and words in r.reason, r.message
    assert r.raw == row and "sec.csv:line 3" in r.message


def test_a_repeated_security_is_a_reject_and_the_first_is_kept(tmp_path):
    rej = []
    sec = Securities.load_csv(write(tmp_path, "venue,symbol,prev_close,risk_warning\nSSE,600000,10,false\n\n"
                                              "SSE,600000,11,true\n"), rej)
    assert sec.get(0, "600000").prev_close == 100000
    assert [(r.location, r.field) for r in rej] == [(4, "symbol")] and "line 2" in rej[0].reason


def test_topic_records_set_replace_and_remove_securities():
    sec = Securities()
    sec.set_record(b"SSE:600000", orjson.dumps({"prev_close": 10.01, "risk_warning": False, "limit_up": 11.01,
                                                "limit_down": 9.01}))
    rec = sec.get(0, "600000")
    assert rec == Security(100100, False, 110100, 90100)
    assert orjson.loads(orjson.dumps(Securities.record_value(rec))) == {"prev_close": 10.01, "risk_warning": False,
                                                                       "limit_up": 11.01, "limit_down": 9.01}
    sec.set_record("SSE:600000", b'{"prev_close": 9, "risk_warning": true}')
    assert sec.get(0, "600000") == Security(90000, True) and Securities.record_value(sec.get(0, "600000"))[
        "prev_close"] == 9
    v = sec.version
    sec.set_record(b"SSE:600000", None)  # a tombstone
    assert sec.get(0, "600000") is None and sec.version == v + 1
    for key, value, field in [(b"600000", b"{}", "key"), (b"XSHG:600000", b'{"prev_close":1,"risk_warning":false}',
                                                           "venue"),
                              (b"SSE:1", b"[1]", "value"), (b"SSE:1", b"{oops", "value"),
                              (b"SSE:1", b'{"prev_close":"10","risk_warning":false}', None),
                              (b"SSE:1", b'{"prev_close":true,"risk_warning":false}', "prev_close"),
                              (b"SSE:1", b'{"prev_close":10,"risk_warning":"no"}', None),
                              (b"SSE:1", b'{"prev_close":10,"risk_warning":1}', "risk_warning"),
                              (b"SSE:1", b'{"prev_close":10}', "risk_warning")]:
        if field is None:  # decimal text and the CSV's words are taken from JSON too
            sec.set_record(key, value)
            continue
        with pytest.raises(SecuritiesError) as e:
            sec.set_record(key, value)
        assert e.value.field == field, (key, value, e.value)


def test_the_engine_looks_securities_up_by_symbol_id(tmp_path):
    sec = Securities.load_csv(write(tmp_path, CSV))
    b, reg = batch_of([{"ts": T0, "venue": "SZSE", "type": "order", "account": "A1", "symbol": "000001",
                        "side": "B", "price": 9.5, "qty": 100}])
    eng = Engine(load_config(), registry=reg, securities=sec)
    assert eng.securities is sec
    sym = int(b.symbol[0])
    assert eng.ctx.security(VENUE_CODE["SZSE"], sym) == Security(95000, True, 99800, 90300)
    assert eng.ctx.security(VENUE_CODE["SSE"], sym) is None and eng.ctx.security(1, -1) is None
    assert eng.ctx.security(1, 10**6) is None
    plain = Engine(load_config(), registry=reg)
    assert len(plain.securities) == 0 and plain.ctx.security(1, sym) is None
    del plain.__dict__["securities"]  # an engine restored from a checkpoint of an earlier version
    assert plain.ctx.security(1, sym) is None
