"""The shape of a rule plug-in, proven: a fourth rule, keyed by security (venue, symbol), written with its
golden cases into a temporary folder and named by ``SURVEIL_RULES_PATH``, runs through replay (under a rules
file with its own ``[trade_count_1m]`` table), random batch cuts and file splits, and the in-process topology
(its rows exported by the partition stages to the security stage, routed by ``VENUE:symbol``, every stage
restored from checkpoints at random points): the same golden runner as the project's rules, and no file of
the project changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from golden import (
    SEEDS,
    Topology,
    case_files,
    check_all,
    load_case,
    replay_variant,
    write_case,
)

from surveil.engine import load_config
from surveil.engine.plan import plan
from surveil.rules import RULES_PATH_ENV, all_rules, rule_class
from surveil.rules.catalogue import lint, markdown
from surveil.rules.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]

RULE_ID = "trade_count_1m"

RULE_SOURCE = '''\
"""trade_count_1m — 50 or more trades in one security within one calendar minute.

A site's own rule (the example of a security-keyed rule): trading concentrated in one security,
(venue, symbol), counted as trade events (an execution is reported on each side's account, so a
trade between two accounts counts twice) within one calendar minute of exchange time; ">=".
Trades without a symbol are not counted.

Subject: (venue, symbol). Lifecycle: one alert per security and calendar minute that reaches the
threshold, raised by the trade that reaches it and final once event time has passed the minute (or
the day ended), with the minute's count, the accounts that traded (largest first) and the trades
per second.
"""

from __future__ import annotations

import numpy as np

from surveil.events.schema import NS_PER_SECOND, TRADE, ns_to_iso, trading_day_index
from surveil.rules.base import AlertDraft, Inputs, Param, Reference, Rule, RuleMeta, account_entry, positive, series

MINUTE = 60 * NS_PER_SECOND
SAMPLES = 5

META = RuleMeta(
    id="trade_count_1m",
    version=1,
    title="50 or more trades in one security within a calendar minute",
    description=__doc__.split("\\n\\n")[0],
    references=(Reference("Site surveillance manual (an example)", "concentrated trading in one security", ""),),
    params=(
        Param("threshold", 50, int, False, "chosen: an example threshold for the plug-in test",
              "trades in one security within one calendar minute", positive),
    ),
    false_positives=("opening and closing auctions", "index rebalancing days"),
    key="security",
    inputs=Inputs(types=("trade",), fields=("ts", "venue", "type", "symbol", "account", "order_id")),
    severity="low",
    measure="watch",
)


class TradeCount1m(Rule):
    meta = META

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.thr = int(params["threshold"])
        # (security key, minute start) -> [count, raised, {account key: n}, {second start: n}, samples]
        self.open: dict[tuple[int, int], list] = {}

    # -- state ----------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"open": [[k, m, c, r, sorted(a.items()), sorted(s.items()), smp]
                         for (k, m), (c, r, a, s, smp) in self.open.items()]}

    def restore(self, data: dict) -> None:
        self.open = {(k, m): [c, r, dict(map(tuple, a)), dict(map(tuple, s)), [list(x) for x in smp]]
                     for k, m, c, r, a, s, smp in data["open"]}

    def open_alerts(self) -> int:
        return sum(1 for e in self.open.values() if e[1])

    # -- evaluation -----------------------------------------------------------------------------------
    def evaluate(self, seg) -> list[AlertDraft]:
        rows = np.flatnonzero((seg.etype == TRADE) & (seg.symbol >= 0))
        if not len(rows):
            return []
        sec_keys = (seg.symbol[rows].astype(np.int64) << 2) | seg.venue[rows]
        ts = seg.ts[rows]
        accounts = seg.key[rows]
        names = self.ctx.account_names(accounts)
        oids = seg.order_id_of(rows)
        out = []
        for key, t, acc, name, oid in zip(sec_keys.tolist(), ts.tolist(), accounts.tolist(), names, oids):
            minute = t - t % MINUTE
            e = self.open.get((key, minute))
            if e is None:
                e = self.open[(key, minute)] = [0, False, {}, {}, []]
            e[0] += 1
            e[2][acc] = e[2].get(acc, 0) + 1
            sec = t - t % NS_PER_SECOND
            e[3][sec] = e[3].get(sec, 0) + 1
            # the first trades by (time, account, order id): the same whatever order simultaneous trades
            # of different accounts arrive in
            e[4] = sorted(e[4] + [[t, name, oid]], key=lambda x: (x[0], x[1], str(x[2])))[:SAMPLES]
            if e[0] == self.thr:
                e[1] = True
                out.append(self._draft(key, minute, e, "raised", raised_at=t))
        return out

    def close(self, watermark_ts: int) -> list[AlertDraft]:
        return self._finish(lambda minute: minute + MINUTE - 1 <= watermark_ts)

    def close_day(self, day: int) -> list[AlertDraft]:
        return self._finish(lambda minute: int(trading_day_index(minute)) <= day)

    def _finish(self, done) -> list[AlertDraft]:
        out = []
        for key, minute in sorted(k for k in self.open if done(k[1])):
            e = self.open.pop((key, minute))
            if e[1]:
                out.append(self._draft(key, minute, e, "final"))
        return out

    def _draft(self, key, minute, e, status, raised_at=None) -> AlertDraft:
        count, _raised, by_acc, per_sec, samples = e
        accounts = [account_entry(self.ctx.key_info(a), n, n / count) for a, n in by_acc.items()]
        accounts.sort(key=lambda r: (-r["value"], r["venue"], r["account"]))
        ev = {"minute_iso": ns_to_iso(minute), "trades": count,
              "sample_order_ids": [x[2] for x in samples], "accounts": accounts,
              "series": series("trades", sorted(per_sec.items()))}
        if raised_at is not None:
            ev["raised_at_iso"] = ns_to_iso(raised_at)
        return AlertDraft(rule=META.id, rule_version=META.version, subject=("security", key),
                          trading_day=int(trading_day_index(minute)), window_start=minute,
                          window_end=minute + MINUTE, value=count, threshold=self.thr, severity="low",
                          status=status, evidence=ev, unit="trades")


RULE = TradeCount1m
'''

CASES = {
    "at_threshold.toml": '''\
description = """
Exactly the threshold (">="): 50 trades in SSE:600000 within the minute 10:00, by three accounts on
different feed partitions (their buy and sell sides both count): one alert for the security. The same
symbol on SZSE is another security (49 trades: nothing); orders in the symbol do not count.
"""
accounts = """
venue,account,owner,broker
SSE,T1,Fund T,BRK-A
SSE,T2,Fund T,BRK-B
SSE,T3,,BRK-A
"""

[[generate]]
type = "trade"
side = "B"
account = "T1"
symbol = "600000"
count = 20
start = "10:00:00.5"
step = "2s"
ids = "t1-"

[[generate]]
type = "trade"
side = "S"
account = "T2"
symbol = "600000"
count = 20
start = "10:00:00.5"
step = "2s"
ids = "t2-"

[[generate]]
type = "trade"
side = "S"
account = "T3"
symbol = "600000"
count = 10
start = "10:00:30"
step = "1s"
ids = "t3-"

[[generate]]
type = "trade"
venue = "SZSE"
account = "Z1"
symbol = "600000"
count = 49
start = "10:00:00"
step = "1s"

[[generate]]
type = "order"
account = "T3"
symbol = "600000"
count = 200
start = "10:00:00"
step = "100ms"

[[alerts]]
subject = { venue = "SSE", symbol = "600000" }
value = 50
threshold = 50
unit = "trades"
severity = "low"
window_start = "10:00:00"
window_end = "10:01:00"
evidence = { trades = 50, sample_order_ids = ["t1-0", "t2-0", "t1-1", "t2-1", "t1-2"] }
''',
    "just_under_and_minute_boundary.toml": '''\
description = """
Just under: 49 trades in the minute 10:00 and 49 in the minute 10:01 of one security (98 within 60 s,
but in two calendar minutes): nothing.
"""
alerts = []

[[generate]]
type = "trade"
account = "A1"
symbol = "000001"
count = 49
start = "10:00:30"
over = "30s"

[[generate]]
type = "trade"
account = "A2"
symbol = "000001"
count = 49
start = "10:01:00"
over = "30s"
''',
    "threshold_from_the_rules_file_and_day_rollover.toml": '''\
description = """
The threshold from the case's rules file ([trade_count_1m] threshold = 40): two securities reaching 40
in the minute 14:56 of 2024-02-19 make two alerts; on 2024-02-20, 30 trades at 09:30 make none, 45 at
10:00 one, of that day.
"""

[params.trade_count_1m]
threshold = 40

[[generate]]
type = "trade"
account = "A1"
symbol = "600519"
count = 40
start = "14:56:00"
over = "59s"

[[generate]]
type = "trade"
venue = "SZSE"
account = "B1"
symbol = "000001"
count = 41
start = "14:56:10"
over = "49s"

[[generate]]
type = "trade"
account = "A1"
symbol = "600519"
count = 30
start = "2024-02-20T09:30:00+08:00"
over = "50s"

[[generate]]
type = "trade"
account = "A2"
symbol = "600519"
count = 45
start = "2024-02-20T10:00:00+08:00"
over = "50s"

[[alerts]]
subject = { venue = "SSE", symbol = "600519" }
value = 40
threshold = 40
window_start = "14:56"
trading_day = "2024-02-19"

[[alerts]]
subject = { venue = "SZSE", symbol = "000001" }
value = 41
window_start = "14:56"
trading_day = "2024-02-19"

[[alerts]]
subject = { venue = "SSE", symbol = "600519" }
value = 45
window_start = "2024-02-20T10:00:00+08:00"
trading_day = "2024-02-20"
''',
}


def _project_files() -> dict[str, str]:
    """A hash of every file of the project a rule could be registered in (code, docs, the cases)."""
    out = {}
    for top in ("surveil", "docs", "tests/rules"):
        for f in sorted((ROOT / top).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                out[str(f.relative_to(ROOT))] = hashlib.blake2b(f.read_bytes(), digest_size=16).hexdigest()
    return out


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The rule module in a folder of its own, its cases in another, and SURVEIL_RULES_PATH naming the first."""
    before = _project_files()
    rules_dir = tmp_path / "site_rules"
    rules_dir.mkdir()
    (rules_dir / f"{RULE_ID}.py").write_text(RULE_SOURCE, encoding="utf-8")
    cases_root = tmp_path / "cases"
    (cases_root / RULE_ID).mkdir(parents=True)
    for name, text in CASES.items():
        (cases_root / RULE_ID / name).write_text(text, encoding="utf-8")
    monkeypatch.setenv(RULES_PATH_ENV, str(rules_dir))
    yield cases_root
    monkeypatch.delenv(RULES_PATH_ENV)
    assert rule_class(RULE_ID) is None  # gone with the variable (the registry is cached per value)
    assert _project_files() == before  # and nothing of the project was written


