"""Principals and ACLs on a secure Kafka: member firms see only their own alerts (issue #18).

``surveil acl apply --brokers FILE`` creates the SCRAM users a file names and gives each one exactly the
ACLs of its role; ``surveil acl show`` prints the ACLs the cluster holds. The layout (:func:`layout`), with
the topic names of the ``SURVEIL_*`` settings (:class:`~surveil.stream.settings.Settings`):

==========  =============================================================================================
role        what it may do
==========  =============================================================================================
``worker``  READ the feed, owner, security, reference (accounts, securities), checkpoint, alerts and
            recommendations topics; WRITE the owner, security, alerts, recommendations, rejects, checkpoint
            and reference topics (it seeds reference data from ``--accounts``/``--securities``); CREATE
            those topics (it creates missing ones at start); CREATE and WRITE the topics under the broker
            topic prefix (PREFIXED: it creates a member firm's topic when the firm appears); READ its
            consumer group (``SURVEIL_GROUP_ID``). Nothing else.
``feed``    WRITE and CREATE the feed topics.
``desk``    READ the alerts and recommendations topics and every broker topic (PREFIXED on the broker
            topic prefix); READ the consumer groups named ``surveil.desk.*`` (PREFIXED).
``broker``  a member firm: READ its own ``<prefix><id>`` topic and its own consumer group of the same name,
            both LITERAL (never a prefix: ``B1`` must not read ``B10``'s topic). Nothing else.
==========  =============================================================================================

Nobody but the worker writes the alert topics; READ and WRITE imply DESCRIBE in Kafka, so listing and
offsets need nothing more. The brokers' own super user (``super.users``) applies the layout.

**Why Kafka's own tools.** aiokafka's admin client has no call for ACLs nor for SCRAM credentials
(``AlterUserScramCredentials``), so this module drives the tools that ship in Kafka's jars, through their
documented command lines: ``kafka.admin.AclCommand`` (``kafka-acls.sh``) and ``kafka.admin.ConfigCommand``
(``kafka-configs.sh``), as ``java -cp '<lib>/*' …`` with the admin's client properties
(``--command-config``). Their arguments go through a private Java ``@argfile``, so no password appears on
a command line (``ps``); ConfigCommand's ``--add-config-file`` cannot be used: it rejects SCRAM credentials.

**The brokers FILE** is TOML, one ``[[principal]]`` table per principal::

    [[principal]]
    name = "surveil-worker"      # the SCRAM user name: letters, digits, . _ - (at most 64)
    role = "worker"              # worker, feed, desk or broker
    password_env = "SURVEIL_WORKER_PASSWORD"   # the password: an environment variable ...

    [[principal]]
    name = "firm-b007"
    role = "broker"
    broker = "B007"              # the member firm's broker id, as in reference data (role broker only)
    password_file = "secrets/firm-b007"        # ... or a file (relative to this file; one line)

A password is never printed. A bad file is an :class:`AclError` naming the file, the principal's number
and name, the field and its value.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import click

from surveil import kafka_local
from surveil.exceptions import SurveilError
from surveil.stream.settings import Settings

ROLES = ("worker", "feed", "desk", "broker")
SCRAM_MECHANISM = "SCRAM-SHA-512"
#: the consumer groups the desk may use (PREFIXED)
DESK_GROUP_PREFIX = "surveil.desk."
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# ConfigCommand splits its value on ',' and brackets; quotes and backslashes would need escaping in JAAS
_PASSWORD_BAD = set(',[]"\\\'') | {chr(c) for c in range(33)} | {chr(127)}
_FIELDS = {"name", "role", "broker", "password_env", "password_file"}


class AclError(SurveilError):
    """A bad brokers file, or Kafka's tools refused something (the message says what)."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    broker: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule for any host: ``principal`` (a user name) may ``operation`` the resource."""

    principal: str
    resource: str  # TOPIC, GROUP
    name: str
    pattern: str  # LITERAL, PREFIXED
    operation: str  # READ, WRITE, CREATE, DESCRIBE, ...

    def __str__(self) -> str:
        return f"User:{self.principal} {self.operation} {self.resource} {self.name} ({self.pattern})"


