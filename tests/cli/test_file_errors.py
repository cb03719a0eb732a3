"""Files: damage stays local, every error is clear. Each bad input through the command line: exit 1 with a
message naming the file (and the field, line or value), never a traceback or a bare "Aborted!"; damage that can
stay local (a binary frame, an over-long line, an over-long order id) is a reject and the run goes on."""

import gzip
import tracemalloc

import orjson
import pytest
from click.testing import CliRunner
from evtools import T0, order

from surveil.cli import main
from surveil.events import binary, jsonl
from surveil.events.batch import Registry
from surveil.events.io import read_events


def write(path, events, extra=b"", head=b""):
    path.write_bytes(head + b"".join(orjson.dumps(e) + b"\n" for e in events) + extra)
    return path


def events(n=50):
    return [order(T0 + i * 1000, f"A{i % 5}", oid=i) for i in range(n)]


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert "Aborted!" not in r.output
    return r


def clear_error(r, *words):
    assert r.exit_code == 1, r.output
    assert "Error:" in r.output, r.output
    for w in words:
        assert w in r.output, (w, r.output)


def rejects_of(path):
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


# -- binary files: a damaged frame is a reject, the rest is read --------------------------------------------------

def test_a_flipped_byte_in_frame_1_of_a_file_costs_its_frames_not_the_file(tmp_path):
    src = write(tmp_path / "day.jsonl", events(2000))
    assert run("convert", src, tmp_path / "day.svb", "--frame-size", "100").exit_code == 0
    data = bytearray((tmp_path / "day.svb").read_bytes())
    sizes, off = [], 0
    while off < len(data):
        sizes.append(binary.HEADER.unpack_from(data, off)[3])
        off += binary.frame_length(data, off)
    assert len(sizes) > 16 and max(sizes) <= 100
    lost = sum(sizes[:16])  # frame 1 and the delta frames after it, up to the next with the whole dictionary
    data[200] ^= 0x01  # a byte of frame 1 (the first)
    (tmp_path / "day.svb").write_bytes(data)
    r = run("replay", tmp_path / "day.svb", "--out", tmp_path / "a.jsonl")
    assert r.exit_code == 0
    assert f"replay: {2000 - lost:,} events, 16 rejects (16 damaged or unreadable frames: {lost:,} records not read)" \
        in r.output
    rej = rejects_of(tmp_path / "a.jsonl.rejects.jsonl")
    assert rej[0]["field"] == "frame" and rej[0]["frame_offset"] == 0 and rej[0]["records_lost"] == sizes[0]
    assert "checksum mismatch" in rej[0]["reason"] and rej[0]["record"] == 0
    # and convert says the same
    r = run("convert", tmp_path / "day.svb", tmp_path / "back.jsonl")
    assert r.exit_code == 0 and f"convert: {2000 - lost:,} events" in r.output and f"{lost:,} records not read" \
        in r.output


# -- JSON Lines: a line longer than the maximum ---------------------------------------------------------------------

def test_a_20_mb_line_is_one_reject_and_the_short_lines_after_it_are_read(tmp_path):
    src = tmp_path / "long.jsonl"
    with open(src, "wb") as f:
        f.write(orjson.dumps(order(T0, "A")) + b"\n")
        f.write(b'{"ts":1708306200000000001,"venue":"SSE","note":"' + b"x" * 20_000_000 + b'"}\n')
        for i in range(5):
            f.write(orjson.dumps(order(T0 + 2 + i, "A")) + b"\n")
    r = run("replay", src, "--out", tmp_path / "a.jsonl")
    assert r.exit_code == 0 and "replay: 6 events, 1 rejects" in r.output
    (rej,) = rejects_of(tmp_path / "a.jsonl.rejects.jsonl")
    assert rej["line"] == 2 and rej["field"] == "line" and rej["byte_offset"] == len(orjson.dumps(order(T0, "A"))) + 1
    assert rej["line_bytes"] == 20_000_050 and "longer than the maximum of 1,048,576 bytes" in rej["reason"]
    assert rej["value"].startswith('{"ts":1708306200000000001') and len(rej["raw"]) <= 200
    r = run("replay", src, "--out", tmp_path / "a.jsonl", "--strict")
    clear_error(r, "line 2", "longer than the maximum")
    # the reader's memory stays bounded: the line is read past, not held (small reads here: 1,000-line blocks)
    tracemalloc.start()
    try:
        got = sum(len(b) for b in read_events(src, Registry(), [], batch_size=1000, prefetch=False))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == 6 and peak < 5_000_000