def test_the_fourth_rule_is_registered_planned_and_complete(site, tmp_path):
    cls = rule_class(RULE_ID)
    assert cls is not None and cls.meta.key == "security"
    assert [c.meta.id for c in all_rules()][-1] == RULE_ID  # after the package's rules
    assert lint(cls, cases_root=site, docs=markdown()) == []
    assert f"## `{RULE_ID}` (version 1)" in markdown()
    p = plan()
    assert p.rules["security"] == (RULE_ID,) and p.rules["owner"] == ("sell_burst_1m",)
    sec = p.export("security")
    assert sec is not None and sec.symbol and not sec.market
    from surveil.events.schema import SIDE_CODE, TYPE_CODE
    wanted = {(t, s) for t in TYPE_CODE.values() for s in SIDE_CODE.values() if sec.table[t * 4 + s]}
    assert wanted == {(TYPE_CODE["trade"], s) for s in SIDE_CODE.values()}  # trades of any side, nothing else
    # its [rule id] table in a rules file: checked as every other
    good = tmp_path / "good.toml"
    good.write_text("[trade_count_1m]\nthreshold = 40\n[order_rate_1s]\nthreshold = 310\n")
    cfg = load_config(good)
    assert cfg[RULE_ID] == {"threshold": 40} and cfg["order_rate_1s"]["threshold"] == 310
    for text, err in (("[trade_count_1m]\nthreshold = -1\n", "must be positive"),
                      ("[trade_count_1m]\nthreshold = \"many\"\n", "expected int"),
                      ("[trade_count_1m]\nwindow = 5\n", "unknown key [trade_count_1m] window")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=err.replace("[", r"\[").replace("]", r"\]")):
            load_config(bad)


