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


def test_the_case_format_is_checked(tmp_path):
    """A typo in a case is an error that names it, not a case that silently tests less."""
    from golden import CaseError, duration_ns, time_ns

    folder = tmp_path / "order_rate_1s"
    folder.mkdir()
    gen = '[[generate]]\naccount = "A"\ncount = 2\nstart = "09:30"\nstep = "1ms"\n'
    for text, err in (
        ('description = "x"\nalert = []\n' + gen, "unknown key(s) alert"),
        ('description = "x"\n' + gen, "alerts is required"),
        ('description = "x"\nalerts = []\n' + gen.replace("\ncount =", "\ncuont ="), "unknown key(s) cuont"),
        ('description = "x"\nalerts = []\n' + gen + 'over = "1s"\n', "either step or over"),
        ('description = "x"\nalerts = []\n' + gen.replace("1ms", "1 fortnight"), "is not a duration"),
        ('description = "x"\nalerts = []\n' + gen + 'value_yuan = 15\nprice = 10.0\n', "not a whole number"),
        ('description = "x"\nalerts = []\n', "no events"),
        ('description = "x"\n' + gen + '[[alerts]]\nsubject = {venue = "SSE", account = "A"}\nwindow_start = "09:30"\n'
         'valeu = 3\n', "unknown key(s) valeu"),
    ):
        (folder / "c.toml").write_text(text)
        with pytest.raises(CaseError, match=err.replace("(", r"\(").replace(")", r"\)")):
            load_case(folder / "c.toml")
    assert duration_ns("2.5s", "x") == 2_500_000_000 and duration_ns("1min", "x") == 60 * 10**9
    assert time_ns("09:30", "2024-02-19", "x") == time_ns("2024-02-19T01:30:00Z", "2024-02-19", "x")
    assert time_ns("09:30:01.5", "2024-02-19", "x") - time_ns("09:30", "2024-02-19", "x") == 1_500_000_000