def test_long_lines_inside_a_block_are_rejected_too(tmp_path):
    lines = [orjson.dumps(e) for e in events(300)]
    lines[7] = b'{"pad":"' + b"y" * (jsonl.MAX_LINE_BYTES + 10) + b'"}'
    lines[200] = b'{"pad":"' + b"z" * (jsonl.MAX_LINE_BYTES - 10) + b'"}'  # under the maximum: bad JSON event only
    src = tmp_path / "d.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    rej = []
    got = sum(len(b) for b in read_events(src, Registry(), rej))
    assert got == 298
    assert [(r.location, r.field) for r in rej] == [(8, "line"), (201, "ts")]
    assert rej[0].extra["byte_offset"] == sum(len(x) + 1 for x in lines[:7])


# -- order ids longer than 24 bytes: one limit, one reject ------------------------------------------------------------

def test_an_order_id_longer_than_24_bytes_is_the_same_reject_in_replay_convert_and_feed(tmp_path):
    evs = events(200)
    evs[10]["order_id"] = "X" * 25
    evs[150]["order_id"] = "订单" * 5  # 10 characters, 30 bytes of UTF-8
    src = write(tmp_path / "d.jsonl", evs)
    want = [(11, "order_id", "X" * 25), (151, "order_id", "订单" * 5)]

    def check(rej):
        assert [(x["line"], x["field"], x["value"]) for x in rej] == want
        assert all(x["reason"] == jsonl.ORDER_ID_RULE for x in rej)

    r = run("replay", src, "--out", tmp_path / "a.jsonl")
    assert r.exit_code == 0 and "198 events, 2 rejects" in r.output
    check(rejects_of(tmp_path / "a.jsonl.rejects.jsonl"))
    r = run("convert", src, tmp_path / "d.svb")
    assert r.exit_code == 0 and "convert: 198 events" in r.output
    check(rejects_of(tmp_path / "d.svb.rejects.jsonl"))
    # the feed's reading side (surveil feed reads its input as replay does)
    from surveil.feed import _batches

    rej = []
    assert sum(len(b) for b in _batches([src], Registry(), rej)) == 198
    check([x.to_dict() for x in rej])
    # a very long one is kept truncated in the reject
    evs[10]["order_id"] = "L" * 5000
    write(src, evs)
    r = run("replay", src, "--out", tmp_path / "a.jsonl")
    v = rejects_of(tmp_path / "a.jsonl.rejects.jsonl")[0]["value"]
    assert v.startswith("L" * 64 + "…") and "5,000 characters" in v


# -- clear errors, exit 1 -----------------------------------------------------------------------------------------

def test_a_rules_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    rules = tmp_path / "r.toml"
    rules.write_bytes(b"[order_rate_1s]\n# seuil \xe9lev\xe9\nthreshold = 100\n")
    r = run("replay", write(tmp_path / "d.jsonl", events()), "--rules", rules)
    clear_error(r, str(rules), "not UTF-8", "line 2")


