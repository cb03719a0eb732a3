"""The security stage on a real broker: a security-keyed rule from a site's own folder (``SURVEIL_RULES_PATH``;
the example rule of tests/rules/test_fourth_rule.py) runs in the workers' security stage (rows repartitioned
by ``VENUE:symbol`` through its own topic) and its final alerts equal replay's, with no project file changed."""

import asyncio
import importlib.util
from pathlib import Path

import pytest
from test_worker import live_day, settings

from surveil.replay import replay
from surveil.rules import RULES_PATH_ENV, rule_class
from surveil.sim import simulate

pytestmark = pytest.mark.kafka


def _fourth_rule_source(monkeypatch) -> tuple[str, str]:
    folder = Path(__file__).resolve().parents[1] / "rules"
    monkeypatch.syspath_prepend(str(folder))  # its golden-case helpers
    path = folder / "test_fourth_rule.py"
    spec = importlib.util.spec_from_file_location("fourth_rule_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.RULE_ID, mod.RULE_SOURCE


def test_a_security_keyed_rule_runs_live_as_in_replay(kafka_bootstrap, tmp_path, monkeypatch):
    rule_id, source = _fourth_rule_source(monkeypatch)
    site = tmp_path / "site_rules"
    site.mkdir()
    (site / f"{rule_id}.py").write_text(source, encoding="utf-8")
    monkeypatch.setenv(RULES_PATH_ENV, str(site))
    assert rule_class(rule_id).meta.key == "security"
    rules = tmp_path / "rules.toml"
    rules.write_text(f"[{rule_id}]\nthreshold = 8\n")
    day = simulate(tmp_path / "day.svb", events=60_000, accounts=1_000, seed=21)
    want = replay([day.events_path], accounts=day.accounts_path, rules=rules)
    mine = [a for a in want.alerts if a["rule"] == rule_id]
    assert mine, "the day must raise the security rule (else the test proves nothing)"
    asyncio.run(asyncio.wait_for(_live(kafka_bootstrap, day, rules, want), 240))


async def _live(kafka_bootstrap, day, rules, want):
    s = settings(kafka_bootstrap, accounts_csv=str(day.accounts_path), rules_file=str(rules))
    async with live_day(kafka_bootstrap, s, [day.events_path], want) as w:
        st = w.status()["states"]
        assert any(k.startswith(s.security_topic) for k in st), sorted(st)  # the security stage ran here