def test_the_fourth_rule_runs_its_cases_through_replay_and_the_topology(site, tmp_path):
    paths = case_files(site, RULE_ID)
    assert len(paths) == len(CASES)
    stats = Topology()
    for path in paths:  # replay, random batch cuts, random file splits, the topology: each seed the same bytes
        check_all(load_case(path), tmp_path / path.stem, stats=stats)
    # the security stage ran it: rows were routed there, and security stages died and came back
    assert stats.routed["security"] > 0 and stats.restores["security"] >= len(paths) * len(SEEDS)
    assert stats.duplicates > 0  # restored partition stages sent rows again, and the stages skipped them


def test_the_fourth_rule_s_alerts_name_the_security_and_its_accounts(site, tmp_path):
    case = load_case(case_files(site, RULE_ID)[0])
    _, alerts = replay_variant(write_case(case, tmp_path / "one"))
    (a,) = [x for x in alerts if x["rule"] == RULE_ID]
    assert a["subject"] == {"venue": "SSE", "symbol": "600000"} and a["unit"] == "trades"
    ev = a["evidence"]
    assert [(x["account"], x["owner"], x["broker"], x["value"]) for x in ev["accounts"]] == [
        ("T1", "Fund T", "BRK-A", 20), ("T2", "Fund T", "BRK-B", 20), ("T3", "SSE:T3", "BRK-A", 10)]
    assert sum(v for _, v in ev["series"]["points"]) == 50 and ev["series"]["unit"] == "trades"


def test_each_broker_sees_its_own_accounts_of_a_security_alert(site, tmp_path):
    """A security's alert is about several accounts, as an owner's: each broker's copy keeps its accounts."""
    from surveil.stream.views import broker_views

    case = load_case(case_files(site, RULE_ID)[0])
    _, alerts = replay_variant(write_case(case, tmp_path / "one"))
    (a,) = [x for x in alerts if x["rule"] == RULE_ID]
    views = broker_views(a)
    assert sorted(views) == ["BRK-A", "BRK-B"]
    assert [x["account"] for x in views["BRK-A"]["evidence"]["accounts"]] == ["T1", "T3"]
    assert [x["account"] for x in views["BRK-B"]["evidence"]["accounts"]] == ["T2"]
    assert all("sample_order_ids" not in v["evidence"] and "series" not in v["evidence"] for v in views.values())
