"""docs/reliability.md is the current output of ``surveil reliability --markdown``, whose scenarios are measured
when it runs (no timings: the same output every run); and what it measures holds: each bad record, timestamp or
checkpoint costs only itself."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from surveil import reliability
from surveil.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
STALE = ("docs/reliability.md is not the current output of the fault scenarios: run  "
         f".venv/bin/{reliability.REGENERATE}  (and read the diff: a changed row is a changed behaviour)")


@pytest.fixture(scope="module")
def groups():
    return reliability.run()


def test_docs_reliability_md_is_current(groups):
    assert DOCS.read_text(encoding="utf-8") == reliability.markdown(groups), STALE


def test_the_command_prints_it(groups, monkeypatch):
    monkeypatch.setattr(reliability, "run", lambda: groups)  # measured once for the module
    res = CliRunner().invoke(main, ["reliability", "--markdown"])
    assert res.exit_code == 0, res.output
    assert res.output == DOCS.read_text(encoding="utf-8"), STALE


def test_every_fault_costs_only_itself(groups):
    rows = {r.tried: r for _, rs in groups for r in rs}
    assert len(rows) == 20
    for r in rows.values():
        assert "NOT" not in r.happened and "COLLIDING" not in r.happened, r
        if r.same is not None and "late" not in r.tried and "swapped" not in r.tried:
            assert r.same == "yes", r  # a bad record or timestamp: the alerts of everything else unchanged
    swapped = next(r for t, r in rows.items() if "swapped" in t)
    assert swapped.same == "yes" or swapped.same.startswith("same alerts and values"), swapped
    pickled = next(r for t, r in rows.items() if "pickled" in t)
    assert pickled.happened.startswith("refused") and "code run: no" in pickled.happened
    for t, r in rows.items():
        if "checkpoint" in t and "restored" not in r.happened:
            assert r.happened.startswith("refused"), r
