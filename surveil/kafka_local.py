"""A local, single-node Apache Kafka (KRaft) for development and tests.

No Docker here: Kafka's jars are resolved from Maven Central with the tiny
Maven project in ``deploy/kafka/pom.xml`` into a git-ignored cache folder, and
the broker runs as ``java -cp '<lib>/*' kafka.Kafka server.properties`` in
KRaft combined mode (broker and controller in one process) on loopback.

Command line (also mounted as ``surveil kafka ...`` where the main CLI adds
the :data:`kafka` group)::

    python -m surveil.kafka_local resolve          # jars into .cache/kafka/lib (kafka-tools: .cache/kafka/tools)
    python -m surveil.kafka_local start            # prints 127.0.0.1:19092
    python -m surveil.kafka_local start --secure   # SASL_SSL, SCRAM, TLS, ACLs: prints 127.0.0.1:19094
    python -m surveil.kafka_local status
    python -m surveil.kafka_local stop

``start`` prints the bootstrap servers on stdout and everything else on
stderr, so ``export SURVEIL_KAFKA_BOOTSTRAP=$(python -m surveil.kafka_local
start)`` works.

Convention for tests: when the environment variable ``SURVEIL_KAFKA_BOOTSTRAP``
(:data:`BOOTSTRAP_ENV`) is set, tests use that external broker instead of
starting one (see :func:`external_bootstrap`).

The secure broker (``--secure``, folder ``<repo>/.cache/kafka/secure``): see "the secure broker" below and
docs/security.md; its folder also holds ``secure.json`` (passwords, 0600), ``admin.properties`` (the super
user's Kafka client properties) and ``tls/`` (``ca.pem``, ``truststore.p12``, ``broker.p12``).

Files in a data folder (default ``<repo>/.cache/kafka/run``)::

    server.properties   log4j.properties   state.json   kafka.pid
    kafka.out           (the JVM's stdout/stderr)
    logs/               (server.log, controller.log, state-change.log, ...)
    data/               (log.dirs: the KRaft metadata log and topic data)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from surveil.exceptions import SurveilError

try:  # POSIX only; without it concurrent resolutions/starts are not serialised.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "BOOTSTRAP_ENV",
    "DEFAULT_CONTROLLER_PORT",
    "DEFAULT_PORT",
    "BrokerInfo",
    "JavaNotFound",
    "KafkaLocalError",
    "MavenNotFound",
    "PortBusy",
    "ResolveError",
    "StartError",
    "default_data_dir",
    "default_lib_dir",
    "ensure_kafka_libs",
    "external_bootstrap",
    "kafka",
    "kafka_version",
    "start",
    "status",
    "stop",
]

#: Tests use the broker named by this variable instead of starting their own.
BOOTSTRAP_ENV = "SURVEIL_KAFKA_BOOTSTRAP"
#: Overrides the jar cache folder (e.g. a CI cache path).
LIB_DIR_ENV = "SURVEIL_KAFKA_LIB"

DEFAULT_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
#: the secure broker's (``--secure``), so that both can run side by side
DEFAULT_SECURE_PORT = 19094
DEFAULT_SECURE_CONTROLLER_PORT = 19095
DEFAULT_HEAP = "512m"
DEFAULT_START_TIMEOUT = 120.0
DEFAULT_STOP_TIMEOUT = 30.0
HOST = "127.0.0.1"

MARKER_NAME = ".surveil-complete"
PID_NAME = "kafka.pid"
STATE_NAME = "state.json"
OUT_NAME = "kafka.out"
_OWNER_FLAG = "-Dsurveil.kafka.dir="

_PACKAGE_DIR = Path(__file__).resolve().parent
_POM_RELATIVE = Path("deploy") / "kafka" / "pom.xml"

# Popen objects of brokers started by this process, so that they are reaped
# (a zombie would still look alive to os.kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


# --------------------------------------------------------------------------
# errors


class KafkaLocalError(SurveilError):
    """Anything that prevents the local broker from being resolved or run."""


class JavaNotFound(KafkaLocalError):
    pass


class MavenNotFound(KafkaLocalError):
    pass


class ResolveError(KafkaLocalError):
    pass


class PortBusy(KafkaLocalError):
    pass


class StartError(KafkaLocalError):
    """The broker exited or did not become reachable in time."""


# --------------------------------------------------------------------------
# paths and conventions


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 the OS considers free right now (bound together, so distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def repo_root() -> Path:
    """The checkout holding ``deploy/kafka/pom.xml``.

    The package's parent folder when running from a checkout (editable install
    or ``PYTHONPATH``); otherwise the current directory or one of its parents;
    otherwise the current directory (resolution will then report the missing
    pom clearly).
    """
    candidates = [_PACKAGE_DIR.parent, Path.cwd(), *Path.cwd().parents]
    for candidate in candidates:
        if (candidate / _POM_RELATIVE).is_file():
            return candidate
    return Path.cwd()


def default_pom() -> Path:
    return repo_root() / _POM_RELATIVE


def default_lib_dir() -> Path:
    env = os.environ.get(LIB_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return repo_root() / ".cache" / "kafka" / "lib"


def default_data_dir() -> Path:
    return repo_root() / ".cache" / "kafka" / "run"


def default_secure_data_dir() -> Path:
    """The secure broker's own folder (its storage is formatted with the admin's SCRAM credential)."""
    return repo_root() / ".cache" / "kafka" / "secure"


def external_bootstrap() -> str | None:
    """Bootstrap servers of an external broker named by ``SURVEIL_KAFKA_BOOTSTRAP``."""
    value = os.environ.get(BOOTSTRAP_ENV, "").strip()
    return value or None


def kafka_version(pom: Path | None = None) -> str:
    """The ``kafka.version`` property of the resolver pom."""
    pom = Path(pom) if pom else default_pom()
    if not pom.is_file():
        raise ResolveError(f"Kafka resolver pom not found: {pom}")
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise ResolveError(f"{pom} has no <kafka.version> property")
    return node.text.strip()


# --------------------------------------------------------------------------
# resolution


def _marker_ok(lib: Path, version: str) -> bool:
    jar = lib / f"kafka_2.13-{version}.jar"
    marker = lib / MARKER_NAME
    if not (jar.is_file() and marker.is_file()):
        return False
    try:
        content = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if content.get("kafka_version") != version:
        return False
    return all((lib / name).is_file() for name in content.get("jars", []))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def java_argfile(args: list[str]) -> Iterator[str]:
    """``@file`` for a ``java`` command line: ``args`` in a private (0600) file that is gone afterwards, so that a
    secret among them (a SCRAM password) is never on a command line (``ps``, /proc)."""
    with tempfile.TemporaryDirectory(prefix="surveil-java-") as tmp:
        path = Path(tmp) / "args"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in args) + "\n")
        yield f"@{path}"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` written as ``***`` (a tool's error output may echo its arguments)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def ensure_kafka_libs(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    pom: str | os.PathLike[str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """Make sure ``cache_dir`` holds Kafka's jars; return it.

    ``cache_dir`` defaults to ``$SURVEIL_KAFKA_LIB`` or ``<repo>/.cache/kafka/lib``.

    1. If the folder has the kafka_2.13 jar of the pom's version and the
       marker written after a complete copy, return at once (no Maven).
    2. Take a lock next to the folder (concurrent callers wait) and check again.
    3. Copy into a temporary sibling folder with
       ``mvn dependency:copy-dependencies``: offline first (a warm ``~/.m2``
       needs no network), then online.
    4. Write the marker (version and jar list), then swap the temporary folder
       into place, so a folder with a marker is always complete.
    """
    lib = Path(cache_dir).expanduser().resolve() if cache_dir else default_lib_dir()
    pom_path = Path(pom).expanduser().resolve() if pom else default_pom()
    version = kafka_version(pom_path)
    if _marker_ok(lib, version):
        return lib

    with _file_lock(lib.parent / f".{lib.name}.lock"):
        if _marker_ok(lib, version):
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise MavenNotFound(
                "Maven ('mvn') is not on PATH; it is needed once to download Kafka's jars "
                f"into {lib} (Debian: apt-get install maven). Alternatively set "
                f"{LIB_DIR_ENV} to a folder that already holds them."
            )
        tmp = lib.parent / f".{lib.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        base = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom_path),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
        ]
        output = ""
        for offline in (True, False):
            if echo and not offline:
                echo(f"Resolving Apache Kafka {version} from Maven Central into {lib} ...")
            cmd = base[:1] + ["-o"] + base[1:] if offline else base
            proc = subprocess.run(
                cmd,
                cwd=pom_path.parent,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            output = proc.stdout
            if proc.returncode == 0 and (tmp / f"kafka_2.13-{version}.jar").is_file():
                break
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise ResolveError(
                f"mvn could not resolve org.apache.kafka:kafka_2.13:{version} "
                f"(is Maven Central reachable?):\n{_tail(output)}"
            )
        jars = sorted(p.name for p in tmp.glob("*.jar"))
        (tmp / MARKER_NAME).write_text(json.dumps({"kafka_version": version, "jars": jars}, indent=1) + "\n")
        if lib.exists():
            shutil.rmtree(lib)
        os.replace(tmp, lib)
        return lib


def default_tools_dir() -> Path:
    return repo_root() / ".cache" / "kafka" / "tools"


def ensure_kafka_tools(
    tools_dir: str | os.PathLike[str] | None = None,
    *,
    pom: str | os.PathLike[str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """A folder holding Kafka's ``kafka-tools`` jar (``org.apache.kafka.tools.consumer.ConsoleConsumer``, which
    Kafka 3.9 no longer ships in its core jar), to put on the class path after the broker's jars:
    ``java -cp '<lib>/*:<tools>/*' org.apache.kafka.tools.consumer.ConsoleConsumer …``. The jar alone (its
    dependencies are the broker's): ``mvn dependency:copy``, offline first. Default ``<repo>/.cache/kafka/tools``."""
    tools = Path(tools_dir).expanduser().resolve() if tools_dir else default_tools_dir()
    version = kafka_version(Path(pom) if pom else None)
    jar = tools / f"kafka-tools-{version}.jar"
    if jar.is_file():
        return tools
    with _file_lock(tools.parent / f".{tools.name}.lock"):
        if jar.is_file():
            return tools
        mvn = shutil.which("mvn")
        if mvn is None:
            raise MavenNotFound(f"Maven ('mvn') is not on PATH; it is needed once to download kafka-tools into {tools}")
        tools.mkdir(parents=True, exist_ok=True)
        output = ""
        for offline in (True, False):
            if echo and not offline:
                echo(f"Resolving org.apache.kafka:kafka-tools:{version} from Maven Central into {tools} ...")
            cmd = [mvn, *(["-o"] if offline else []), "-q", "-B", "-Dstyle.color=never",
                   "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
                   f"-Dartifact=org.apache.kafka:kafka-tools:{version}", f"-DoutputDirectory={tools}"]
            proc = subprocess.run(cmd, cwd=tools, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
            output = proc.stdout
            if proc.returncode == 0 and jar.is_file():
                return tools
        raise ResolveError(f"mvn could not resolve org.apache.kafka:kafka-tools:{version} "
                           f"(is Maven Central reachable?):\n{_tail(output)}")


# --------------------------------------------------------------------------
# processes


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise JavaNotFound(
            "Java ('java') is not on PATH and JAVA_HOME is not set; Kafka 3.9 needs "
            "Java 11+ (Debian: apt-get install openjdk-17-jre-headless)."
        )
    return found


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie is not alive
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _cmdline(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except OSError:
        return None
    return out.split() if out.strip() else None


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    args = _cmdline(pid)
    if args is None:  # cannot tell; trust the pid file
        return True
    return "kafka.Kafka" in args and f"{_OWNER_FLAG}{data_dir}" in args


def _read_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / PID_NAME).read_text().strip())
    except (OSError, ValueError):
        return None


def _running_pid(data_dir: Path) -> int | None:
    """Pid of a live broker started from ``data_dir``; clears a stale pid file."""
    pid = _read_pid(data_dir)
    if pid is None:
        return None
    if _alive(pid) and _is_our_broker(pid, data_dir):
        return pid
    with contextlib.suppress(OSError):
        (data_dir / PID_NAME).unlink()
    return None


def _read_state(data_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((data_dir / STATE_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _port_busy(port: int, host: str = HOST) -> bool:
    # SO_REUSEADDR like the JVM's listener: a port in TIME_WAIT counts as free.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _log_tail(data_dir: Path, lines: int = 40) -> str:
    parts = []
    for path in (data_dir / "logs" / "server.log", data_dir / OUT_NAME):
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace")
            if text.strip():
                parts.append(f"--- last lines of {path} ---\n{_tail(text, lines)}")
    return "\n".join(parts) or f"(no log output in {data_dir})"


# --------------------------------------------------------------------------
# readiness probes


def _api_versions_ok(host: str, port: int, timeout: float = 2.0, ssl_context: Any = None) -> bool:
    """A bare Kafka ApiVersions v0 round trip (no client library needed); over TLS with ``ssl_context``
    (a SASL listener answers ApiVersions before authentication)."""
    client_id = b"surveil-kafka-local"
    correlation_id = 0x5EED
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
            if ssl_context is not None:
                sock = stack.enter_context(ssl_context.wrap_socket(sock, server_hostname=host))
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = b""
            while len(header) < 10:
                chunk = sock.recv(10 - len(header))
                if not chunk:
                    return False
                header += chunk
    except OSError:
        return False
    _size, corr, error_code = struct.unpack(">iih", header)
    return corr == correlation_id and error_code == 0


async def _describe_cluster(bootstrap: str, timeout: float, client: dict[str, Any] | None = None) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        **(client or {}),
        client_id="surveil-kafka-local-probe",
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout)
        return bool(cluster.get("brokers")) and cluster.get("controller_id", -1) >= 0
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), timeout)


def _run_async(factory: Callable[[], Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(max_workers=1) as pool:  # called from async code
        return pool.submit(lambda: asyncio.run(factory())).result()


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _client_ready(bootstrap: str, timeout: float = 5.0, client: dict[str, Any] | None = None) -> bool:
    """True when a Kafka client gets cluster metadata with a broker and a controller. ``client``: aiokafka's
    security arguments (a secure broker: TLS and the admin's SCRAM credentials)."""
    host, _, port = bootstrap.rpartition(":")
    if not _api_versions_ok(host, int(port), timeout=min(timeout, 2.0),
                            ssl_context=(client or {}).get("ssl_context")):
        return False
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        return True  # ApiVersions answered: the broker processes requests
    with _quiet_logger("aiokafka"):
        return bool(_run_async(lambda: _describe_cluster(bootstrap, timeout, client)))


# --------------------------------------------------------------------------
# configuration


def _prop(value: object) -> str:
    return str(value).replace("\\", "\\\\")


def _server_properties(data_dir: Path, port: int, controller_port: int, secure: SecureFiles | None = None) -> str:
    settings: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": data_dir / "data",
        "num.partitions": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        # The cleaner's dedupe buffer defaults to 128 MiB of heap; compacted
        # (alert) topics are tiny here and the heap is small.
        "log.cleaner.dedupe.buffer.size": 8 * 1024 * 1024,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
    }
    if secure is not None:
        settings.update(listeners=f"SASL_SSL://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
                        **{"advertised.listeners": f"SASL_SSL://{HOST}:{port}"})
        settings.update(_secure_properties(data_dir, secure))
    lines = [
        "# Written by surveil.kafka_local; rewritten on every start.",
        *(f"{key}={_prop(value)}" for key, value in settings.items()),
    ]
    return "\n".join(lines) + "\n"


def _log4j_properties(logs: Path) -> str:
    def appender(name: str, filename: str) -> list[str]:
        prefix = f"log4j.appender.{name}"
        return [
            f"{prefix}=org.apache.log4j.RollingFileAppender",
            f"{prefix}.File={_prop(logs / filename)}",
            f"{prefix}.MaxFileSize=20MB",
            f"{prefix}.MaxBackupIndex=2",
            f"{prefix}.layout=org.apache.log4j.PatternLayout",
            f"{prefix}.layout.ConversionPattern=[%d] %p %m (%c)%n",
        ]

    lines = [
        "# Written by surveil.kafka_local; rewritten on every start.",
        "log4j.rootLogger=INFO, server",
        *appender("server", "server.log"),
        *appender("controller", "controller.log"),
        *appender("stateChange", "state-change.log"),
        *appender("cleaner", "log-cleaner.log"),
        "log4j.logger.org.apache.kafka.controller=INFO, controller",
        "log4j.additivity.org.apache.kafka.controller=false",
        "log4j.logger.kafka.controller=INFO, controller",
        "log4j.additivity.kafka.controller=false",
        "log4j.logger.state.change.logger=INFO, stateChange",
        "log4j.additivity.state.change.logger=false",
        "log4j.logger.kafka.log.LogCleaner=INFO, cleaner",
        "log4j.additivity.kafka.log.LogCleaner=false",
        "log4j.logger.kafka.request.logger=WARN",
        "log4j.logger.kafka.network.RequestChannel$=WARN",
        "log4j.logger.org.apache.zookeeper=WARN",
    ]
    return "\n".join(lines) + "\n"


def _cluster_id() -> str:
    # Kafka's Uuid.randomUuid().toString(): URL-safe base64 without padding;
    # Kafka also avoids ids starting with '-' (they look like CLI options).
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG



# --------------------------------------------------------------------------
# the secure broker (``start(secure=True)``, ``surveil kafka start --secure``)
#
# One SASL_SSL listener for clients and for the broker itself (SCRAM-SHA-512 over TLS), the controller
# listener on SASL_PLAINTEXT with PLAIN (KRaft keeps SCRAM credentials in its metadata, which the controller
# cannot need to read before it runs; loopback only), KRaft's StandardAuthorizer with
# allow.everyone.if.no.acl.found=false, and one super user, ``admin``, whose SCRAM credential is written at
# format time (``StorageTool format --add-scram``): every other principal gets its credential and ACLs from
# ``surveil acl apply``. The TLS material is generated once per data folder (Python's ``cryptography``): a
# CA, a broker certificate for 127.0.0.1 and localhost signed by it, and for clients the CA as PEM (Python,
# ``SURVEIL_SSL_CAFILE``) and as a PKCS12 truststore (Java clients: ``ssl.truststore.type=PKCS12``; made by
# the JDK's keytool, which marks the CA as trusted as Java wants).

ADMIN_USER = "admin"
SCRAM_MECHANISM = "SCRAM-SHA-512"
SECURE_NAME = "secure.json"
TLS_DIR_NAME = "tls"
CA_NAME = "ca.pem"
TRUSTSTORE_NAME = "truststore.p12"
KEYSTORE_NAME = "broker.p12"
ADMIN_CONFIG_NAME = "admin.properties"
CERT_DAYS = 825


@dataclass(frozen=True)
class SecureFiles:
    """What a client of a secure local broker needs (all under ``<data dir>``; secrets in 0600 files)."""

    ca_file: Path  # the CA certificate, PEM: Python clients (SURVEIL_SSL_CAFILE)
    truststore: Path  # the same CA as a PKCS12 truststore: Java clients
    truststore_password: str = field(repr=False)
    admin_user: str
    admin_password: str = field(repr=False)
    admin_config: Path  # Kafka client properties of the admin (Kafka's tools: --command-config)

    def admin_kwargs(self) -> dict[str, Any]:
        """aiokafka's connection arguments for the admin (without bootstrap_servers)."""
        from aiokafka.helpers import create_ssl_context

        return {"security_protocol": "SASL_SSL", "sasl_mechanism": SCRAM_MECHANISM,
                "sasl_plain_username": self.admin_user, "sasl_plain_password": self.admin_password,
                "ssl_context": create_ssl_context(cafile=str(self.ca_file))}


def _write_private(path: Path, data: bytes | str) -> None:
    """Write a file readable by its owner only (created so, never world-readable for a moment)."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
    os.chmod(path, 0o600)


def _jaas_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _keytool() -> str:
    candidate = Path(_java()).resolve().parent / "keytool"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("keytool")
    if found is None:
        raise JavaNotFound("keytool (part of every Java installation) was not found next to java nor on PATH")
    return found


def _make_tls(tls: Path, keystore_password: str, truststore_password: str) -> None:
    """A CA and a broker certificate (127.0.0.1, localhost) signed by it, as files for Kafka and its clients."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=CERT_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "surveil development CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    # PBES1 3DES/SHA1: the PKCS12 encryption every Java reads
    enc = (serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(50_000)
           .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(hashes.SHA1())
           .build(keystore_password.encode()))
    tls.mkdir(parents=True, exist_ok=True)
    _write_private(tls / KEYSTORE_NAME, pkcs12.serialize_key_and_certificates(b"broker", key, cert, [ca], enc))
    (tls / CA_NAME).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    truststore = tls / TRUSTSTORE_NAME
    with contextlib.suppress(FileNotFoundError):
        truststore.unlink()
    made = subprocess.run([_keytool(), "-importcert", "-noprompt", "-alias", "surveil-ca", "-file",
                           str(tls / CA_NAME), "-keystore", str(truststore), "-storetype", "PKCS12",
                           "-storepass:env", "SURVEIL_TRUSTSTORE_PASSWORD"],
                          env={**os.environ, "SURVEIL_TRUSTSTORE_PASSWORD": truststore_password},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if made.returncode != 0:
        raise StartError(f"keytool could not write the truststore {truststore}:\n{_tail(made.stdout + made.stderr)}")


def client_properties(secure: SecureFiles, username: str, password: str) -> str:
    """Kafka client properties (Java clients, Kafka's tools) for ``username`` on a secure broker."""
    return "\n".join([
        "security.protocol=SASL_SSL",
        f"sasl.mechanism={SCRAM_MECHANISM}",
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{_jaas_quote(username)}" password="{_jaas_quote(password)}";',
        "ssl.truststore.type=PKCS12",
        f"ssl.truststore.location={_prop(secure.truststore)}",
        f"ssl.truststore.password={_prop(secure.truststore_password)}",
    ]) + "\n"


def secure_files(data_dir: str | os.PathLike[str] | None = None, *, create: bool = False) -> SecureFiles:
    """The TLS files and admin credentials of the secure broker of ``data_dir``; ``create``: make them
    (once: later calls reuse them). A folder without them is an error naming it."""
    data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_secure_data_dir()
    tls = data_dir / TLS_DIR_NAME
    path = data_dir / SECURE_NAME
    try:
        secrets_ = json.loads(path.read_text())
    except FileNotFoundError:
        if not create:
            raise KafkaLocalError(f"{data_dir} holds no secure broker (no {SECURE_NAME}; start one with "
                                  "surveil kafka start --secure)") from None
        import secrets

        secrets_ = {"admin_password": secrets.token_urlsafe(24), "keystore_password": secrets.token_urlsafe(24),
                    "truststore_password": secrets.token_urlsafe(12)}
        data_dir.mkdir(parents=True, exist_ok=True)
        _make_tls(tls, secrets_["keystore_password"], secrets_["truststore_password"])
        _write_private(path, json.dumps(secrets_, indent=1) + "\n")
    except (OSError, ValueError) as exc:
        raise KafkaLocalError(f"cannot read {path}: {exc}") from None
    files = SecureFiles(ca_file=tls / CA_NAME, truststore=tls / TRUSTSTORE_NAME,
                        truststore_password=secrets_["truststore_password"], admin_user=ADMIN_USER,
                        admin_password=secrets_["admin_password"], admin_config=data_dir / ADMIN_CONFIG_NAME)
    if create or not files.admin_config.is_file():
        _write_private(files.admin_config, client_properties(files, ADMIN_USER, files.admin_password))
    return files


def _secure_properties(data_dir: Path, files: SecureFiles) -> dict[str, object]:
    keystore_password = json.loads((data_dir / SECURE_NAME).read_text())["keystore_password"]
    admin, pw = _jaas_quote(files.admin_user), _jaas_quote(files.admin_password)
    return {
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{admin}" password="{pw}";',
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{admin}" '
            f'password="{pw}" user_{admin}="{pw}";',
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": files.ca_file.parent / KEYSTORE_NAME,
        "ssl.keystore.password": keystore_password,
        "ssl.key.password": keystore_password,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": files.ca_file,
        "ssl.client.auth": "none",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{files.admin_user}",
        # topics are created by those allowed to (the worker), never on a reader's first use
        "auto.create.topics.enable": "false",
    }


# --------------------------------------------------------------------------
# public API


@dataclass(frozen=True)
class BrokerInfo:
    bootstrap: str
    pid: int
    port: int
    controller_port: int
    data_dir: str
    log_file: str
    already_running: bool = False
    secure: SecureFiles | None = None  # the TLS files and admin credentials of a secure broker


def _info(data_dir: Path, pid: int, port: int, controller_port: int, already: bool,
          secure: SecureFiles | None = None) -> BrokerInfo:
    return BrokerInfo(
        bootstrap=f"{HOST}:{port}",
        pid=pid,
        port=port,
        controller_port=controller_port,
        data_dir=str(data_dir),
        log_file=str(data_dir / "logs" / "server.log"),
        already_running=already,
        secure=secure,
    )


def _wait_ready(data_dir: Path, pid: int, bootstrap: str, timeout: float, secure: SecureFiles | None = None) -> None:
    client = secure.admin_kwargs() if secure is not None else None
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(pid):
            raise StartError(f"Kafka (pid {pid}) exited during start-up.\n{_log_tail(data_dir)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StartError(
                f"Kafka (pid {pid}) did not accept clients at {bootstrap} within "
                f"{timeout:.0f} s.\n{_log_tail(data_dir)}"
            )
        if _client_ready(bootstrap, timeout=max(1.0, min(5.0, remaining)), client=client):
            return
        time.sleep(0.3)


def start(
    data_dir: str | os.PathLike[str] | None = None,
    port: int | None = None,
    controller_port: int | None = None,
    heap: str = DEFAULT_HEAP,
    *,
    lib_dir: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_START_TIMEOUT,
    die_with_parent: bool = False,
    echo: Callable[[str], None] | None = None,
    secure: bool = False,
) -> BrokerInfo:
    """Start a single-node KRaft broker on loopback and wait until clients connect.

    1. Idempotence: if a broker started from ``data_dir`` is alive with the same
       ports, wait for it to be ready and return it (``already_running``).
    2. Check java, resolve the jars (:func:`ensure_kafka_libs`), check the ports.
    3. Write ``server.properties`` and ``log4j.properties``.
    4. Format the storage once (``kafka.tools.StorageTool format``), only when
       ``data/meta.properties`` does not exist yet.
    5. Launch ``java -cp '<lib>/*' kafka.Kafka server.properties`` in its own
       session, output to ``kafka.out``, pid to ``kafka.pid``.
    6. Wait until a Kafka client gets cluster metadata (``timeout`` seconds);
       on failure stop the process and raise :class:`StartError` with the log
       tail.

    ``die_with_parent`` (Linux) makes the broker receive SIGTERM when the
    calling thread's process dies (``PR_SET_PDEATHSIG``; call it from a
    long-lived thread), which tests use so that a killed pytest does not leave
    a broker behind.  Without it the broker outlives the caller, as the CLI
    needs.

    ``secure``: SASL_SSL with SCRAM-SHA-512, TLS and the StandardAuthorizer (see :func:`secure_files`;
    default folder ``.cache/kafka/secure``). A folder keeps the kind of broker it was formatted for.
    """
    default = default_secure_data_dir() if secure else default_data_dir()
    data_dir = Path(data_dir).expanduser().resolve() if data_dir else default
    if port is None:
        port = DEFAULT_SECURE_PORT if secure else DEFAULT_PORT
    if controller_port is None:
        controller_port = DEFAULT_SECURE_CONTROLLER_PORT if secure else DEFAULT_CONTROLLER_PORT
    if port == controller_port:
        raise PortBusy(f"--port and --controller-port must differ (both {port})")
    if not re.fullmatch(r"\d+[kKmMgG]?", heap):
        raise KafkaLocalError(f"invalid heap size {heap!r} (examples: 512m, 1g)")
    bootstrap = f"{HOST}:{port}"
    data_dir.mkdir(parents=True, exist_ok=True)

    with _file_lock(data_dir / ".lock"):
        pid = _running_pid(data_dir)
        if pid is not None:
            state = _read_state(data_dir)
            if bool(state.get("secure")) != secure:
                raise KafkaLocalError(f"the broker running from {data_dir} is {'' if state.get('secure') else 'not '}"
                                      "secure; stop it first, or use another --dir")
            if state.get("port") == port and state.get("controller_port") == controller_port:
                files = secure_files(data_dir) if secure else None
                _wait_ready(data_dir, pid, bootstrap, timeout, files)
                return _info(data_dir, pid, port, controller_port, already=True, secure=files)
            raise PortBusy(
                f"a broker from {data_dir} is already running (pid {pid}, bootstrap "
                f"{state.get('bootstrap', '?')}, controller port "
                f"{state.get('controller_port', '?')}); stop it first to change ports"
            )

        java = _java()
        lib = ensure_kafka_libs(lib_dir, echo=echo)
        for p, what in ((port, "--port"), (controller_port, "--controller-port")):
            if _port_busy(p):
                raise PortBusy(
                    f"port {p} on {HOST} ({what}) is already in use by another process; "
                    f"choose another port or stop that process"
                )

        logs = data_dir / "logs"
        logs.mkdir(exist_ok=True)
        (data_dir / "data").mkdir(exist_ok=True)
        props = data_dir / "server.properties"
        log4j = data_dir / "log4j.properties"
        formatted = (data_dir / "data" / "meta.properties").is_file()
        if formatted and bool(_read_state(data_dir).get("secure")) != secure:
            kind = "a secure" if secure else "a plaintext"
            raise KafkaLocalError(f"{data_dir} was formatted for {'a plaintext' if secure else 'a secure'} broker; "
                                  f"use another --dir for {kind} one (or delete the folder)")
        files = secure_files(data_dir, create=True) if secure else None
        _write_private(props, _server_properties(data_dir, port, controller_port, files))
        log4j.write_text(_log4j_properties(logs))
        classpath = f"{lib}{os.sep}*"
        log4j_opt = f"-Dlog4j.configuration={log4j.as_uri()}"

        state = _read_state(data_dir)
        if not (data_dir / "data" / "meta.properties").is_file():
            cluster_id = _cluster_id()
            tool = ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                    # the super user's SCRAM credential (KRaft: written into the metadata at format time)
                    *(["--add-scram", f"{SCRAM_MECHANISM}=[name={files.admin_user},password={files.admin_password}]"]
                      if files else [])]
            with java_argfile(tool) as argfile:  # the password never on the command line
                fmt = subprocess.run([java, "-Xmx256m", log4j_opt, "-cp", classpath, argfile], cwd=data_dir,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
            if fmt.returncode != 0:
                out = redact(fmt.stdout, [files.admin_password] if files else [])
                raise StartError(f"formatting {data_dir / 'data'} failed:\n{_tail(out)}")
            state["cluster_id"] = cluster_id

        cmd = [
            java,
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            log4j_opt,
            f"-Dkafka.logs.dir={logs}",
            f"{_OWNER_FLAG}{data_dir}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(props),
        ]
        if echo:
            echo(f"Starting Kafka on {bootstrap} (data in {data_dir}) ...")
        with open(data_dir / OUT_NAME, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if die_with_parent and sys.platform == "linux" else None,
            )
        _CHILDREN[proc.pid] = proc
        (data_dir / PID_NAME).write_text(f"{proc.pid}\n")
        state.update(
            pid=proc.pid,
            port=port,
            controller_port=controller_port,
            bootstrap=bootstrap,
            heap=heap,
            lib_dir=str(lib),
            started_at=time.time(),
            secure=secure,
        )
        (data_dir / STATE_NAME).write_text(json.dumps(state, indent=1) + "\n")

        try:
            _wait_ready(data_dir, proc.pid, bootstrap, timeout, files)
        except StartError as exc:
            _terminate(data_dir, proc.pid, 10.0)
            raise StartError(f"{exc}\nKafka did not become ready (process stopped); full logs in {logs}") from None
        return _info(data_dir, proc.pid, port, controller_port, already=False, secure=files)


def _terminate(data_dir: Path, pid: int, timeout: float) -> bool:
    """SIGTERM, wait ``timeout`` seconds, then SIGKILL. True if it had to kill."""
    killed = False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    _CHILDREN.pop(pid, None)
    with contextlib.suppress(OSError):
        (data_dir / PID_NAME).unlink()
    return killed


def stop(
    data_dir: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_STOP_TIMEOUT,
) -> dict[str, Any]:
    """Stop the broker started from ``data_dir``: SIGTERM, up to ``timeout`` s, SIGKILL.

    Returns ``{"was_running": bool, "pid": int | None, "killed": bool}``.
    Stopping a broker that is not running is not an error.
    """
    data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
    pid = _running_pid(data_dir)
    if pid is None:
        return {"was_running": False, "pid": None, "killed": False}
    killed = _terminate(data_dir, pid, timeout)
    return {"was_running": True, "pid": pid, "killed": killed}


def _status_tls(data_dir: Path, state: dict[str, Any]) -> Any:
    if not state.get("secure"):
        return None
    import ssl

    return ssl.create_default_context(cafile=str(data_dir / TLS_DIR_NAME / CA_NAME))


def status(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``running``, ``pid``, ``bootstrap``, ports, ``ready`` (answers ApiVersions), paths."""
    data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
    pid = _running_pid(data_dir)
    state = _read_state(data_dir)
    running = pid is not None
    port = state.get("port") if running else None
    return {
        "running": running,
        "pid": pid,
        "bootstrap": state.get("bootstrap") if running else None,
        "port": port,
        "controller_port": state.get("controller_port") if running else None,
        "ready": bool(running and port and _api_versions_ok(HOST, int(port), ssl_context=_status_tls(data_dir, state))),
        "secure": bool(state.get("secure")) if running else None,
        "data_dir": str(data_dir),
        "log_file": str(data_dir / "logs" / "server.log"),
    }


# --------------------------------------------------------------------------
# command line


def _err(message: str) -> None:
    click.echo(message, err=True)


def _fail(exc: KafkaLocalError) -> None:
    _err(f"error: {exc}")
    raise SystemExit(1)


_dir_option = click.option(
    "--dir",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    show_default=".cache/kafka/run under the repository",
    help="Data folder of the broker.",
)


@click.group(name="kafka")
def kafka() -> None:
    """A local single-node Apache Kafka (KRaft) for development and tests."""


@kafka.command()
@click.option(
    "--lib-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Jar folder (default ${LIB_DIR_ENV} or .cache/kafka/lib).",
)
def resolve(lib_dir: Path | None) -> None:
    """Download Kafka's jars once (Maven), and kafka-tools (the console consumer); print the jar folder."""
    try:
        lib = ensure_kafka_libs(lib_dir, echo=_err)
        tools = ensure_kafka_tools(echo=_err)
    except KafkaLocalError as exc:
        _fail(exc)
    _err(f"kafka-tools (ConsoleConsumer) in {tools}")
    click.echo(str(lib))


@kafka.command(name="start")
@_dir_option
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help=f"Client port [default: {DEFAULT_PORT}; {DEFAULT_SECURE_PORT} with --secure].")
@click.option("--controller-port", type=click.IntRange(1, 65535), default=None,
              help=f"[default: {DEFAULT_CONTROLLER_PORT}; {DEFAULT_SECURE_CONTROLLER_PORT} with --secure]")
@click.option("--heap", default=DEFAULT_HEAP, show_default=True, help="JVM -Xmx.")
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_START_TIMEOUT,
    show_default=True,
    help="Seconds to wait until clients can connect.",
)
@click.option("--lib-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--secure", is_flag=True, help="SASL_SSL (SCRAM-SHA-512, TLS) and ACLs enforced; default folder "
              ".cache/kafka/secure. Principals and ACLs: surveil acl apply.")
def start_command(
    data_dir: Path | None, port: int, controller_port: int, heap: str, timeout: float, lib_dir: Path | None,
    secure: bool,
) -> None:
    """Start the broker (idempotent); print its bootstrap servers on stdout."""
    try:
        info = start(data_dir, port, controller_port, heap, lib_dir=lib_dir, timeout=timeout, echo=_err,
                     secure=secure)
    except KafkaLocalError as exc:
        _fail(exc)
    verb = "already running" if info.already_running else "started"
    _err(f"Kafka {verb}: pid {info.pid}, logs in {info.log_file}")
    if info.secure is not None:
        f = info.secure
        _err(f"SASL_SSL with {SCRAM_MECHANISM}; ACLs enforced (super user {f.admin_user}).\n"
             f"  CA (Python clients, SURVEIL_SSL_CAFILE): {f.ca_file}\n"
             f"  truststore (Java clients, PKCS12):       {f.truststore} (password in {info.data_dir}/{SECURE_NAME})\n"
             f"  admin client properties:                 {f.admin_config}\n"
             f"Next: surveil acl apply --brokers principals.toml")
    click.echo(info.bootstrap)


@kafka.command(name="stop")
@_dir_option
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_STOP_TIMEOUT,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL.",
)
def stop_command(data_dir: Path | None, timeout: float) -> None:
    """Stop the broker (SIGTERM, then SIGKILL after --timeout)."""
    result = stop(data_dir, timeout)
    if not result["was_running"]:
        _err("Kafka is not running.")
    elif result["killed"]:
        _err(f"Kafka (pid {result['pid']}) did not stop in {timeout:.0f} s; killed.")
    else:
        _err(f"Kafka (pid {result['pid']}) stopped.")


@kafka.command(name="status")
@_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(data_dir: Path | None, as_json: bool) -> None:
    """Report running/pid/bootstrap; exit status 3 when not running."""
    st = status(data_dir)
    if as_json:
        click.echo(json.dumps(st, indent=1))
    elif st["running"]:
        ready = "ready" if st["ready"] else "not answering yet"
        click.echo(f"running pid={st['pid']} bootstrap={st['bootstrap']} ({ready})")
    else:
        click.echo(f"not running (data folder {st['data_dir']})")
    if not st["running"]:
        raise SystemExit(3)


if __name__ == "__main__":
    kafka(prog_name="python -m surveil.kafka_local")