# --------------------------------------------------------------------------------------------------
# the file


def load_principals(path: str | os.PathLike[str], env: Mapping[str, str] | None = None,
                    settings: Settings | None = None) -> list[Principal]:
    """The principals of a brokers file (see the module's docstring), passwords read. ``settings`` check that
    a member firm's id names a topic."""
    env = os.environ if env is None else env
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as e:
        raise AclError(f"{path}: cannot read it: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise AclError(f"{path}: not valid TOML: {e}") from None
    extra = sorted(set(doc) - {"principal"})
    if extra:
        raise AclError(f"{path}: unknown table or key {extra[0]!r}: expected only [[principal]] tables")
    rows = doc.get("principal")
    if not isinstance(rows, list) or not rows:
        raise AclError(f"{path}: no [[principal]] table")
    out: list[Principal] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, 1):
        def bad(fld: str, value: object, why: str, i: int = i, row: dict = row) -> AclError:
            who = f" ({row.get('name')!r})" if isinstance(row.get("name"), str) else ""
            return AclError(f"{path}: principal {i}{who}: {fld}={value!r}: {why}")

        unknown = sorted(set(row) - _FIELDS)
        if unknown:
            raise bad(unknown[0], row[unknown[0]], f"unknown field (expected {', '.join(sorted(_FIELDS))})")
        name = row.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise bad("name", name, "expected 1 to 64 letters, digits, '.', '_' or '-'")
        if name in seen:
            raise bad("name", name, f"given twice (also principal {seen[name]})")
        seen[name] = i
        role = row.get("role")
        if role not in ROLES:
            raise bad("role", role, f"expected one of {', '.join(ROLES)}")
        broker = row.get("broker", "")
        if role == "broker":
            if not isinstance(broker, str) or not broker:
                raise bad("broker", broker or None, "a member firm needs its broker id")
            if settings is not None:
                try:
                    settings.broker_topic(broker)
                except ValueError as e:
                    raise bad("broker", broker, str(e)) from None
        elif "broker" in row:
            raise bad("broker", broker, f"only a principal of role broker has a broker id (this one is {role})")
        out.append(Principal(name, role, broker, _password(row, path, env, bad)))
    return out


def _password(row: dict, path: Path, env: Mapping[str, str], bad: Callable[..., AclError]) -> str:
    has_env, has_file = "password_env" in row, "password_file" in row
    if has_env == has_file:
        raise bad("password_env/password_file", None, "give exactly one of them")
    if has_env:
        var = row["password_env"]
        if not isinstance(var, str) or not var:
            raise bad("password_env", var, "expected the name of an environment variable")
        if not env.get(var):
            raise bad("password_env", var, "this environment variable is not set or empty")
        password, where = env[var], f"${var}"
    else:
        name = row["password_file"]
        if not isinstance(name, str) or not name:
            raise bad("password_file", name, "expected a file name")
        file = Path(name) if Path(name).is_absolute() else path.parent / name
        try:
            password = file.read_text(encoding="utf-8").strip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise bad("password_file", name, f"cannot read it ({getattr(e, 'strerror', None) or e})") from None
        where = str(file)
    # the password itself is never printed: only where it came from and what is wrong with it
    if len(password) < 8:
        raise bad("password", where, "the password is shorter than 8 characters")
    if any(c in _PASSWORD_BAD for c in password):
        raise bad("password", where, "the password may not contain spaces, control characters or , [ ] \" ' \\")
    return password


# --------------------------------------------------------------------------------------------------
# the layout


def member_group(settings: Settings, broker: str) -> str:
    """A member firm's own consumer group: named like its topic."""
    return settings.broker_topic(broker)


