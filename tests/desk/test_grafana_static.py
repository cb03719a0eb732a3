"""The Grafana dashboards are valid: unique uids and panel ids, every datasource uid is the provisioned one,
every variable used is defined (or a Grafana built-in); the provisioning files point at the right places."""

import copy
import json

import pytest
import yaml
from dashboards import (
    DASHBOARDS,
    GRAFANA,
    all_panels,
    load_dashboards,
    panel_queries,
    provisioned_datasources,
    referenced_vars,
    validate,
    variables,
)

DS_UID = "surveil-prometheus"


@pytest.fixture(scope="module")
def boards():
    return load_dashboards()


def test_the_provisioned_datasource_is_prometheus_with_the_fixed_uid():
    ds = provisioned_datasources()
    assert list(ds) == [DS_UID]
    assert ds[DS_UID]["type"] == "prometheus" and ds[DS_UID]["url"].startswith("http")


def test_the_dashboard_provider_loads_files():
    cfg = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "surveil.yml").read_text())
    assert cfg["apiVersion"] == 1
    (prov,) = cfg["providers"]
    assert prov["type"] == "file" and prov["options"]["path"].startswith("/")


def test_the_three_dashboards_are_valid(boards):
    assert {d["uid"] for d in boards.values()} == {"surveil-market-overview", "surveil-rule-drilldown",
                                                   "surveil-pipeline-health"}
    assert validate(boards, provisioned_datasources()) == []
    for d in boards.values():
        assert panel_queries(d), d["uid"]
        for p in all_panels(d):
            for t in p.get("targets", []):
                assert 'job="surveil"' in t["expr"], (d["uid"], p["title"])  # the scrape job of the rules


def test_the_variables_are_used_where_they_should_be(boards):
    by_uid = {d["uid"]: d for d in boards.values()}
    expected = {"surveil-market-overview": "venue", "surveil-rule-drilldown": "rule",
                "surveil-pipeline-health": "instance"}
    for uid, name in expected.items():
        d = by_uid[uid]
        assert [v["name"] for v in variables(d)] == [name]
        used = set().union(*(referenced_vars(q) for _, q in panel_queries(d)))
        assert name in used, uid


def test_every_file_is_json_with_two_space_indent_and_a_trailing_newline():
    for p in DASHBOARDS.glob("*.json"):
        text = p.read_text()
        assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n", p.name


def _broken(boards, edit):
    b = copy.deepcopy(boards)
    edit(b)
    return validate(b, provisioned_datasources())


def test_the_validator_finds_each_kind_of_mistake(boards):
    paths = list(boards)
    first, second = paths[0], paths[1]

    def dup_uid(b):
        b[second]["uid"] = b[first]["uid"]

    def dup_panel(b):
        ps = b[first]["panels"]
        ps[1]["id"] = ps[0]["id"]

    def bad_ds(b):
        b[first]["panels"][0]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "elsewhere"}

    def undefined_var(b):
        t = b[first]["panels"][0]["targets"][0]
        t["expr"] = t["expr"].replace('job="surveil"', 'job="surveil", x=~"${desk:regex}"')

    def bad_var_ds(b):
        variables(b[first])[0]["datasource"] = {"type": "prometheus", "uid": "nope"}

    assert any("also used by" in e for e in _broken(boards, dup_uid))
    assert any("id used twice" in e for e in _broken(boards, dup_panel))
    assert any("'elsewhere' is not provisioned" in e for e in _broken(boards, bad_ds))
    assert any("$desk is not a variable" in e for e in _broken(boards, undefined_var))
    assert any("'nope' is not provisioned" in e for e in _broken(boards, bad_var_ds))
    assert referenced_vars("rate(x[$__rate_interval]) $a ${b} ${c:csv} [[d]]") == {"__rate_interval", "a", "b", "c",
                                                                                     "d"}


def test_a_datasource_without_uid_is_a_clear_error(tmp_path):
    (tmp_path / "ds.yml").write_text("apiVersion: 1\ndatasources:\n  - name: P\n    type: prometheus\n")
    with pytest.raises(ValueError, match="'P' has no fixed uid"):
        provisioned_datasources(tmp_path)
