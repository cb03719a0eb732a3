"""deploy/docker-compose.yml (never run here: no Docker) is consistent: every mounted or built file exists, the
workers, Prometheus' scrape targets, Grafana's datasource and the Kafka listeners agree on names and ports."""

import re
import shlex
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from dashboards import GRAFANA, provisioned_datasources

from surveil.stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def mounts(svc) -> dict[str, Path]:
    """container path -> host path, for bind mounts (relative host paths are relative to deploy/)."""
    out = {}
    for v in svc.get("volumes", []):
        src, dst = v.split(":")[:2]
        if src.startswith((".", "/")):
            out[dst] = (DEPLOY / src).resolve()
    return out


def args(svc) -> dict[str, str]:
    cmd = svc.get("command", [])
    cmd = shlex.split(cmd) if isinstance(cmd, str) else cmd
    return dict(a.lstrip("-").split("=", 1) for a in cmd if a.startswith("--") and "=" in a)


def published(svc) -> dict[int, int]:
    """container port -> host port."""
    out = {}
    for p in svc.get("ports", []):
        *_, host, container = str(p).split(":")
        out[int(container)] = int(host)
    return out


def workers(compose):
    return {n: s for n, s in compose["services"].items() if "SURVEIL_BOOTSTRAP_SERVERS" in s.get("environment", {})}


def test_every_mounted_and_built_file_exists(compose):
    for name, svc in compose["services"].items():
        for dst, src in mounts(svc).items():
            assert src.exists(), f"{name}: {src} (mounted at {dst}) does not exist"
        if "build" in svc:
            ctx = (DEPLOY / svc["build"]["context"]).resolve()
            assert ctx == ROOT and (ctx / svc["build"]["dockerfile"]).is_file(), name
            for line in (ctx / svc["build"]["dockerfile"]).read_text().splitlines():
                if line.startswith("COPY ") and "--from=" not in line:  # --from: a file of an earlier stage
                    for src in line.split()[1:-1]:
                        assert (ctx / src).exists(), f"Dockerfile: COPY {src}: not found"
    named = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])
             if not v.startswith((".", "/"))}
    assert named <= set(compose.get("volumes", {})), named