def layout(principals: Iterable[Principal], s: Settings) -> set[Acl]:
    """Every ACL the principals get (see the module's docstring)."""
    out: set[Acl] = set()

    def allow(who: str, resource: str, names: Iterable[str], ops: Iterable[str], pattern: str = "LITERAL") -> None:
        out.update(Acl(who, resource, n, pattern, op) for n in names for op in ops)

    for p in principals:
        if p.role == "worker":
            reads = [*s.feed_topics, s.owner_topic, s.security_topic, s.ref_topic, s.securities_topic,
                     s.checkpoint_topic, s.alerts_topic, s.recommendations_topic]
            writes = [s.owner_topic, s.security_topic, s.alerts_topic, s.recommendations_topic, s.rejects_topic,
                      s.checkpoint_topic, s.ref_topic, s.securities_topic]
            allow(p.name, "TOPIC", reads, ["READ"])
            allow(p.name, "TOPIC", writes, ["WRITE"])
            allow(p.name, "TOPIC", set(reads) | set(writes), ["CREATE"])
            allow(p.name, "TOPIC", [s.broker_topic_prefix], ["CREATE", "WRITE"], "PREFIXED")
            allow(p.name, "GROUP", [s.group_id], ["READ"])
        elif p.role == "feed":
            allow(p.name, "TOPIC", s.feed_topics, ["WRITE", "CREATE"])
        elif p.role == "desk":
            allow(p.name, "TOPIC", [s.alerts_topic, s.recommendations_topic], ["READ"])
            allow(p.name, "TOPIC", [s.broker_topic_prefix], ["READ"], "PREFIXED")
            allow(p.name, "GROUP", [DESK_GROUP_PREFIX], ["READ"], "PREFIXED")
        else:  # a member firm: its own topic and group, LITERAL
            allow(p.name, "TOPIC", [s.broker_topic(p.broker)], ["READ"])
            allow(p.name, "GROUP", [member_group(s, p.broker)], ["READ"])
    return out


# --------------------------------------------------------------------------------------------------
# Kafka's tools


_LIST_RESOURCE = re.compile(r"ResourcePattern\(resourceType=(\w+), name=(.*), patternType=(\w+)\)`:")
_LIST_ENTRY = re.compile(r"\(principal=User:(.*), host=(.*), operation=(\w+), permissionType=(\w+)\)")


