"""The Helm chart (deploy/helm/surveil): ``helm lint --strict``, ``helm template`` output checked against the
Kubernetes schemas (kubernetes-validate, offline) and against what the worker reads.

Helm is built from source by ``make helm`` (the Makefile pins the version; ``make test`` builds it first); when it
is missing, the session fixture runs ``make helm`` itself, so these tests never skip for want of Helm.

Values files: ``values/minimal.yaml`` (the least a release needs) and ``values/full.yaml`` (every feature: SASL over
TLS, checkpoint key, console logins, rules, settings, ServiceMonitor, feed Job with its own SASL principal).
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

from surveil.kafka_local import free_ports
from surveil.stream.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "surveil"
VALUES = Path(__file__).resolve().parent / "values"
MINIMAL, FULL = VALUES / "minimal.yaml", VALUES / "full.yaml"
#: the oldest Kubernetes the chart supports (Chart.yaml's kubeVersion, ">=1.25.0-0") and the newest that
#: kubernetes-validate knows
_OLDEST = re.fullmatch(r">=(\d+\.\d+)\.0-0", yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"])
KUBE_VERSIONS = (_OLDEST[1], latest_version())
SECRET_VARS = ("SURVEIL_SASL_PASSWORD", "SURVEIL_CHECKPOINT_KEY", "SURVEIL_CONSOLE_SESSION_KEY")


# --------------------------------------------------------------------------------------------------
# helm


def _helm_path() -> Path:
    m = re.search(r"^HELM_VERSION\s*:=\s*(\S+)", (REPO / "Makefile").read_text(), re.M)
    assert m, "Makefile: HELM_VERSION not found"
    return REPO / ".cache" / "helm" / m.group(1) / "bin" / "helm"


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory):
    path = _helm_path()
    if not path.exists():  # a fresh clone outside `make test`: build it as make test does
        subprocess.run(["make", "-s", "helm"], cwd=REPO, check=True, timeout=1200)
    assert path.exists(), f"make helm did not produce {path}"
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_DATA_HOME": str(home / "data")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([str(path), *args], capture_output=True, text=True, env=env, timeout=120)
        if check and p.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}", pytrace=False)
        return p

    return run


def _template_args(*values: Path, sets: tuple[str, ...] = ()) -> list[str]:
    args = ["template", "rel", str(CHART), "--namespace", "surveillance"]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    return args


_rendered: dict[tuple, list[dict]] = {}


@pytest.fixture(scope="session")
def render(helm):
    def _render(*values: Path, sets: tuple[str, ...] = ()) -> list[dict]:
        key = (values, sets)
        if key not in _rendered:
            out = helm(*_template_args(*values, sets=sets)).stdout
            _rendered[key] = [d for d in yaml.safe_load_all(out) if d]
        return _rendered[key]

    return _render


def one(docs: list[dict], kind: str, component: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (
        component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    assert len(found) == 1, f"expected one {kind} ({component}), got {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def container(doc: dict) -> dict:
    (c,) = pod_spec(doc)["containers"]
    return c


def config_maps(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}


def container_env(docs: list[dict], c: dict) -> dict[str, Any]:
    """Every variable the container gets: from the ConfigMaps of envFrom (their values) and from env (a literal
    value, or the valueFrom mapping)."""
    cms = config_maps(docs)
    env: dict[str, Any] = {}
    for src in c.get("envFrom", []):
        assert set(src) == {"configMapRef"}, f"envFrom other than a rendered ConfigMap: {src}"
        name = src["configMapRef"]["name"]
        assert name in cms, f"envFrom names ConfigMap {name}, which the chart does not render"
        env.update(cms[name])
    for e in c.get("env", []):
        assert e["name"] not in env, f"{e['name']} set twice"
        env[e["name"]] = e["valueFrom"] if "valueFrom" in e else e["value"]
    return env


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


# --------------------------------------------------------------------------------------------------
# what the worker reads


def _env_reads(source: str) -> set[str]:
    """Names of the environment variables a module reads: ``os.environ.get(X)``, ``os.environ[X]``,
    ``os.getenv(X)``, ``X in os.environ``, with ``X`` a string or a module-level constant holding one."""
    tree = ast.parse(source)
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
              for t in n.targets if isinstance(t, ast.Name)}

    def is_environ(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
                and node.value.id == "os")

    def name_of(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return consts.get(node.id)
        return None

    found: set[str | None] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and n.args and isinstance(n.func, ast.Attribute):
            f = n.func
            if (f.attr == "get" and is_environ(f.value)) or (
                    f.attr == "getenv" and isinstance(f.value, ast.Name) and f.value.id == "os"):
                found.add(name_of(n.args[0]))
        elif isinstance(n, ast.Subscript) and is_environ(n.value):
            found.add(name_of(n.slice))
        elif isinstance(n, ast.Compare) and len(n.ops) == 1 and isinstance(n.ops[0], ast.In) \
                and is_environ(n.comparators[0]):
            found.add(name_of(n.left))
    return {x for x in found if x}


@functools.cache
def read_by_surveil() -> frozenset[str]:
    """Every SURVEIL_* variable the package reads: a Settings field each (SURVEIL_ + its name upper-cased,
    read by Settings.from_env), and any other read found in surveil/ (so variables added on other branches
    count as soon as they are merged)."""
    names = {"SURVEIL_" + f.name.upper() for f in fields(Settings) if f.name != "extra"}
    for py in (REPO / "surveil").rglob("*.py"):
        names |= {n for n in _env_reads(py.read_text(encoding="utf-8")) if n.startswith("SURVEIL_")}
    return frozenset(names)


def test_env_scan_finds_reads():
    src = ("import os\nVAR = 'SURVEIL_A'\nos.environ.get(VAR)\nos.getenv('SURVEIL_B', '')\nos.environ['SURVEIL_C']\n"
           "if 'SURVEIL_D' in os.environ: pass\nprint('SURVEIL_E')\n")
    assert _env_reads(src) == {"SURVEIL_A", "SURVEIL_B", "SURVEIL_C", "SURVEIL_D"}
    read = read_by_surveil()
    assert {"SURVEIL_BOOTSTRAP_SERVERS", "SURVEIL_CHECKPOINT_KEY", "SURVEIL_SASL_PASSWORD", "SURVEIL_WEB_BIND",
            "SURVEIL_RULES_PATH"} <= read  # the last: surveil/rules/__init__.py, outside Settings


@pytest.mark.parametrize("values", [MINIMAL, FULL], ids=["minimal", "full"])
def test_every_env_var_the_chart_sets_is_read_by_the_worker(render, values):
    docs = render(values)
    read = read_by_surveil()
    for w in workloads(docs):
        env = container_env(docs, container(w))
        unread = sorted(set(env) - read)
        assert not unread, f"{w['kind']} {w['metadata']['name']} sets variables surveil never reads: {unread}"
    # every ConfigMap key that is not a file is an environment variable of some container
    used = {n for w in workloads(docs) for n in container_env(docs, container(w))}
    for name, data in config_maps(docs).items():
        if not name.endswith("-rules"):
            assert set(data) <= used, f"ConfigMap {name}: keys no container gets: {sorted(set(data) - used)}"


#: the console user the tests put in a users file the chart mounts, and its password
CONSOLE_USER, CONSOLE_PASSWORD = "desk1", "correct horse battery staple"


def secret_value(var: str) -> str:
    """What a Secret the chart refers to would hold for ``var``: a real Fernet key for the session key (the
    worker checks its form), a placeholder for the others."""
    if var == "SURVEIL_CONSOLE_SESSION_KEY":
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode("ascii")
    return "from-a-secret"


def write_users_file(path: Path) -> Path:
    """A users file as `surveil console user add` writes it: one desk user with a password."""
    from surveil.web.auth import add_user

    add_user(path, CONSOLE_USER, "desk", None, CONSOLE_PASSWORD)
    return path


@pytest.mark.parametrize("values", [MINIMAL, FULL], ids=["minimal", "full"])
def test_rendered_settings_load_in_the_worker_and_the_feed(render, values, tmp_path):
    """The environment each pod gets passes Settings.from_env (every file it names mounted in that pod: the feed
    does not mount the worker's rules or users file, so it must not be told of them), and the worker's console
    logins load from it as the worker loads them at start (a real users file where the chart mounts one: the
    settings only check that the file exists, the console reads it)."""
    from surveil.web.login import logins_from

    docs = render(values)
    spec = yaml.safe_load(values.read_text())
    rules_text = config_maps(docs).get("rel-surveil-rules", {}).get("rules.toml")
    for w in workloads(docs):
        c = container(w)
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        env = {}
        for k, v in container_env(docs, c).items():
            if isinstance(v, dict):
                assert set(v) == {"secretKeyRef"}, f"{k}: {v}"
                v = secret_value(k)
            elif v.startswith("/"):
                assert any(v.startswith(m.rstrip("/") + "/") for m in mounts), \
                    f"{w['kind']}: {k}={v} is not under a volume the container mounts ({mounts})"
                f = tmp_path / f"{w['kind']}-{k}"
                if k == "SURVEIL_CONSOLE_USERS_FILE":
                    write_users_file(f)
                else:
                    f.write_text(rules_text if k == "SURVEIL_RULES_FILE" else "")
                v = str(f)
            env[k] = v
        s = Settings.from_env(env)
        assert s.bootstrap_servers == spec["kafka"]["bootstrapServers"]
        for key, want in (spec.get("settings") or {}).items():
            assert getattr(s, key) == (tuple(want) if isinstance(want, list) else want), key
        if w["kind"] == "Deployment":
            assert (s.web_bind, s.web_port) == ("0.0.0.0", spec.get("web", {}).get("port", 6066))
            if rules_text is not None:
                from surveil.engine.engine import load_config

                cfg = load_config(s.rules_file)
                assert cfg["order_rate_1s"]["threshold"] == 300  # full.yaml's rules reach the worker
            console = spec.get("console", {})
            assert s.console_cookie_secure is console.get("cookieSecure", True)  # on by default
            assert bool(s.console_session_key) == bool(console.get("sessionKeySecret", {}).get("name"))
            logins, storage = logins_from(s)
            assert storage.cookie_params["secure"] is s.console_cookie_secure
            if console.get("usersSecret", {}).get("name"):
                assert logins.mode == "on" and set(logins.users()) == {CONSOLE_USER}
                assert logins.proxy_header == console.get("proxyUserHeader", "")
            else:
                assert logins.mode == "locked"  # the worker runs; its console answers 503
        else:
            assert not {k for k in env if k.startswith("SURVEIL_CONSOLE")}, "the feed is told of the console"
        if "securityProtocol" in spec["kafka"]:
            assert s.security_protocol == spec["kafka"]["securityProtocol"]
            # each workload logs in as its own principal: the workers' (kafka.sasl), the feed Job's (feed.sasl)
            sasl = spec["kafka"]["sasl"] if w["kind"] == "Deployment" else spec["feed"]["sasl"]
            assert s.sasl_username == sasl["username"]


# --------------------------------------------------------------------------------------------------
# lint and schemas


@pytest.mark.parametrize("values", [MINIMAL, FULL], ids=["minimal", "full"])
def test_helm_lint_strict(helm, values):
    p = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in p.stdout + p.stderr


@pytest.mark.parametrize("values", [MINIMAL, FULL], ids=["minimal", "full"])
def test_rendered_manifests_pass_kubernetes_validate(render, values):
    docs = render(values)
    kinds = sorted(d["kind"] for d in docs)
    want = ["ConfigMap", "ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    if values == FULL:
        want = sorted(want + ["ConfigMap", "Job", "ServiceMonitor"])  # + the rules ConfigMap
    assert kinds == want
    not_validated = []
    for d in docs:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except SchemaNotFoundError:
                not_validated.append(f"{d['apiVersion']} {d['kind']}")
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{d['kind']} {d['metadata']['name']} (Kubernetes {version}): "
                            f"{'.'.join(map(str, e.path))}: {e.message}", pytrace=False)
    # the one custom resource (a CRD of the Prometheus Operator) has no schema there: test_service_monitor checks it
    assert set(not_validated) <= {"monitoring.coreos.com/v1 ServiceMonitor"}
    assert bool(not_validated) == (values == FULL)


#: the ServiceMonitor fields the chart uses (monitoring.coreos.com/v1, Prometheus Operator API), no others
SERVICE_MONITOR = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name", "labels"]},
        "spec": {"type": "object", "additionalProperties": False, "required": ["selector", "endpoints"], "properties": {
            "jobLabel": {"type": "string"},
            "selector": {"type": "object", "additionalProperties": False, "required": ["matchLabels"],
                         "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                "matchNames": {"type": "array", "items": {"type": "string"}}}},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["port", "path"], "properties": {
                    "port": {"type": "string"}, "path": {"type": "string"},
                    "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                    "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}}}}}}},
}


def test_service_monitor_scrapes_the_headless_service(render):
    docs = render(FULL)
    sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service")
    jsonschema.validate(sm, SERVICE_MONITOR)
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # serviceMonitor.labels
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == ["surveillance"]
    # the job is named as deploy/prometheus/prometheus.yml names it: the alert rules and dashboards select it
    (scrape,) = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == scrape["job_name"] == "surveil"
    (ep,) = sm["spec"]["endpoints"]
    assert ep["path"] == "/metrics"
    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert "ServiceMonitor" not in {d["kind"] for d in render(MINIMAL)}  # off by default


# --------------------------------------------------------------------------------------------------
# the worker's pods


def _parse_cli(args: list[str]) -> None:
    """Parse a container's args as the image's entrypoint (``surveil``) would, without running the command."""
    import click

    from surveil.cli import main

    cmd = main.get_command(click.Context(main), args[0])
    assert cmd is not None, f"surveil has no command {args[0]!r}"
    cmd.make_context(args[0], list(args[1:]))  # a wrong option or value raises click.UsageError


@pytest.mark.parametrize("values", [MINIMAL, FULL], ids=["minimal", "full"])
def test_probes_use_health_and_ready_on_the_web_port(render, values):
    docs = render(values)
    c = container(one(docs, "Deployment"))
    port = int(container_env(docs, c)["SURVEIL_WEB_PORT"])
    assert container_env(docs, c)["SURVEIL_WEB_BIND"] == "0.0.0.0"  # reachable by the kubelet
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in (("startupProbe", "/health"), ("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert named.get(get["port"], get["port"]) == port, probe
    assert port == (7070 if values == FULL else 6066)
    _parse_cli(c["args"])


@pytest.mark.parametrize("values", [MINIMAL, FULL], ids=["minimal", "full"])
def test_resources_requested_and_limited(render, values):
    for w in workloads(render(values)):
        r = container(w)["resources"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(r.get(part, {})), f"{w['kind']}: resources.{part}"


def test_pdb_and_service_select_the_worker_pods_only(render):
    docs = render(FULL)
    dep, job = one(docs, "Deployment"), one(docs, "Job")
    worker_labels = dep["spec"]["template"]["metadata"]["labels"]
    feed_labels = job["spec"]["template"]["metadata"]["labels"]
    pdb = one(docs, "PodDisruptionBudget")
    svc = one(docs, "Service")
    for selector in (pdb["spec"]["selector"]["matchLabels"], svc["spec"]["selector"],
                     dep["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= worker_labels.items()
        assert not selector.items() <= feed_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    off = render(MINIMAL, sets=("podDisruptionBudget.enabled=false",))
    assert "PodDisruptionBudget" not in {d["kind"] for d in off}


def test_headless_service(render):
    svc = one(render(MINIMAL), "Service")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True  # a worker catching up is scraped too
    assert svc["spec"]["ports"] == [{"name": "web", "port": 6066, "targetPort": "web", "protocol": "TCP"}]


def test_secrets_come_from_secret_refs_never_values(render):
    docs = render(FULL)
    for name, data in config_maps(docs).items():
        assert not set(SECRET_VARS) & set(data), f"ConfigMap {name} holds a secret"
    env = {w["kind"]: container_env(docs, container(w)) for w in workloads(docs)}
    assert env["Deployment"]["SURVEIL_SASL_PASSWORD"] == {"secretKeyRef": {"name": "surveil-kafka", "key": "password"}}
    # the feed Job's own principal (test_feed_job_logs_in_as_its_own_principal)
    assert env["Job"]["SURVEIL_SASL_PASSWORD"] == {
        "secretKeyRef": {"name": "surveil-kafka-feed", "key": "feed-password"}}
    assert env["Deployment"]["SURVEIL_CHECKPOINT_KEY"] == {
        "secretKeyRef": {"name": "surveil-checkpoints", "key": "hmac-key"}}
    assert "SURVEIL_CHECKPOINT_KEY" not in env["Job"]  # the feed writes no checkpoint
    assert env["Deployment"]["SURVEIL_CONSOLE_SESSION_KEY"] == {
        "secretKeyRef": {"name": "surveil-console-session", "key": "fernet-key"}}
    assert "SURVEIL_CONSOLE_SESSION_KEY" not in env["Job"]  # the feed has no console
    for w in workloads(docs):  # each secret only by reference, never a literal value
        for e in container(w).get("env", []):
            if e["name"] in SECRET_VARS:
                assert set(e) == {"name", "valueFrom"} and set(e["valueFrom"]) == {"secretKeyRef"}, e
    # files from Secrets: the CA (both pods) and the console's users file (the worker)
    vols = {v["name"]: v for v in pod_spec(one(docs, "Deployment"))["volumes"]}
    assert vols["kafka-ca"]["secret"]["secretName"] == "kafka-ca"
    assert vols["console-users"]["secret"] == {"secretName": "surveil-console-users",
                                               "items": [{"key": "users.toml", "path": "users"}]}
    assert env["Deployment"]["SURVEIL_CONSOLE_USERS_FILE"] == "/etc/surveil/console/users"
    # PLAINTEXT: no SASL variable at all; no session key Secret: no session key variable (each worker makes one)
    plain = render(MINIMAL)
    for w in workloads(plain):
        assert not {k for k in container_env(plain, container(w)) if "SASL" in k or k in SECRET_VARS}


def test_settings_change_rolls_the_workers(render):
    def checksum(docs):
        return one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]

    assert checksum(render(MINIMAL)) != checksum(render(MINIMAL, sets=("settings.group_id=other",)))


def test_console_cookie_secure_on_by_default(render):
    def flag(docs):
        return config_maps(docs)["rel-surveil-worker"]["SURVEIL_CONSOLE_COOKIE_SECURE"]

    assert flag(render(MINIMAL)) == "on"  # browsers reach it through a TLS ingress, or on localhost
    assert flag(render(MINIMAL, sets=("console.cookieSecure=false",))) == "off"


def _notes(helm, *sets: str) -> str:
    args = ["install", "rel", str(CHART), "--namespace", "surveillance", "-f", str(MINIMAL), "--dry-run=client"]
    for s in sets:
        args += ["--set", s]
    out = helm(*args).stdout
    assert "NOTES:" in out, out
    return out.split("NOTES:", 1)[1]


def test_notes_say_when_the_console_is_locked_or_logins_hold_on_one_worker_only(helm):
    locked = "the console is locked"
    one_worker = "console.sessionKeySecret.name is not set"
    n = _notes(helm)  # no users file
    assert locked in n and one_worker not in n
    n = _notes(helm, "console.usersSecret.name=u")  # 2 workers (the default), each with its own key
    assert one_worker in n and "each of the 2 workers" in n and locked not in n
    for sets in (("console.usersSecret.name=u", "replicaCount=1"),
                 ("console.usersSecret.name=u", "console.sessionKeySecret.name=k"), ("console.enabled=false",)):
        n = _notes(helm, *sets)
        assert locked not in n and one_worker not in n, sets


def test_feed_job(render):
    docs = render(FULL)
    job = one(docs, "Job")
    spec, c = pod_spec(job), container(job)
    assert job["metadata"]["name"] == "rel-surveil-feed-1"  # one Job per release revision
    assert job["spec"]["backoffLimit"] == 0 and spec["restartPolicy"] == "Never"
    assert c["args"][0] == "feed"
    assert c["args"][-2:] == ["/data/2024-02-19/sse.svb", "/data/2024-02-19/szse.svb"]
    assert "--speed=10x" in c["args"]
    _parse_cli(c["args"])  # every option the Job passes is one `surveil feed` takes, with a valid value
    (data,) = [v for v in spec["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"] == {"claimName": "trading-days", "readOnly": True}
    assert {"name": "data", "mountPath": "/data", "readOnly": True} in c["volumeMounts"]
    assert "Job" not in {d["kind"] for d in render(MINIMAL)}  # off by default


def test_feed_job_logs_in_as_its_own_principal(render, tmp_path):
    """With SASL the feed Job runs as feed.sasl (its user name and password Secret), never as the workers'
    kafka.sasl: in the ACL layout of `surveil acl apply` only role feed may write the feed topics, and the workers'
    principal has nothing it does not need. Neither user name is in a ConfigMap both workloads read."""
    from surveil.acl import Principal, layout

    docs = render(FULL)
    spec = yaml.safe_load(FULL.read_text())
    env = {w["kind"]: container_env(docs, container(w)) for w in workloads(docs)}
    worker, feed = spec["kafka"]["sasl"], spec["feed"]["sasl"]
    assert env["Deployment"]["SURVEIL_SASL_USERNAME"] == worker["username"] == "surveil-worker"
    assert env["Deployment"]["SURVEIL_SASL_PASSWORD"] == {"secretKeyRef": worker["passwordSecret"]}
    assert env["Job"]["SURVEIL_SASL_USERNAME"] == feed["username"] == "surveil-feed"
    assert env["Job"]["SURVEIL_SASL_PASSWORD"] == {"secretKeyRef": feed["passwordSecret"]}
    assert env["Job"]["SURVEIL_SASL_USERNAME"] != env["Deployment"]["SURVEIL_SASL_USERNAME"]
    assert env["Job"]["SURVEIL_SASL_PASSWORD"] != env["Deployment"]["SURVEIL_SASL_PASSWORD"]
    for name, data in config_maps(docs).items():
        assert "SURVEIL_SASL_USERNAME" not in data, f"ConfigMap {name} names a principal"
    for w in workloads(docs):  # the user names are set in each container's own env, not from a ConfigMap
        assert {e["name"] for e in container(w)["env"]} >= {"SURVEIL_SASL_USERNAME", "SURVEIL_SASL_PASSWORD"}
    # as `surveil acl apply` would set the cluster up with these principals and the rendered settings: the Job's
    # user may write the feed topics it produces to, the workers' may not
    # the feed Job's settings (the topics it produces to), its Secret a placeholder and no CA file needed here
    s = Settings.from_env({k: secret_value(k) if isinstance(v, dict) else v for k, v in env["Job"].items()
                           if k != "SURVEIL_SSL_CAFILE"})
    acls = layout([Principal(worker["username"], "worker"), Principal(feed["username"], "feed")], s)
    assert s.feed_topics == tuple(spec["settings"]["feed_topics"])
    for t in s.feed_topics:
        writers = {a.principal for a in acls if (a.resource, a.name, a.operation) == ("TOPIC", t, "WRITE")}
        assert writers == {env["Job"]["SURVEIL_SASL_USERNAME"]}, t
    # SASL off (minimal.yaml): no principal at all, feed.sasl not needed
    plain = render(MINIMAL, sets=("feed.enabled=true", "feed.persistentVolumeClaim=c", "feed.files={a}"))
    assert not {k for w in workloads(plain) for k in container_env(plain, container(w)) if "SASL" in k}


def test_feed_with_sasl_but_no_feed_principal_is_refused(helm, tmp_path):
    """A values file with the feed Job and SASL but no feed.sasl: refused before anything is rendered, naming the
    values to set; with the schema skipped (`--skip-schema-validation`) the templates refuse it saying why. The
    workers' user name as the feed's is refused too (that user could not write the feed topics)."""
    spec = yaml.safe_load(FULL.read_text())
    del spec["feed"]["sasl"]
    values = tmp_path / "no-feed-principal.yaml"
    values.write_text(yaml.safe_dump(spec))
    p = helm(*_template_args(values), check=False)
    assert p.returncode != 0, "accepted: the feed Job with SASL and no principal of its own"
    assert "at '/feed/sasl/username': minLength" in p.stderr, p.stderr
    assert "at '/feed/sasl/passwordSecret/name': minLength" in p.stderr, p.stderr
    p = helm(*_template_args(values), "--skip-schema-validation", check=False)
    assert p.returncode != 0
    assert ("feed.sasl.username is required when feed.enabled with a SASL kafka.securityProtocol: the feed Job's "
            "own principal (role feed in the principals file of `surveil acl apply`") in p.stderr, p.stderr
    p = helm(*_template_args(FULL, sets=("feed.sasl.username=surveil-worker",)), check=False)
    assert p.returncode != 0
    assert "feed.sasl.username is the workers' kafka.sasl.username (surveil-worker)" in p.stderr, p.stderr
    # the feed's Secret without its name
    p = helm(*_template_args(FULL, sets=("feed.sasl.passwordSecret.name=",)), check=False)
    assert p.returncode != 0 and "at '/feed/sasl/passwordSecret/name'" in p.stderr, p.stderr
    # without the feed Job, or without SASL, feed.sasl is not needed
    for sets in (("feed.enabled=false",), ("kafka.securityProtocol=SSL",)):
        helm(*_template_args(values, sets=sets))


def json_schema_settings() -> set[str]:
    return set(json.loads((CHART / "values.schema.json").read_text())["properties"]["settings"]["properties"])


def test_schema_settings_are_worker_settings():
    """values.schema.json's `settings` are Settings fields without a value of their own, and full.yaml sets each
    (so the tests above see every one rendered)."""
    allowed = json_schema_settings()
    assert allowed <= {f.name for f in fields(Settings)}
    assert not allowed & {"sasl_password", "checkpoint_key", "bootstrap_servers", "web_bind", "web_port"}
    assert not {a for a in allowed if a.startswith("console")}  # the console.* values set those
    assert set(yaml.safe_load(FULL.read_text())["settings"]) == allowed


# --------------------------------------------------------------------------------------------------
# refused values


@pytest.mark.parametrize(("sets", "message"), [
    (("kafka.bootstrapServers=",), "kafka.bootstrapServers is required"),
    (("kafka.bootstrapServers=kafka",), "/kafka/bootstrapServers"),
    (("replicaCount=-1",), "/replicaCount"),
    (("replicaCount=0",), "/replicaCount"),
    (("kafka.sasl.password=hunter2",), "'password' not allowed"),
    (("feed.sasl.password=hunter2",), "at '/feed/sasl': additional properties 'password' not allowed"),
    (("kafka.securityProtocol=SASL_SSL", "kafka.sasl.username=u"), "/kafka/sasl/passwordSecret/name"),
    (("kafka.securityProtocol=SASL_SSL", "kafka.sasl.passwordSecret.name=s"), "/kafka/sasl/username"),
    (("kafka.securityProtocol=TLS",), "/kafka/securityProtocol"),
    (("settings.checkpoint_key=inline",), "'checkpoint_key' not allowed"),
    (("console.sessionKey=inline",), "'sessionKey' not allowed"),
    (("settings.console_session_key=inline",), "'console_session_key' not allowed"),
    (("console.sessionKeySecret.key=",), "/console/sessionKeySecret/key"),
    (("console.cookieSecure=maybe",), "/console/cookieSecure"),
    (("settings.feed_partitions=0",), "/settings/feed_partitions"),
    (("feed.enabled=true", "feed.files={day.svb}"), "/feed/persistentVolumeClaim"),
    (("resources.limits=null",), "/resources"),
], ids=["no-bootstrap", "bootstrap-without-port", "replicas-negative", "replicas-zero", "inline-sasl-password",
        "inline-feed-sasl-password",
        "sasl-without-secret", "sasl-without-username", "unknown-protocol", "inline-checkpoint-key",
        "inline-session-key", "inline-session-key-setting", "session-key-without-key", "cookie-secure-not-bool",
        "partitions-zero", "feed-without-claim", "no-resources"])
def test_wrong_values_are_refused_with_their_path(helm, sets, message):
    p = helm(*_template_args(MINIMAL, sets=sets), check=False)
    assert p.returncode != 0, f"accepted: {sets}"
    assert message in p.stderr, p.stderr


# --------------------------------------------------------------------------------------------------
# the pod's command and environment, run: what the kubelet would see


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, TimeoutError):
        return None


def _call(url: str, data: bytes | None = None, headers: dict[str, str] | None = None
          ) -> tuple[int, dict, Any]:
    """(status, JSON body, headers) of a request to the worker."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


def _cookie(headers: Any) -> tuple[str, str]:
    """The session cookie a response sets (``name=value``) and its attributes, as the browser gets them."""
    (set_cookie,) = [v for k, v in headers.items() if k.lower() == "set-cookie"]
    pair, _, attrs = set_cookie.partition(";")
    return pair.strip(), attrs


def _console_check(base: str, session_key: str | None) -> None:
    """A locked console (no ``session_key``: no Secrets) answers 503 (the probes 200 all the same); an unlocked
    one logs the chart's user in as the console's page does (``GET /api/session`` for the CSRF token, ``POST
    /api/login``) with a cookie the chart made ``Secure`` and sealed with the session key Secret's key (so any
    worker of the release reads it), and answers that session (and only it)."""
    from cryptography.fernet import Fernet

    locked = session_key is None
    status, body, headers = _call(base + "/api/session")
    assert status == 200 and body["auth"] == ("locked" if locked else "on"), body
    if locked:
        status, body, _ = _call(base + "/api/meta")
        assert status == 503 and "SURVEIL_CONSOLE_USERS_FILE" in body["error"], body
        return
    cookie, attrs = _cookie(headers)
    login = json.dumps({"username": CONSOLE_USER, "password": CONSOLE_PASSWORD}).encode()
    status, body, headers = _call(base + "/api/login", login, {"Cookie": cookie, "X-CSRF-Token": body["csrf"],
                                   "Content-Type": "application/json"})
    assert status == 200 and body["user"]["name"] == CONSOLE_USER, body
    cookie, attrs = _cookie(headers)
    assert "secure" in attrs.lower().replace(" ", "").split(";"), attrs  # console.cookieSecure: on by default
    sealed = cookie.split("=", 1)[1].strip('"').encode()  # the value is quoted (a Fernet token ends in =)
    assert json.loads(Fernet(session_key).decrypt(sealed))["session"]["user"] == CONSOLE_USER
    assert _call(base + "/api/meta", headers={"Cookie": cookie})[0] == 200
    assert _call(base + "/api/meta")[0] == 401


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("console", ["locked", "logins"])
def test_the_rendered_worker_pod_runs_passes_its_probes_and_stops_in_its_grace_period(render, kafka_bootstrap,
                                                                                      tmp_path, console):
    """The Deployment's container as the kubelet runs it: the image's entrypoint (``surveil``) with the
    rendered args and environment, on a real broker; its startup, liveness and readiness probes answer 200 on
    the probed port, and SIGTERM ends it with status 0 within terminationGracePeriodSeconds. With no users
    file the console is locked (503) and the worker runs all the same; with the users file and session key
    Secrets (a users file written by surveil.web.auth where the chart mounts it) a user logs in."""
    from kafkatools import settings as fresh_settings

    (port,) = free_ports(1)
    s = fresh_settings(kafka_bootstrap)
    keys = json_schema_settings()
    sets = [f"kafka.bootstrapServers={kafka_bootstrap}", f"web.port={port}"]
    if console == "logins":
        sets += ["console.usersSecret.name=surveil-console-users", "console.sessionKeySecret.name=surveil-session"]
    for k in sorted(keys):
        v = getattr(s, k)
        sets.append(f"settings.{k}={{{','.join(v)}}}" if isinstance(v, tuple) else f"settings.{k}={v}")
    docs = render(MINIMAL, sets=tuple(sets))
    dep = one(docs, "Deployment")
    c = container(dep)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURVEIL_")}
    for k, v in container_env(docs, c).items():
        if isinstance(v, dict):  # a Secret's key, as the kubelet would resolve it
            v = secret_value(k)
        elif k == "SURVEIL_CONSOLE_USERS_FILE":  # the Secret's file, where the chart mounts it
            assert any(v.startswith(m["mountPath"] + "/") for m in c["volumeMounts"]), v
            v = str(write_users_file(tmp_path / "users.toml"))
        env[k] = v
    assert ("SURVEIL_CONSOLE_USERS_FILE" in env) == ("SURVEIL_CONSOLE_SESSION_KEY" in env) == (console == "logins")
    assert Settings.from_env(env).group_id == s.group_id
    # the image's ENTRYPOINT is surveil (deploy/Dockerfile); the Job's and the Deployment's args follow it
    assert re.search(r'^ENTRYPOINT \["surveil"\]$', (REPO / "deploy" / "Dockerfile").read_text(), re.M)
    exe = Path(sys.executable).with_name("surveil")
    (tmp_path / "app").mkdir()  # the working directory: Faust's data directory goes under it, as in the image
    log_path = tmp_path / "worker.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(exe), *c["args"]], env=env, cwd=tmp_path / "app", stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        named = {p["name"]: p["containerPort"] for p in c["ports"]}

        def url(probe: str) -> str:
            get = c[probe]["httpGet"]
            return f"http://127.0.0.1:{named.get(get['port'], get['port'])}{get['path']}"

        deadline = time.monotonic() + 90
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            while (code := _get(url(probe))) != 200:
                assert proc.poll() is None, "the worker exited:\n" + log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, f"{probe}: {code}\n" + log_path.read_text()[-3000:]
                time.sleep(0.3)
        _console_check(f"http://127.0.0.1:{port}", env.get("SURVEIL_CONSOLE_SESSION_KEY"))
        proc.send_signal(signal.SIGTERM)
        grace = pod_spec(dep)["terminationGracePeriodSeconds"]
        t0 = time.monotonic()
        rc = proc.wait(grace)
        assert rc == 0, log_path.read_text()[-3000:]
        assert time.monotonic() - t0 < grace
        # the root file system is read-only in the pod: whatever the worker wrote in its working directory (the
        # image's WORKDIR) must be on a volume the chart mounts there
        workdir = re.search(r"^WORKDIR (\S+)$", (REPO / "deploy" / "Dockerfile").read_text(), re.M).group(1)
        mounted = {m["mountPath"] for m in c["volumeMounts"]}
        written = {f"{workdir.rstrip('/')}/{name}" for name in os.listdir(tmp_path / "app")}
        assert written <= mounted, (written, mounted)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()




@pytest.mark.kafka
@pytest.mark.slow
def test_the_rendered_feed_job_feeds_a_day(render, kafka_bootstrap, tmp_path):
    """The feed Job's container run with its rendered args and environment (the claim's /data being a folder
    here) produces a simulated day into the feed topics and exits 0."""
    from kafkatools import settings as fresh_settings

    from surveil.sim import simulate

    s = fresh_settings(kafka_bootstrap)
    data = tmp_path / "claim"
    (data / "day").mkdir(parents=True)
    day = simulate(data / "day" / "day.svb", events=5_000, accounts=100, seed=5)
    sets = (f"kafka.bootstrapServers={kafka_bootstrap}", "feed.enabled=true", "feed.persistentVolumeClaim=days",
            "feed.files={day/day.svb}", f"settings.feed_topics={{{','.join(s.feed_topics)}}}",
            f"settings.feed_partitions={s.feed_partitions}")
    docs = render(MINIMAL, sets=sets)
    c = container(one(docs, "Job"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURVEIL_")}
    env.update(container_env(docs, c))
    args = [str(data) + a[len("/data"):] if a.startswith("/data/") else a for a in c["args"]]
    assert args[-1] == str(data / "day" / "day.svb")
    p = subprocess.run([str(Path(sys.executable).with_name("surveil")), *args], env=env, capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"feed: {day.n_events:,} events sent" in p.stderr, p.stderr[-3000:]
    assert ", ".join(f"{t}[{s.feed_partitions}]" for t in s.feed_topics) in p.stderr  # the rendered topics


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory):
    """A secure single-node broker (SASL_SSL, SCRAM-SHA-512, the authorizer refusing what no ACL allows), as
    tests/kafka/conftest.py starts one."""
    from kafkatools import start_broker

    from surveil import kafka_local

    data_dir = tmp_path_factory.mktemp("kafka-secure")
    info = start_broker(data_dir, "a secure local Kafka broker", secure=True)
    assert info.secure is not None
    try:
        yield info, kafka_local.ensure_kafka_libs()
    finally:
        kafka_local.stop(data_dir)


@pytest.mark.kafka
@pytest.mark.slow
def test_the_rendered_feed_job_feeds_a_day_as_its_own_principal_under_acls(render, secure_kafka, tmp_path):
    """On a cluster set up by `surveil acl apply` (a worker and a feed principal), the feed Job's container run
    with its rendered args and environment (its Secrets resolved, the CA where the chart mounts it) produces the
    day as the feed principal; run as the workers' principal, as the chart did before feed.sasl, Kafka refuses
    it its WRITE on the feed topics."""
    from kafkatools import settings as fresh_settings

    from surveil import acl
    from surveil.sim import simulate

    info, lib = secure_kafka
    s = fresh_settings(info.bootstrap)
    tag = os.urandom(3).hex()
    rows = {"worker": (f"w-{tag}", "surveil-kafka"), "feed": (f"f-{tag}", "surveil-kafka-feed")}
    passwords = {secret: f"pw-{role}-{tag}" for role, (_, secret) in rows.items()}
    toml = "".join(f'[[principal]]\nname = "{name}"\nrole = "{role}"\npassword_file = "{role}.pw"\n\n'
                   for role, (name, _) in rows.items())
    for role, (_, secret) in rows.items():
        (tmp_path / f"{role}.pw").write_text(passwords[secret] + "\n")
    (tmp_path / "principals.toml").write_text(toml)
    acl.apply(acl.load_principals(tmp_path / "principals.toml", settings=s), s,
              acl.KafkaTools(info.bootstrap, info.secure.admin_config, lib))
    data = tmp_path / "claim"
    (data / "day").mkdir(parents=True)
    day = simulate(data / "day" / "day.svb", events=2_000, accounts=100, seed=6)
    sets = (f"kafka.bootstrapServers={info.bootstrap}", "kafka.securityProtocol=SASL_SSL",
            f"kafka.sasl.username={rows['worker'][0]}", "kafka.sasl.passwordSecret.name=surveil-kafka",
            "kafka.caSecret.name=kafka-ca", "feed.enabled=true", "feed.persistentVolumeClaim=days",
            "feed.files={day/day.svb}", f"feed.sasl.username={rows['feed'][0]}",
            "feed.sasl.passwordSecret.name=surveil-kafka-feed",
            f"settings.feed_topics={{{','.join(s.feed_topics)}}}", f"settings.feed_partitions={s.feed_partitions}")
    docs = render(MINIMAL, sets=sets)
    c = container(one(docs, "Job"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURVEIL_")}
    for k, v in container_env(docs, c).items():
        if isinstance(v, dict):  # the Secret's key, as the kubelet resolves it
            v = passwords[v["secretKeyRef"]["name"]]
        elif k == "SURVEIL_SSL_CAFILE":  # the CA Secret's file, where the chart mounts it
            assert any(v.startswith(m["mountPath"] + "/") for m in c["volumeMounts"]), v
            v = str(info.secure.ca_file)
        env[k] = v
    assert env["SURVEIL_SASL_USERNAME"] == rows["feed"][0]
    args = [str(data) + a[len("/data"):] if a.startswith("/data/") else a for a in c["args"]]
    exe = str(Path(sys.executable).with_name("surveil"))

    def run(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)

    p = run(env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"feed: {day.n_events:,} events sent" in p.stderr, p.stderr[-3000:]
    # the same Job as the workers' principal (the chart before feed.sasl): Kafka refuses its writes, and the feed
    # gateway says so, naming the operation, the topics and the principal, without a traceback
    p = run({**env, "SURVEIL_SASL_USERNAME": rows["worker"][0], "SURVEIL_SASL_PASSWORD": passwords["surveil-kafka"]})
    assert p.returncode != 0, p.stderr[-3000:]
    assert f"Kafka refused WRITE on topic(s) {', '.join(sorted(s.feed_topics))} to User:{rows['worker'][0]}" \
        in p.stderr, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "never retrieved" not in p.stderr, p.stderr[-3000:]
