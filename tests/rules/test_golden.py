"""Every rule's golden cases (``tests/rules/<rule id>/*.toml``, format in README.md here) through every path
an event takes to an alert: replay of one file (checked against the case's expected alerts), the engine fed
random batch cuts, random file splits merged by replay, and the in-process stream topology with checkpoints
restored at random points. Every variant must give byte-identical final alerts to the replay."""

from __future__ import annotations

import pytest
from golden import (
    SEEDS,
    Topology,
    case_files,
    check_expected,
    cuts_variant,
    load_case,
    replay_variant,
    splits_variant,
    topology_variant,
    write_case,
)

from surveil.rules import rule_class

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
    stats = Topology()
    assert topology_variant(files, case, seed, stats=stats) == want, f"{case.name}: topology, seed {seed}"
    key = rule_class(case.rule).meta.key
    stage = "partition" if key == "account" else key
    assert stats.restores[stage] >= 1  # the stage that runs the rule did die and come back
    if stage != "partition":
        assert stats.routed[stage] > 0
    DUPLICATES[stage] = DUPLICATES.get(stage, 0) + stats.duplicates


#: rows a downstream stage skipped because a restored partition stage sent them again, per stage (summed over
#: the cases above, which run first)
DUPLICATES: dict[str, int] = {}


def test_restored_partition_stages_did_send_rows_again():
    """Over the cases, restored partition stages re-sent rows that the owner stage had applied (and it skipped
    them): the topology runs do exercise the deduplication."""
    if not DUPLICATES:
        pytest.skip("run with the topology tests above")
    assert DUPLICATES.get("owner", 0) > 0