class KafkaTools:
    """Kafka's own admin tools (``AclCommand``, ``ConfigCommand``) against one cluster, as its admin.

    ``command_config``: the admin's Kafka client properties (security.protocol, sasl.*, ssl.truststore.*);
    ``lib``: Kafka's jars (``surveil kafka resolve``)."""

    def __init__(self, bootstrap: str, command_config: str | os.PathLike[str], lib: str | os.PathLike[str],
                 java: str | None = None, timeout: float = 60.0):

        self.bootstrap = bootstrap
        self.command_config = Path(command_config)
        if not self.command_config.is_file():
            raise AclError(f"--command-config {self.command_config}: file not found")
        self.lib = Path(lib)
        self.java = java or kafka_local._java()  # noqa: SLF001 - our own module's finder
        self.timeout = timeout

    def run(self, tool: str, args: list[str], secrets: tuple[str, ...] = ()) -> str:
        """``java -cp '<lib>/*' kafka.admin.<tool> --bootstrap-server … --command-config … args``: its output;
        an :class:`AclError` with its last lines when it fails."""
        full = [f"kafka.admin.{tool}", "--bootstrap-server", self.bootstrap, "--command-config",
                str(self.command_config), *args]
        with tempfile.TemporaryDirectory(prefix="surveil-acl-") as tmp, kafka_local.java_argfile(full) as argfile:
            log4j = Path(tmp) / "log4j.properties"
            log4j.write_text("log4j.rootLogger=ERROR, stderr\nlog4j.appender.stderr=org.apache.log4j.ConsoleAppender\n"
                             "log4j.appender.stderr.Target=System.err\n"
                             "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout\n"
                             "log4j.appender.stderr.layout.ConversionPattern=%p %m%n\n")
            try:
                proc = subprocess.run([self.java, "-Xmx192m", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
                                       f"-Dlog4j.configuration={log4j.as_uri()}", "-cp", f"{self.lib}{os.sep}*",
                                       argfile], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      timeout=self.timeout)
            except subprocess.TimeoutExpired:
                raise AclError(f"Kafka's {tool} did not finish within {self.timeout:.0f} s "
                               f"(is {self.bootstrap} reachable?)") from None
        # Kafka's tools echo every argument in some errors ("Error while executing config command with args
        # '…'"): the passwords this run was given never reach the message
        text = kafka_local.redact(proc.stdout + proc.stderr, secrets)
        if proc.returncode != 0 or "Error while executing" in text:
            lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("\tat ")]
            raise AclError(f"Kafka's {tool} failed against {self.bootstrap}:\n" + "\n".join(lines[-8:]))
        return proc.stdout

    def set_password(self, user: str, password: str) -> None:
        """Create or update ``user``'s SCRAM-SHA-512 credential (idempotent)."""
        self.run("ConfigCommand", ["--alter", "--entity-type", "users", "--entity-name", user,
                                   "--add-config", f"{SCRAM_MECHANISM}=[password={password}]"], secrets=(password,))

    def scram_users(self) -> list[str]:
        out = self.run("ConfigCommand", ["--describe", "--entity-type", "users"])
        return sorted(set(re.findall(r"user-principal '([^']*)' are .*" + SCRAM_MECHANISM, out)))

    def acls(self) -> set[tuple[Acl, str, str]]:
        """Every ACL of the cluster: (ACL, host, ALLOW or DENY)."""
        out: set[tuple[Acl, str, str]] = set()
        resource = None
        for line in self.run("AclCommand", ["--list"]).splitlines():
            m = _LIST_RESOURCE.search(line)
            if m:
                resource = m.groups()
                continue
            m = _LIST_ENTRY.search(line)
            if m and resource:
                who, host, op, perm = m.groups()
                out.add((Acl(who, resource[0], resource[1], resource[2], op), host, perm))
        return out

    def _change(self, action: str, acls: Iterable[Acl]) -> None:
        """``--add`` or ``--remove`` ALLOW rules for any host: one tool run per principal, pattern type and set of
        operations (each run takes several resources)."""
        by_ops: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        for a in acls:
            by_ops[(a.principal, a.pattern, a.resource + "\0" + a.name)].add(a.operation)
        runs: dict[tuple[str, str, frozenset[str]], list[str]] = defaultdict(list)
        for (who, pattern, res), ops in by_ops.items():
            runs[(who, pattern, frozenset(ops))].append(res)
        flag = {"TOPIC": "--topic", "GROUP": "--group"}
        jobs = []
        for (who, pattern, ops), resources in sorted(runs.items(), key=lambda x: (x[0][0], x[0][1], sorted(x[0][2]))):
            args = [action, *(["--force"] if action == "--remove" else []),
                    "--allow-principal", f"User:{who}", "--allow-host", "*", "--resource-pattern-type", pattern.lower()]
            for op in sorted(ops):
                args += ["--operation", op.title()]
            for res in sorted(resources):
                kind, name = res.split("\0", 1)
                args += [flag[kind], name]
            jobs.append(args)
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(lambda a: self.run("AclCommand", a), jobs))

    def add(self, acls: Iterable[Acl]) -> None:
        self._change("--add", acls)

    def remove(self, acls: Iterable[Acl]) -> None:
        self._change("--remove", acls)


@dataclass
class Applied:
    users: list[str]
    added: list[Acl]
    removed: list[Acl]
    kept: int


