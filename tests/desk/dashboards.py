"""Grafana dashboards of the desk (grafana/dashboards/*.json) and their provisioning (grafana/provisioning):
loading, a static validator, and the PromQL queries of every panel and variable (for the integration test)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources"

#: Grafana's own variables (https://grafana.com/docs/grafana/latest/dashboards/variables/add-template-variables/)
BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms", "__from",
            "__to", "__dashboard", "__org", "__user", "__name", "__all", "__auto", "timeFilter", "__timeFilter"}
#: $var, ${var}, ${var:format}, [[var]]
_VAR = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")
_NO_QUERY = {"row", "text", "news", "dashlist", "alertlist"}


def referenced_vars(text: str) -> set[str]:
    return {a or b or c for a, b, c in _VAR.findall(text)}


def load_dashboards(folder: Path = DASHBOARDS) -> dict[Path, dict]:
    return {p: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def provisioned_datasources(folder: Path = DATASOURCES) -> dict[str, dict]:
    """uid -> datasource, from every provisioning file (a datasource without a uid is an error)."""
    out: dict[str, dict] = {}
    for p in sorted(folder.glob("*.y*ml")):
        for ds in yaml.safe_load(p.read_text()).get("datasources", []):
            if not ds.get("uid"):
                raise ValueError(f"{p.name}: datasource {ds.get('name')!r} has no fixed uid")
            out[ds["uid"]] = ds
    return out


def all_panels(d: dict) -> list[dict]:
    out = []
    for p in d.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows carry their panels
    return out


def variables(d: dict) -> list[dict]:
    return d.get("templating", {}).get("list", [])


def variable_query(v: dict) -> str:
    q = v.get("query")
    return q.get("query", "") if isinstance(q, dict) else (q or "")


def validate(dashboards: dict, datasources: dict[str, dict]) -> list[str]:
    """Every problem found, as 'file: what' (an empty list: valid)."""
    errors: list[str] = []
    uids: dict[str, str] = {}
    for path, d in dashboards.items():
        name = Path(path).name

        def err(msg: str, name=name) -> None:
            errors.append(f"{name}: {msg}")

        for key in ("uid", "title", "panels", "schemaVersion"):
            if key not in d:
                err(f"no {key!r}")
        uid = d.get("uid")
        if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid or ""):
            err(f"uid {uid!r}: expected 1-40 of [A-Za-z0-9_-]")
        elif uid in uids:
            err(f"uid {uid!r} also used by {uids[uid]}")
        else:
            uids[uid] = name
        if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
            err(f"schemaVersion {d.get('schemaVersion')!r}: expected 36 or later")

        defined = set()
        for v in variables(d):
            if not v.get("name"):
                err("a variable without a name")
                continue
            if v["name"] in defined:
                err(f"variable {v['name']!r} defined twice")
            defined.add(v["name"])
            if v.get("type") == "query":
                ds = (v.get("datasource") or {}).get("uid")
                if ds not in datasources:
                    err(f"variable {v['name']!r}: datasource uid {ds!r} is not provisioned")
                if not variable_query(v):
                    err(f"variable {v['name']!r}: no query")

        def check_refs(text: str, where: str, defined=defined, err=err) -> None:
            for ref in sorted(referenced_vars(text) - defined - BUILTINS):
                err(f"{where}: ${ref} is not a variable of this dashboard")

        for v in variables(d):
            check_refs(variable_query(v), f"variable {v.get('name')!r}")
        ids: set = set()
        for p in all_panels(d):
            pid, title = p.get("id"), p.get("title", "")
            where = f"panel {pid} {title!r}"
            if not isinstance(pid, int):
                err(f"{where}: id must be an integer")
            elif pid in ids:
                err(f"{where}: id used twice")
            ids.add(pid)
            check_refs(title, where)
            g = p.get("gridPos") or {}
            if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
                err(f"{where}: gridPos {g!r} outside the 24-column grid")
            if p.get("type") in _NO_QUERY:
                continue
            pds = (p.get("datasource") or {}).get("uid")
            if pds not in datasources:
                err(f"{where}: datasource uid {pds!r} is not provisioned")
            targets = p.get("targets") or []
            if not targets:
                err(f"{where}: no query")
            refids = [t.get("refId") for t in targets]
            if len(set(refids)) != len(refids):
                err(f"{where}: refIds {refids} not unique")
            for t in targets:
                tds = (t.get("datasource") or p.get("datasource") or {}).get("uid")
                if tds not in datasources:
                    err(f"{where} {t.get('refId')}: datasource uid {tds!r} is not provisioned")
                if not t.get("expr"):
                    err(f"{where} {t.get('refId')}: empty expr")
                check_refs(t.get("expr", "") + " " + t.get("legendFormat", ""), f"{where} {t.get('refId')}")
    return errors


def panel_queries(d: dict) -> list[tuple[str, str]]:
    """(where, PromQL with Grafana variables) of every panel target."""
    return [(f"{d['uid']} panel {p['id']} {p.get('title')!r} {t['refId']}", t["expr"])
            for p in all_panels(d) if p.get("type") not in _NO_QUERY for t in p.get("targets", [])]


_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


def parse_label_values(query: str) -> tuple[str, str]:
    """``label_values(selector, label)`` -> (selector, label)."""
    m = _LABEL_VALUES.match(query.strip())
    if not m:
        raise ValueError(f"not a label_values(selector, label) query: {query!r}")
    return m.group(1), m.group(2)


def substitute(expr: str, values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return _VAR.sub(repl, expr)