def test_workers_settings_are_valid_and_kafka_listens_where_they_connect(compose):
    ws = workers(compose)
    assert len(ws) >= 2
    kafka_env = compose["services"]["kafka"]["environment"]
    advertised = {u.split("://", 1)[1] for u in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name, svc in ws.items():
        env = {k: str(v) for k, v in svc["environment"].items()}
        s = Settings.from_env(env)  # raises SettingsError on a bad value
        assert s.web_bind == "0.0.0.0", name  # reachable from Prometheus' container
        for b in s.bootstrap_servers.split(","):
            assert b in advertised, f"{name}: {b} is not an advertised Kafka listener ({advertised})"
            assert b.split(":")[0] in compose["services"]
        assert "kafka" in svc["depends_on"]
    hosts = [p for svc in compose["services"].values() for p in published(svc).values()]
    assert len(hosts) == len(set(hosts)), f"a host port is published twice: {hosts}"


def test_prometheus_scrapes_every_worker_on_its_web_port_and_loads_the_rules(compose):
    prom = compose["services"]["prometheus"]
    m = mounts(prom)
    cfg_path = args(prom)["config.file"]
    cfg = yaml.safe_load(m[cfg_path].read_text())
    assert m[cfg_path] == DEPLOY / "prometheus" / "prometheus.yml"
    for rf in cfg["rule_files"]:
        in_container = str(Path(cfg_path).parent / rf)
        assert in_container in m and m[in_container].is_file(), f"rule file {rf} is not mounted next to the config"
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "surveil"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    expected = {f"{n}:{s['environment']['SURVEIL_WEB_PORT']}" for n, s in workers(compose).items()}
    assert targets == expected
    for n, s in workers(compose).items():  # the published port maps to the worker's web port
        assert int(s["environment"]["SURVEIL_WEB_PORT"]) in published(s), n


def test_grafana_gets_the_provisioning_and_the_dashboards_where_the_provider_looks(compose):
    graf = compose["services"]["grafana"]
    m = mounts(graf)
    assert m["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "surveil.yml").read_text())["providers"][0]
    assert m[provider["options"]["path"]] == GRAFANA / "dashboards"
    home = graf["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert (GRAFANA / "dashboards" / Path(home).relative_to(provider["options"]["path"])).is_file()
    # the datasource url points at the Prometheus service and the port it listens on
    (ds,) = provisioned_datasources().values()
    url = urlparse(ds["url"])
    prom = compose["services"]["prometheus"]
    assert url.hostname == "prometheus" and url.hostname in compose["services"]
    listen = args(prom).get("web.listen-address", "0.0.0.0:9090")
    assert url.port == int(listen.rsplit(":", 1)[1])
    assert re.fullmatch(r"[\w.-]+:\d+", listen)


def test_the_secure_broker_is_a_profile_and_its_script_listens_where_it_advertises(compose):
    """The "secure" profile's broker runs deploy/kafka/secure-broker.sh (tests/kafka/test_secure_compose.py runs
    the script itself against Kafka's jars); the plaintext broker stays the default."""
    svc = compose["services"]["kafka-secure"]
    assert svc["profiles"] == ["secure"] and "profiles" not in compose["services"]["kafka"]
    script = mounts(svc)[svc["entrypoint"][-1]]
    assert script == DEPLOY / "kafka" / "secure-broker.sh"
    env = svc["environment"]
    assert published(svc) == {int(env["EXTERNAL_PORT"]): int(env["EXTERNAL_PORT"])}
    assert env["HOSTNAME_IN"] == "kafka-secure" and env["EXTERNAL_HOST"] == "127.0.0.1"
    text = script.read_text()
    for line in ("allow.everyone.if.no.acl.found=false", "super.users=User:admin",
                 "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                 "advertised.listeners=SASL_SSL://$HOSTNAME_IN:$INTERNAL_PORT,EXTERNAL://$EXTERNAL_HOST:$EXTERNAL_PORT"):
        assert f"\n{line}\n" in text, line


def test_console_users_folder_mounted_and_the_documented_users_file_logs_in(compose, tmp_path):
    """No users file is shipped: the workers' console is locked (they bind 0.0.0.0, so logins cannot be off),
    and they mount deploy/console/ (a README, and the git-ignored users file once made) read-only. The users
    file the compose file documents (a commented SURVEIL_CONSOLE_USERS_FILE) lies in that folder; made there
    by surveil.web.auth (as `surveil console user add` does), it gives password logins; set but missing, the
    worker refuses to start (file not found), as the header says."""
    import subprocess

    from surveil.stream.settings import SettingsError
    from surveil.web.auth import add_user
    from surveil.web.login import logins_from

    text = (DEPLOY / "docker-compose.yml").read_text()
    (documented,) = re.findall(r"^\s*#\s*SURVEIL_CONSOLE_USERS_FILE:\s*(\S+)\s*$", text, re.M)
    folder = Path(documented).parent
    assert (DEPLOY / "console" / "README.md").is_file()
    assert documented in (DEPLOY / "console" / "README.md").read_text()
    ignored = subprocess.run(["git", "check-ignore", "-q", f"deploy/console/{Path(documented).name}"], cwd=ROOT)
    assert ignored.returncode == 0, "the users file is not git-ignored"
    for name, svc in workers(compose).items():
        assert mounts(svc).get(str(folder)) == DEPLOY / "console", f"{name}: {folder} is not deploy/console"
        assert f"./console:{folder}:ro" in svc["volumes"], name  # read-only
        env = {k: str(v) for k, v in svc["environment"].items()}
        assert "SURVEIL_CONSOLE_USERS_FILE" not in env  # not set by default: the file may not exist
        logins, _ = logins_from(Settings.from_env(env))
        assert logins.mode == "locked", name
        # the documented path, mapped to a folder made here as deploy/console/ would be
        users = tmp_path / name / Path(documented).name
        users.parent.mkdir()
        with pytest.raises(SettingsError, match="file not found"):
            Settings.from_env({**env, "SURVEIL_CONSOLE_USERS_FILE": str(users)})
        add_user(users, "alice", "desk", None, "a password for the test")
        logins, _ = logins_from(Settings.from_env({**env, "SURVEIL_CONSOLE_USERS_FILE": str(users)}))
        assert logins.mode == "on" and set(logins.users()) == {"alice"}, name
