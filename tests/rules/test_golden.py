"""Every rule's golden cases (``tests/rules/<rule id>/*.toml``, format in README.md here) through every path
an event takes to an alert: replay of one file (checked against the case's expected alerts), the engine fed
random batch cuts, random file splits merged by replay, and the in-process stream topology with checkpoints
restored at random points. Every variant must give byte-identical final alerts to the replay."""

from __future__ import annotations

import pytest
from golden import SEEDS, case_files, check_expected, cuts_variant, load_case, replay_variant, splits_variant
from golden import topology_variant, write_case

CASES = case_files()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The replay's result per case file, computed once: (case, files, canonical bytes)."""
    done = {}

    def get(path):
        if path not in done:
            case = load_case(path)
            files = write_case(case, tmp_path_factory.mktemp(case.rule))
            want, alerts = replay_variant(files)
            done[path] = (case, files, want, alerts)
        return done[path]

    return get


def _id(p):
    return f"{p.parent.name}/{p.stem}"


def test_every_rule_has_cases():
    from surveil.rules import all_rules

    have = {p.parent.name for p in CASES}
    assert {c.meta.id for c in all_rules()} <= have


@pytest.mark.parametrize("path", CASES, ids=_id)
def test_replay_gives_the_expected_alerts(path, reference):
    case, _files, _want, alerts = reference(path)
    check_expected(case, alerts)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("path", CASES, ids=_id)
def test_random_batch_cuts_and_file_splits_give_the_same_alerts(path, seed, reference):
    case, files, want, _ = reference(path)
    assert cuts_variant(files, seed) == want, f"{case.name}: random batch cuts, seed {seed}"
    assert splits_variant(case, files, seed) == want, f"{case.name}: random file splits, seed {seed}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("path", CASES, ids=_id)
def test_the_topology_with_restores_gives_the_same_alerts(path, seed, reference):
    case, files, want, _ = reference(path)
    assert topology_variant(files, case, seed) == want, f"{case.name}: topology, seed {seed}"
