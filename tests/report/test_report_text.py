"""Alert fields as text (surveil.report.text): exact times in Asia/Shanghai, exact integers, bounded lists."""

import orjson

from surveil.report.text import LIST_MOST, evidence_text, is_time, ns_text, plain, value_text


def test_a_time_is_shown_in_shanghai_to_the_digits_it_has():
    assert ns_text(1708306200815287000) == "2024-02-19 09:30:00.815287 +08:00"
    assert ns_text(1708306200815287123) == "2024-02-19 09:30:00.815287123 +08:00"
    assert ns_text(1708306200815000000) == "2024-02-19 09:30:00.815 +08:00"
    assert ns_text(1708306200000000000) == "2024-02-19 09:30:00 +08:00"
    assert ns_text(1708358399999999999) == "2024-02-19 23:59:59.999999999 +08:00"  # not rounded up a day


def test_which_integers_are_times():
    t = 1708306200815287123
    assert is_time(t) and is_time(t, "raised_at") and is_time(t, "at")
    assert not is_time(t, "threshold_message_order_id") and not is_time(t, "sample_order_ids")
    assert not is_time(True) and not is_time(1_000_000_000, "step_ns") and not is_time(float(t))
    assert value_text(t, "order_id") == "1708306200815287123"
    assert value_text(256_700_000_000, "value_fen") == "256,700,000,000"
    assert value_text(0.999943) == "0.999943" and value_text(None) == "" and value_text(False) == "false"


def test_structures_keep_every_digit_and_lists_are_shortened():
    t = 1708306200815287123
    series = {"unit": "messages", "step_ns": 1_000_000_000, "points": [[t + i, i] for i in range(1000)]}
    got = orjson.loads(value_text(series, "series"))
    assert got["step_ns"] == 1_000_000_000
    assert got["points"][0] == ["2024-02-19 09:30:00.815287123 +08:00", 0]
    assert len(got["points"]) == LIST_MOST + 1 and got["points"][-1] == f"… {1000 - LIST_MOST:,} more"
    assert value_text({"n": 2**62 + 1, "ids": [t]}) == '{"n":4611686018427387905,"ids":[1708306200815287123]}'
    assert plain([{"at": t}]) == [{"at": "2024-02-19 09:30:00.815287123 +08:00"}]


def test_evidence_rows():
    t = 1708306200815287000
    rows = dict(evidence_text({"peak_rate": {"count": 350, "at": t, "at_iso": "x", "unit": "second"},
                               "by_account": [{}], "per_second": [[t, 350]] * 60, "owner": "<b>"}))
    assert "by_account" not in rows and rows["owner"] == "<b>"  # escaped where it is shown, not here
    assert '"at":"2024-02-19 09:30:00.815287 +08:00"' in rows["peak_rate"]
    assert rows["per_second"] == ", ".join(["350"] * LIST_MOST) + " … 10 more"
