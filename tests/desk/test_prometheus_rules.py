"""The pipeline's alert rules (deploy/prometheus/surveil-rules.yml): valid for promtool, and their unit tests
(deploy/prometheus/tests/*.yml) pass, each alert both firing and not firing."""

import subprocess

import yaml
from promtools import PROM_DIR, binary

RULES = PROM_DIR / "surveil-rules.yml"
ALERTS = {"SurveilWorkerDown", "SurveilNoWorkers", "SurveilConsumerLagHigh", "SurveilLatencyP99High",
          "SurveilRejectsRising", "SurveilNoEventsDuringTradingHours"}


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=PROM_DIR)


def test_promtool_check_rules():
    r = run(binary("promtool"), "check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in r.stdout + r.stderr


def test_promtool_check_config_of_the_example():
    r = run(binary("promtool"), "check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_unit_tests_pass_and_cover_every_alert_firing_and_not_firing():
    tests = sorted((PROM_DIR / "tests").glob("*.yml"))
    assert tests
    r = run(binary("promtool"), "test", "rules", *map(str, tests))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(tests), r.stdout
    defined = {rule["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for rule in g["rules"]}
    assert defined == ALERTS
    fired, quiet = set(), set()
    for path in tests:
        for t in yaml.safe_load(path.read_text())["tests"]:
            for case in t.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fired == ALERTS, ALERTS - fired
    assert quiet == ALERTS, ALERTS - quiet


def test_promtool_notices_a_broken_expectation(tmp_path):
    """The unit tests can fail: the same trading-hours test with the alert expected at lunch time fails."""
    src = (PROM_DIR / "tests" / "trading_hours.yml").read_text()
    lunch = "eval_time: 240m     # 12:00, lunch break\n        alertname: SurveilNoEventsDuringTradingHours\n"
    bad = src.replace(lunch + "        exp_alerts: []", lunch + "        exp_alerts: *fired")
    assert bad != src
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "bad.yml").write_text(bad.replace("../surveil-rules.yml", str(RULES)))
    r = subprocess.run([binary("promtool"), "test", "rules", str(tmp_path / "tests" / "bad.yml")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr, r.stdout + r.stderr
