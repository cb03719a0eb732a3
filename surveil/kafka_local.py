"""A local, single-node Apache Kafka (KRaft) for development and tests.

No Docker here: Kafka's jars are resolved from Maven Central with the tiny
Maven project in ``deploy/kafka/pom.xml`` into a git-ignored cache folder, and
the broker runs as ``java -cp '<lib>/*' kafka.Kafka server.properties`` in
KRaft combined mode (broker and controller in one process) on loopback.

Command line (also mounted as ``surveil kafka ...`` where the main CLI adds
the :data:`kafka` group)::

    python -m surveil.kafka_local resolve          # jars into .cache/kafka/lib
    python -m surveil.kafka_local start            # prints 127.0.0.1:19092
    python -m surveil.kafka_local status
    python -m surveil.kafka_local stop

``start`` prints the bootstrap servers on stdout and everything else on
stderr, so ``export SURVEIL_KAFKA_BOOTSTRAP=$(python -m surveil.kafka_local
start)`` works.

Convention for tests: when the environment variable ``SURVEIL_KAFKA_BOOTSTRAP``
(:data:`BOOTSTRAP_ENV`) is set, tests use that external broker instead of
starting one (see :func:`external_bootstrap`).

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
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


def _api_versions_ok(host: str, port: int, timeout: float = 2.0) -> bool:
    """A bare Kafka ApiVersions v0 round trip (no client library needed)."""
    client_id = b"surveil-kafka-local"
    correlation_id = 0x5EED
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
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


async def _describe_cluster(bootstrap: str, timeout: float) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
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


def _client_ready(bootstrap: str, timeout: float = 5.0) -> bool:
    """True when a Kafka client gets cluster metadata with a broker and a controller."""
    host, _, port = bootstrap.rpartition(":")
    if not _api_versions_ok(host, int(port), timeout=min(timeout, 2.0)):
        return False
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        return True  # ApiVersions answered: the broker processes requests
    with _quiet_logger("aiokafka"):
        return bool(_run_async(lambda: _describe_cluster(bootstrap, timeout)))


# --------------------------------------------------------------------------
# configuration


def _prop(value: object) -> str:
    return str(value).replace("\\", "\\\\")


def _server_properties(data_dir: Path, port: int, controller_port: int) -> str:
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


def _info(data_dir: Path, pid: int, port: int, controller_port: int, already: bool) -> BrokerInfo:
    return BrokerInfo(
        bootstrap=f"{HOST}:{port}",
        pid=pid,
        port=port,
        controller_port=controller_port,
        data_dir=str(data_dir),
        log_file=str(data_dir / "logs" / "server.log"),
        already_running=already,
    )


def _wait_ready(data_dir: Path, pid: int, bootstrap: str, timeout: float) -> None:
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
        if _client_ready(bootstrap, timeout=max(1.0, min(5.0, remaining))):
            return
        time.sleep(0.3)


def start(
    data_dir: str | os.PathLike[str] | None = None,
    port: int = DEFAULT_PORT,
    controller_port: int = DEFAULT_CONTROLLER_PORT,
    heap: str = DEFAULT_HEAP,
    *,
    lib_dir: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_START_TIMEOUT,
    die_with_parent: bool = False,
    echo: Callable[[str], None] | None = None,
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
    """
    data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
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
            if state.get("port") == port and state.get("controller_port") == controller_port:
                _wait_ready(data_dir, pid, bootstrap, timeout)
                return _info(data_dir, pid, port, controller_port, already=True)
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
        props.write_text(_server_properties(data_dir, port, controller_port))
        log4j.write_text(_log4j_properties(logs))
        classpath = f"{lib}{os.sep}*"
        log4j_opt = f"-Dlog4j.configuration={log4j.as_uri()}"

        state = _read_state(data_dir)
        if not (data_dir / "data" / "meta.properties").is_file():
            cluster_id = _cluster_id()
            fmt = subprocess.run(
                [
                    java,
                    "-Xmx256m",
                    log4j_opt,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                ],
                cwd=data_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            if fmt.returncode != 0:
                raise StartError(f"formatting {data_dir / 'data'} failed:\n{_tail(fmt.stdout)}")
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
        )
        (data_dir / STATE_NAME).write_text(json.dumps(state, indent=1) + "\n")

        try:
            _wait_ready(data_dir, proc.pid, bootstrap, timeout)
        except StartError as exc:
            _terminate(data_dir, proc.pid, 10.0)
            raise StartError(f"{exc}\nKafka did not become ready (process stopped); full logs in {logs}") from None
        return _info(data_dir, proc.pid, port, controller_port, already=False)


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
        "ready": bool(running and port and _api_versions_ok(HOST, int(port))),
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
    """Download Kafka's jars once (Maven); print the jar folder."""
    try:
        lib = ensure_kafka_libs(lib_dir, echo=_err)
    except KafkaLocalError as exc:
        _fail(exc)
    click.echo(str(lib))


@kafka.command(name="start")
@_dir_option
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--controller-port", type=click.IntRange(1, 65535), default=DEFAULT_CONTROLLER_PORT, show_default=True)
@click.option("--heap", default=DEFAULT_HEAP, show_default=True, help="JVM -Xmx.")
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_START_TIMEOUT,
    show_default=True,
    help="Seconds to wait until clients can connect.",
)
@click.option("--lib-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def start_command(
    data_dir: Path | None, port: int, controller_port: int, heap: str, timeout: float, lib_dir: Path | None
) -> None:
    """Start the broker (idempotent); print its bootstrap servers on stdout."""
    try:
        info = start(data_dir, port, controller_port, heap, lib_dir=lib_dir, timeout=timeout, echo=_err)
    except KafkaLocalError as exc:
        _fail(exc)
    verb = "already running" if info.already_running else "started"
    _err(f"Kafka {verb}: pid {info.pid}, logs in {info.log_file}")
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