def test_an_accounts_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    acc = tmp_path / "acc.csv"
    acc.write_bytes("venue,account,owner,broker\nSSE,A1,基金甲,B1\n".encode("gbk"))
    r = run("replay", write(tmp_path / "d.jsonl", events()), "--accounts", acc)
    clear_error(r, str(acc), "not UTF-8", "line 2")


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_gz_is_a_clear_error_naming_the_file_and_where(tmp_path, damage):
    data = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events(20000)))
    if damage == "truncated":
        data = data[:len(data) // 2]
    else:
        data = data[:len(data) // 2] + bytes(b ^ 0x55 for b in data[len(data) // 2:len(data) // 2 + 64]) + \
            data[len(data) // 2 + 64:]
    src = tmp_path / "d.jsonl.gz"
    src.write_bytes(data)
    for args in (["replay", src, "--out", tmp_path / "a.jsonl"], ["convert", src, tmp_path / "o.svb"]):
        r = run(*args)
        clear_error(r, str(src), "uncompressed byte", "cannot be decompressed",
                    "truncated" if damage == "truncated" else "damaged gzip data")
    # a binary file too
    src = tmp_path / "d.svb.gz"
    assert run("convert", write(tmp_path / "e.jsonl", events(20000)), tmp_path / "e.svb").exit_code == 0
    src.write_bytes(gzip.compress((tmp_path / "e.svb").read_bytes())[:-100])
    clear_error(run("replay", src), str(src), "truncated")


@pytest.mark.parametrize("option", ["--out", "--rejects"])
def test_an_output_in_a_missing_folder_is_refused_before_the_run(tmp_path, option, monkeypatch):
    import surveil.replay.run as replay_run

    called = []
    monkeypatch.setattr(replay_run, "replay", lambda *a, **k: called.append(1))
    missing = tmp_path / "no" / "such" / "out.jsonl"
    r = run("replay", write(tmp_path / "d.jsonl", events()), option, missing)
    clear_error(r, str(missing), "does not exist")
    assert not called  # checked before the run
    r = run("convert", tmp_path / "d.jsonl", tmp_path / "x.svb", "--rejects", missing)
    clear_error(r, str(missing), "does not exist")
    r = run("convert", tmp_path / "d.jsonl", missing.with_suffix(".svb"))
    clear_error(r, "does not exist")
    r = run("simulate", "--out", missing, "--events", "10")
    clear_error(r, "does not exist")


def test_an_accounts_header_without_the_required_columns_names_what_it_found_and_the_separator(tmp_path):
    acc = tmp_path / "acc.csv"
    acc.write_text("venue;account;owner;broker\nSSE;A1;M;B1\n")
    r = run("replay", write(tmp_path / "d.jsonl", events()), "--accounts", acc)
    clear_error(r, str(acc), "lacks column(s) venue, account, owner, broker", "'venue;account;owner;broker'",
                "separated by semicolons")
    acc.write_text("venue,account,owner,broker\nSSE;A1;M;B1\nSSE;A2;M;B1\n")  # the rows only: not one row read
    r = run("replay", tmp_path / "d.jsonl", "--accounts", acc)
    clear_error(r, str(acc), "none of its 2 rows has the header's 4 columns", "separated by semicolons")
    acc.write_text("venue,acct,owner,broker\nSSE,A1,M,B1\n")
    r = run("replay", tmp_path / "d.jsonl", "--accounts", acc)
    clear_error(r, "lacks column(s) account", "'acct'")
    assert "semicolons" not in r.output
    sec = tmp_path / "sec.csv"
    sec.write_text("venue\tsymbol\tprev_close\trisk_warning\nSSE\t600000\t10\tfalse\n")
    r = run("replay", tmp_path / "d.jsonl", "--securities", sec)
    clear_error(r, str(sec), "lacks column(s)", "separated by tabs")


def test_conflicting_duplicate_account_rows_are_an_error_naming_both_lines(tmp_path):
    acc = tmp_path / "acc.csv"
    acc.write_text("venue,account,owner,broker,reported\nSSE,A1,M1,B1,true\nSSE,A2,M2,B1,\n"
                   "SSE,A1,M1,B1,true\nSZSE,A1,M9,B2,\nSSE,A2,M3,B1,\n")
    r = run("replay", write(tmp_path / "d.jsonl", events()), "--accounts", acc)
    clear_error(r, str(acc), "line 3", "line 6", "SSE:A2", "owner='M2'", "owner='M3'")
    # identical repeats (line 4) and the same account on another venue (line 5) are fine
    acc.write_text("venue,account,owner,broker,reported\nSSE,A1,M1,B1,true\nSSE,A1,M1,B1,true\nSZSE,A1,M9,B2,\n")
    assert run("replay", tmp_path / "d.jsonl", "--accounts", acc, "--out", tmp_path / "a.jsonl").exit_code == 0
    acc.write_text("venue,account,owner,broker,reported\nSSE,A1,M1,B1,true\nSSE,A1,M1,B1,false\n")
    clear_error(run("replay", tmp_path / "d.jsonl", "--accounts", acc), "line 2", "line 3", "reported=True",
                "reported=False")


@pytest.mark.parametrize("text,words", [
    ("[sell_burst_1m]\ncritical_multiple = inf\n", ["[sell_burst_1m] critical_multiple = inf", "finite"]),
    ("[sell_burst_1m]\nindex_drop_pct = nan\n", ["[sell_burst_1m] index_drop_pct = nan", "finite"]),
    ("[order_rate_1s]\nthreshold = 1000000000000000000000000000000\n", ["[order_rate_1s] threshold", "out of range"]),
    ("[daily_orders_20k]\nthreshold = 100000000000\n", ["[daily_orders_20k] threshold", "1..1,000,000,000"]),
    ("[sell_burst_1m]\nwindow_seconds = -60\n", ["[sell_burst_1m] window_seconds = -60", "positive"]),
    ("[sell_burst_1m]\nwindow_seconds = 100000\n", ["[sell_burst_1m] window_seconds = 100000", "1..86,400"]),
    ("[sell_burst_1m]\nthreshold_yuan = 100000000000000\n", ["threshold_yuan", "1..10,000,000,000,000"]),
    ("[recommendations]\nrestrict_days = 100000\n", ["[recommendations] restrict_days = 100000", "1..3,650"]),
    ("[engine]\nfuture_jump_ms = -1\n", ["[engine] future_jump_ms = -1"]),
])
def test_inf_nan_and_absurd_parameter_values_are_clear_errors(tmp_path, text, words):
    rules = tmp_path / "r.toml"
    rules.write_text(text)
    clear_error(run("replay", write(tmp_path / "d.jsonl", events()), "--rules", rules), str(rules), *words)


# -- a UTF-8 byte order mark is accepted ------------------------------------------------------------------------

def test_a_byte_order_mark_is_accepted_in_jsonl_toml_and_csv(tmp_path):
    bom = b"\xef\xbb\xbf"
    src = write(tmp_path / "d.jsonl", events(), head=bom)
    rules = tmp_path / "r.toml"
    rules.write_bytes(bom + b"[order_rate_1s]\nthreshold = 10\n")
    acc = tmp_path / "acc.csv"
    acc.write_bytes(bom + b"venue,account,owner,broker\nSSE,A1,M1,B1\n")
    sec = tmp_path / "sec.csv"
    sec.write_bytes(bom + b"venue,symbol,prev_close,risk_warning\nSSE,600000,10.0,false\n")
    r = run("replay", src, "--rules", rules, "--accounts", acc, "--securities", sec, "--out", tmp_path / "a.jsonl")
    assert r.exit_code == 0 and "replay: 50 events, 0 rejects" in r.output and "order_rate_1s=" in r.output
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    r = run("replay", gz, "--rules", rules, "--accounts", acc, "--securities", sec, "--out", tmp_path / "b.jsonl")
    assert r.exit_code == 0
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    rej = []
    assert sum(len(b) for b in read_events(src, Registry(), rej)) == 50 and not rej
