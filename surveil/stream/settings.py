"""Worker settings, from environment variables (``SURVEIL_*``). A wrong setting is a clear error at start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from surveil.stream.exceptions import SettingsError  # noqa: F401 - importable from here too

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_BOOLS = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}
_BOOTSTRAP = re.compile(r"^[^\s:,]+:\d{1,5}$")
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def is_loopback(host: str) -> bool:
    """``host`` (a bind address) is reachable only from this machine: localhost, 127.0.0.0/8 or ::1."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """Every setting, its environment variable is ``SURVEIL_`` + the upper-case name."""

    bootstrap_servers: str = "127.0.0.1:9092"
    feed_topics: tuple[str, ...] = ("surveil.feed.sse", "surveil.feed.szse", "surveil.feed.bse")
    feed_partitions: int = 4
    alerts_topic: str = "surveil.alerts"
    recommendations_topic: str = "surveil.recommendations"
    broker_topic_prefix: str = "surveil.alerts.broker."
    rejects_topic: str = "surveil.rejects"
    ref_topic: str = "surveil.ref.accounts"
    securities_topic: str = "surveil.ref.securities"  # compacted: key VENUE:symbol (surveil/engine/securities.py)
    owner_topic: str = "surveil.owner"
    owner_partitions: int = 4
    security_topic: str = "surveil.security"  # the security stage's input (rows routed by venue and symbol)
    security_partitions: int = 4
    checkpoint_topic: str = "surveil.checkpoints"
    # SURVEIL_CHECKPOINT_KEY: HMAC key of the checkpoints, shared by a group's workers. The secrets (this, the
    # SASL password, the console's session key) are left out of the repr: a Settings printed or logged shows none
    checkpoint_key: str = field(default="", repr=False)
    group_id: str = "surveil-workers"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    allowed_lateness_ms: int = 2000  # a caught-up feed partition silent this long is idle (owner rules go on)
    checkpoint_interval_ms: int = 2000
    rules_file: str = ""
    accounts_csv: str = ""
    securities_csv: str = ""  # seeds the securities topic at start (surveil worker --securities)
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    metrics: bool = True  # SURVEIL_METRICS=on|off: Prometheus metrics on /metrics (off: for benchmarks)
    console: bool = True  # SURVEIL_CONSOLE=on|off: the live console on the web server (docs/console.md)
    # the console's logins (docs/console.md#logins-and-roles)
    console_auth: bool = True  # SURVEIL_CONSOLE_AUTH=off: no login, everyone a desk user (loopback only)
    console_users_file: str = ""  # TOML: [users.NAME] role, broker, password (argon2 hash); `surveil console user`
    console_proxy_user_header: str = ""  # e.g. X-Forwarded-User: single sign-on by a reverse proxy (empty: off)
    console_trusted_proxies: str = ""  # addresses/CIDRs whose user header (and X-Forwarded-For) is believed
    console_cookie_secure: bool = False  # the session cookie's Secure flag: on when browsers reach it over HTTPS
    # Fernet key of the session cookies, shared by workers (empty: one per process)
    console_session_key: str = field(default="", repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            var = "SURVEIL_" + f.name.upper()
            if var not in env:
                continue
            raw = env[var]
            if f.type in ("int", int):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise SettingsError(f"{var}={raw!r}: expected an integer") from None
            elif f.type in ("bool", bool):
                flag = _BOOLS.get(raw.strip().lower())
                if flag is None:
                    raise SettingsError(f"{var}={raw!r}: expected on or off")
                values[f.name] = flag
            elif f.name == "feed_topics":
                values[f.name] = tuple(t.strip() for t in raw.split(",") if t.strip())
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        s = cls(**values)
        s.validate()
        return s

    def validate(self) -> None:
        def bad(name: str, value: Any, why: str) -> SettingsError:
            return SettingsError(f"SURVEIL_{name.upper()}={value!r}: {why}")

        for b in self.bootstrap_servers.split(","):
            if not _BOOTSTRAP.match(b.strip()):
                raise bad("bootstrap_servers", self.bootstrap_servers, "expected host:port[,host:port...]")
        if not self.feed_topics:
            raise bad("feed_topics", ",".join(self.feed_topics), "at least one feed topic is needed")
        for name in ("alerts_topic", "recommendations_topic", "rejects_topic", "ref_topic", "securities_topic",
                     "owner_topic", "security_topic", "checkpoint_topic"):
            v = getattr(self, name)
            if not _TOPIC.match(v):
                raise bad(name, v, "not a valid Kafka topic name")
        for t in self.feed_topics:
            if not _TOPIC.match(t):
                raise bad("feed_topics", t, "not a valid Kafka topic name")
        if not re.match(r"^[A-Za-z0-9._-]*$", self.broker_topic_prefix):
            raise bad("broker_topic_prefix", self.broker_topic_prefix, "not a valid Kafka topic prefix")
        if self.security_protocol not in _PROTOCOLS:
            raise bad("security_protocol", self.security_protocol, f"expected one of {', '.join(_PROTOCOLS)}")
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism not in _MECHANISMS:
                raise bad("sasl_mechanism", self.sasl_mechanism, f"expected one of {', '.join(_MECHANISMS)}")
            if not self.sasl_username:
                raise bad("sasl_username", self.sasl_username, "required with SASL")
            if not self.sasl_password:  # the value is never shown: here it is empty
                raise bad("sasl_password", "", "required with SASL")
        if self.ssl_cafile and not Path(self.ssl_cafile).is_file():
            raise bad("ssl_cafile", self.ssl_cafile, "file not found")
        for name in ("feed_partitions", "owner_partitions", "security_partitions"):
            if not 1 <= getattr(self, name) <= 1024:
                raise bad(name, getattr(self, name), "expected 1..1024")
        if not 0 <= self.allowed_lateness_ms <= 600_000:
            raise bad("allowed_lateness_ms", self.allowed_lateness_ms, "expected 0..600000")
        if not 100 <= self.checkpoint_interval_ms <= 3_600_000:
            raise bad("checkpoint_interval_ms", self.checkpoint_interval_ms, "expected 100..3600000")
        if not 1 <= self.web_port <= 65535:
            raise bad("web_port", self.web_port, "expected 1..65535")
        if not self.web_bind or any(c.isspace() for c in self.web_bind):
            raise bad("web_bind", self.web_bind, "expected an address to bind, e.g. 127.0.0.1 or 0.0.0.0")
        if not isinstance(self.metrics, bool):
            raise bad("metrics", self.metrics, "expected on or off")
        if not isinstance(self.console, bool):
            raise bad("console", self.console, "expected on or off")
        self._validate_console(bad)
        if self.rules_file and not Path(self.rules_file).is_file():
            raise bad("rules_file", self.rules_file, "file not found")
        if self.accounts_csv and not Path(self.accounts_csv).is_file():
            raise bad("accounts_csv", self.accounts_csv, "file not found")
        if self.securities_csv and not Path(self.securities_csv).is_file():
            raise bad("securities_csv", self.securities_csv, "file not found")

    def _validate_console(self, bad: Any) -> None:
        for name in ("console_auth", "console_cookie_secure"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, getattr(self, name), "expected on or off")
        if self.console_users_file and not Path(self.console_users_file).is_file():
            raise bad("console_users_file", self.console_users_file, "file not found")
        h = self.console_proxy_user_header
        if h and not _HEADER.match(h):
            raise bad("console_proxy_user_header", h, "expected an HTTP header name, e.g. X-Forwarded-User")
        nets = self.trusted_proxy_networks()
        if h and not nets:
            raise bad("console_trusted_proxies", self.console_trusted_proxies,
                      "required with SURVEIL_CONSOLE_PROXY_USER_HEADER: the proxies' addresses or CIDRs "
                      "(a user header from anyone else is ignored)")
        if h and not self.console_users_file:
            raise bad("console_users_file", self.console_users_file,
                      "required with SURVEIL_CONSOLE_PROXY_USER_HEADER: it gives each user's role")
        if self.console_session_key:
            import base64

            try:
                ok = len(base64.urlsafe_b64decode(self.console_session_key.encode("ascii"))) == 32
            except (ValueError, UnicodeEncodeError):
                ok = False
            if not ok:
                raise bad("console_session_key", "<hidden>", "expected a Fernet key (32 bytes, URL-safe base64): "
                          "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'")
        if self.console and not self.console_auth and not is_loopback(self.web_bind):
            raise bad("console_auth", "off", f"the console without logins listens only on a loopback address; "
                      f"SURVEIL_WEB_BIND is {self.web_bind!r}")

    def trusted_proxy_networks(self) -> tuple[Any, ...]:
        """``console_trusted_proxies`` as :mod:`ipaddress` networks (a bare address is a /32 or /128)."""
        import ipaddress

        out = []
        for part in self.console_trusted_proxies.split(","):
            if not part.strip():
                continue
            try:
                out.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError as e:
                raise SettingsError(f"SURVEIL_CONSOLE_TRUSTED_PROXIES={self.console_trusted_proxies!r}: "
                                    f"{part.strip()!r} is not an address or CIDR ({e})") from None
        return tuple(out)

    def to_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The ``SURVEIL_*`` variables that give these settings back through :meth:`from_env` (for a worker
        process started with them), on top of ``base`` (e.g. ``os.environ``)."""
        env = dict(base or {})
        for f in fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            env["SURVEIL_" + f.name.upper()] = ",".join(v) if isinstance(v, tuple) else str(v)
        return env

    def kafka_kwargs(self) -> dict[str, Any]:
        """Connection arguments for aiokafka clients."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            kw.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                      sasl_plain_password=self.sasl_password)
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kw["ssl_context"] = create_ssl_context(cafile=self.ssl_cafile or None)
        return kw

    def broker_topic(self, broker: str) -> str:
        """The alert topic of a member firm: its id with every byte other than ``A-Z a-z 0-9 -`` written as
        ``_`` and two hex digits (so ``B/1``, ``B_1`` and ``B.1`` get three topics: the mapping is injective, and
        no two names differ only by ``.`` and ``_``, which Kafka treats as colliding). A ValueError when the name
        would exceed Kafka's 249 characters (reference data refuses such ids first: BROKER_ID_MAX_BYTES)."""
        safe = "".join(chr(b) if chr(b).isascii() and (chr(b).isalnum() or b == 0x2D) else f"_{b:02x}"
                       for b in broker.encode("utf-8"))
        name = f"{self.broker_topic_prefix}{safe}"
        if not broker or len(name) > 249:
            raise ValueError(f"broker={broker[:80]!r}: its alert topic would be {len(name)} characters "
                             "(Kafka allows 249)")
        return name