def apply(principals: list[Principal], settings: Settings, tools: KafkaTools) -> Applied:
    """Create or update each principal's SCRAM credential, then make its ACLs the layout's: missing ones are
    added, ALLOW rules of these principals that the layout does not have are removed (so that a changed role
    or id takes its old rights away). Running it again changes nothing (idempotent)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda p: tools.set_password(p.name, p.password), principals))
    names = {p.name for p in principals}
    wanted = layout(principals, settings)
    have = {a for a, host, perm in tools.acls() if perm == "ALLOW" and host == "*" and a.principal in names}
    added, removed = sorted(wanted - have), sorted(have - wanted)
    if removed:
        tools.remove(removed)
    if added:
        tools.add(added)
    return Applied(sorted(names), added, removed, len(wanted & have))


def show(tools: KafkaTools) -> str:
    """The cluster's ACLs, by principal, and its SCRAM users (``surveil acl show``)."""
    by_who: dict[str, list[str]] = defaultdict(list)
    for a, host, perm in sorted(tools.acls()):
        extra = "" if (perm, host) == ("ALLOW", "*") else f" [{perm} host {host}]"
        by_who[a.principal].append(f"  {a.resource:<6} {a.name} ({a.pattern}): {a.operation}{extra}")
    lines = []
    for who in sorted(by_who):
        lines.append(f"User:{who}")
        lines.extend(by_who[who])
    users = tools.scram_users()
    lines.append(f"SCRAM-SHA-512 users: {', '.join(users) if users else '(none)'}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# command line (``surveil acl …``)


def _tools(bootstrap: str | None, command_config: Path | None, lib_dir: Path | None) -> tuple[KafkaTools, Settings]:
    """The admin's tools and the settings (topic names) from the options, the local secure broker or
    ``SURVEIL_*``."""

    settings = Settings.from_env()
    local = kafka_local.status(kafka_local.default_secure_data_dir())
    if command_config is None:
        if not local["running"]:
            raise AclError("--command-config is required (the admin's Kafka client properties) unless the local "
                           "secure broker runs (surveil kafka start --secure)")
        command_config = kafka_local.secure_files().admin_config
    if bootstrap is None:
        bootstrap = local["bootstrap"] if local["running"] and "SURVEIL_BOOTSTRAP_SERVERS" not in os.environ \
            else settings.bootstrap_servers
    return KafkaTools(bootstrap, command_config, kafka_local.ensure_kafka_libs(lib_dir)), settings


_common = [
    click.option("--bootstrap-server", "bootstrap", default=None,
                 help="host:port (default: the local secure broker, else SURVEIL_BOOTSTRAP_SERVERS)."),
    click.option("--command-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="The admin's Kafka client properties (default: the local secure broker's admin.properties)."),
    click.option("--lib-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Kafka's jars (default $SURVEIL_KAFKA_LIB or .cache/kafka/lib)."),
]


def _with_common(fn):
    for opt in reversed(_common):
        fn = opt(fn)
    return fn


@click.group(name="acl")
def acl() -> None:
    """Principals and ACLs on a secure Kafka: each member firm reads only its own alert topic."""


@acl.command(name="apply")
@click.option("--brokers", "brokers_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file of the principals (name, role, broker, password_env or password_file).")
@_with_common
def apply_command(brokers_file: Path, bootstrap, command_config, lib_dir) -> None:
    """Create the file's SCRAM users and give each exactly its role's ACLs (idempotent)."""
    try:
        tools, settings = _tools(bootstrap, command_config, lib_dir)
        principals = load_principals(brokers_file, settings=settings)
        done = apply(principals, settings, tools)
    except SurveilError as e:
        raise click.ClickException(str(e)) from None
    for a in done.removed:
        click.echo(f"removed {a}")
    for a in done.added:
        click.echo(f"added   {a}")
    click.echo(f"{len(done.users)} SCRAM users set ({', '.join(done.users)}); {len(done.added)} ACLs added, "
               f"{len(done.removed)} removed, {done.kept} unchanged", err=True)


@acl.command(name="show")
@_with_common
def show_command(bootstrap, command_config, lib_dir) -> None:
    """Print the cluster's ACLs by principal, and its SCRAM users."""
    try:
        tools, _ = _tools(bootstrap, command_config, lib_dir)
        click.echo(show(tools))
    except SurveilError as e:
        raise click.ClickException(str(e)) from None
