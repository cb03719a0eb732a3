"""The rule catalogue: every rule is complete (the lint), the lint does catch what a rule lacks, docs/rules.md
is the generated catalogue, and no code outside the rules (and the simulator) names a rule id."""

from __future__ import annotations

from pathlib import Path

import pytest

from surveil.rules import RULES_PATH_ENV, all_rules
from surveil.rules.base import Inputs, Param, Reference, Rule, RuleMeta
from surveil.rules.catalogue import lint, markdown

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "rules"
DOCS = ROOT / "docs" / "rules.md"
REGENERATE = "docs/rules.md is not the generated catalogue: run  .venv/bin/surveil rules --markdown > docs/rules.md"


@pytest.fixture(autouse=True)
def _only_the_projects_rules(monkeypatch):
    monkeypatch.delenv(RULES_PATH_ENV, raising=False)


@pytest.mark.parametrize("cls", all_rules(), ids=lambda c: c.meta.id)
def test_every_rule_passes_the_lint(cls):
    assert lint(cls, cases_root=CASES, docs=DOCS.read_text(encoding="utf-8")) == []


def _incomplete_rule():
    class Incomplete(Rule):
        meta = RuleMeta(
            id="incomplete_rule", version=1, title="An incomplete rule", description="",
            references=(Reference("Some notice", "", ""),),
            params=(Param("limit", 5, int, False, "", "a limit"),
                    Param("window", 60, int, False, "ours", "a window"),
                    Param("level", 3, int, True, "exchange rules", "")),
            key="account", inputs=Inputs(types=("quote",), fields=("ts", "colour")),
            severity="urgent", measure="jail")

    return Incomplete


def test_an_incomplete_rule_fails_the_lint_with_every_reason(tmp_path):
    problems = lint(_incomplete_rule(), cases_root=tmp_path, docs="# Rules\n")
    assert problems == [
        "references: at least one, each with a document and an article",
        "false_positives: name at least one",
        "severity 'urgent': not one of ('low', 'medium', 'high', 'critical')",
        "measure 'jail': not a step of the measures ladder",
        "inputs.types ('quote',): event types among ('order', 'cancel', 'trade', 'index', 'indicative')",
        "inputs.fields ('ts', 'colour'): fields among ('ts', 'venue', 'type', 'side', 'aggressor', 'price', 'qty', "
        "'account', 'symbol', 'owner', 'broker', 'order_id', 'match_id')",
        "parameter limit: needs its source and a description",
        "parameter limit: a chosen default says why (source starts with 'chosen')",
        "parameter window: a chosen default says why (source starts with 'chosen')",
        "parameter level: needs its source and a description",
        "description: missing",
        f"golden cases: none in {tmp_path / 'incomplete_rule'}",
        "documentation: not in docs/rules.md (run surveil rules --markdown > docs/rules.md)",
    ]


def test_cases_without_a_negative_one_fail_the_lint(tmp_path):
    cls = _incomplete_rule()
    folder = tmp_path / "incomplete_rule"
    folder.mkdir()
    (folder / "hit.toml").write_text('description = "x"\n[[alerts]]\nsubject = {owner = "o"}\nwindow_start = 1\n')
    got = [p for p in lint(cls, cases_root=tmp_path) if p.startswith("golden")]
    assert got == [f"golden cases: no negative case (alerts = []) in {folder}"]
    (folder / "miss.toml").write_text('description = "y"\nalerts = []\n')
    assert [p for p in lint(cls, cases_root=tmp_path) if p.startswith("golden")] == []
    (folder / "bad.toml").write_text("alerts = [\n")
    assert [p for p in lint(cls, cases_root=tmp_path) if p.startswith("golden")][0].startswith(
        "golden cases: bad.toml is not valid TOML")


def test_docs_rules_md_is_the_generated_catalogue():
    assert DOCS.read_text(encoding="utf-8") == markdown(), REGENERATE


def test_the_cli_prints_the_catalogue():
    from click.testing import CliRunner

    from surveil.cli import main

    res = CliRunner().invoke(main, ["rules", "--markdown"])
    assert res.exit_code == 0 and res.output == markdown()


def test_the_catalogue_documents_every_rule_with_its_own_words():
    text = markdown()
    for cls in all_rules():
        m = cls.meta
        assert f"## `{m.id}` (version {m.version}): {m.title}" in text
        for p in m.params:
            assert f"| `{p.name}` |" in text
    # a rule module's documentation beyond its first paragraph (lifecycle, evidence) is in it
    assert "``peak_context``" in text and "``peak_per_second``" in text


def test_no_code_outside_the_rules_names_a_rule_id():
    """Consumers ask the rule (measure, broker view, chart kind, activity, describe); only the rules and the
    simulator (which makes scenarios for them) may name rule ids."""
    ids = [c.meta.id for c in all_rules()]
    pkg = ROOT / "surveil"
    found = []
    for f in sorted(pkg.rglob("*")):
        rel = f.relative_to(pkg)
        if rel.parts[0] in ("rules", "sim") or f.suffix not in (".py", ".js", ".html", ".j2") or not f.is_file():
            continue
        text = f.read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), start=1):
            found += [f"surveil/{rel}:{n}: {i}" for i in ids if i in line]
    assert len(ids) >= 3 and found == []
