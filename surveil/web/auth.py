"""The console's logins: users and roles, password hashes, sessions, CSRF, failed-login limits, and the
single sign-on of an authenticating reverse proxy (docs/console.md#logins-and-roles).

- **Users file** (``SURVEIL_CONSOLE_USERS_FILE``, TOML), one table per user::

      [users.alice]
      role = "desk"                      # desk | broker | admin
      password = "$argon2id$v=19$m=..."  # argon2 hash (`surveil console user add`); absent: proxy login only

      [users.b017-ops]
      role = "broker"
      broker = "B017"                    # the member firm this user sees

  It is read at start (a bad file stops the worker, naming the file, the user and the field) and again
  whenever it changes (a bad edit is logged and the previous users stay), so adding, removing or changing a
  user needs no restart; a removed user's or a changed password's sessions end at their next request.
- **Passwords**: argon2id (argon2-cffi's defaults, RFC 9106), verified off the event loop, two at a time.
- **Sessions**: aiohttp-session's encrypted cookie (Fernet: AES-128-CBC + HMAC-SHA256, with its time stamp
  checked against :data:`SESSION_S`): ``HttpOnly``, ``SameSite=Strict``, ``Secure`` with
  ``SURVEIL_CONSOLE_COOKIE_SECURE=on``. A login starts a new session (no fixation).
- **CSRF**: a random token kept in the session, given by ``GET /api/session``; every other method than
  GET/HEAD must send it back in ``X-CSRF-Token`` (login and logout included), compared in constant time.
- **Failed logins**: at most :data:`USER_FAILURES` per user name and :data:`ADDRESS_FAILURES` per client
  address in :data:`FAILURE_WINDOW_S`; beyond, ``429`` with ``Retry-After`` before any password is checked.
  An attempt counts as a failure before its password is checked (refunded when it succeeds), so concurrent
  attempts cannot all pass the check while the first ones wait for a verification slot.
  Each limiter remembers at most :data:`MAX_KEYS` keys (the oldest forgotten): bounded memory.
- **Proxy single sign-on** (``SURVEIL_CONSOLE_PROXY_USER_HEADER``, off by default): the header names the
  user, believed only on a connection from ``SURVEIL_CONSOLE_TRUSTED_PROXIES``; from anyone else it is
  ignored (and logged). The user must be in the users file, which gives the role.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import time
import tomllib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surveil.exceptions import SurveilError

log = logging.getLogger("surveil.console")

ROLES = ("desk", "broker", "admin")
#: a user name: letters, digits and ``. _ @ -`` (an e-mail address from a proxy fits), 1-64 characters
USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MAX_BROKER_CHARS = 256
MAX_PASSWORD_CHARS = 1024
#: a session lasts this long from its login (a desk shift and then some); then the user logs in again
SESSION_S = 12 * 3600
USER_FAILURES, ADDRESS_FAILURES, FAILURE_WINDOW_S = 5, 30, 900
MAX_KEYS = 10_000
CSRF_HEADER = "X-CSRF-Token"


class UsersError(SurveilError, ValueError):
    """A users file that cannot be used: the message names the file, and the user and field when one is bad."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    broker: str | None = None
    password_hash: str | None = field(default=None, repr=False)

    @property
    def scope(self) -> str | None:
        """The member firm whose view this user gets, or None for the whole cluster (desk, admin)."""
        return self.broker if self.role == "broker" else None

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "broker": self.broker}

    def fingerprint(self) -> str:
        """Changes when the user's role, firm or password changes: a session keeps it and ends on a change."""
        return hashlib.sha256(f"{self.role}\0{self.broker}\0{self.password_hash}".encode()).hexdigest()[:32]


# -- passwords ---------------------------------------------------------------------------------------
def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile (64 MiB, 3 passes)


def hash_password(password: str) -> str:
    if not password:
        raise UsersError("the password is empty")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UsersError(f"the password is {len(password):,} characters; at most {MAX_PASSWORD_CHARS}")
    return _hasher().hash(password)


_dummy: list[str] = []


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; with no hash (no such user, or a proxy-only user) a hash of another
    password is verified anyway, so that a wrong name takes as long as a wrong password."""
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    if not _dummy:
        _dummy.append(_hasher().hash(secrets.token_urlsafe(16)))
    try:
        return _hasher().verify(password_hash or _dummy[0], password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# -- the users file -----------------------------------------------------------------------------------
def parse_users(text: str, source: str) -> dict[str, User]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsersError(f"{source}: not TOML ({e})") from None
    extra = sorted(set(data) - {"users"})
    if extra:
        raise UsersError(f"{source}: unknown table {extra[0]!r}; expected only [users.NAME] tables")
    users = data.get("users", {})
    if not isinstance(users, dict):
        raise UsersError(f"{source}: 'users' is not a table of [users.NAME] tables")
    out: dict[str, User] = {}
    for name, row in users.items():
        where = f"{source}: user {name!r}"
        if not USERNAME.match(name):
            raise UsersError(f"{where}: a name is 1-64 letters, digits or . _ @ -")
        if not isinstance(row, dict):
            raise UsersError(f"{where}: not a table (write [users.{name}] with role = ...)")
        unknown = sorted(set(row) - {"role", "broker", "password"})
        if unknown:
            raise UsersError(f"{where}: unknown field {unknown[0]!r}; expected role, broker, password")
        role = row.get("role")
        if role not in ROLES:
            raise UsersError(f"{where}: role={role!r}: expected one of {', '.join(ROLES)}")
        broker = row.get("broker")
        if role == "broker":
            if not isinstance(broker, str) or not broker or len(broker) > MAX_BROKER_CHARS:
                raise UsersError(f"{where}: a broker user needs broker = \"<member firm id>\" "
                                 f"(1-{MAX_BROKER_CHARS} characters)")
        elif broker is not None:
            raise UsersError(f"{where}: broker={broker!r} is only for role broker (role is {role})")
        pw = row.get("password")
        if pw is not None and not (isinstance(pw, str) and pw.startswith("$argon2")):
            raise UsersError(f"{where}: password is not an argon2 hash (never the password itself: "
                             "use `surveil console user add`)")
        out[name] = User(name, role, broker, pw)
    return out


def load_users(path: str | Path) -> dict[str, User]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UsersError(f"{p}: cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UsersError(f"{p}: not UTF-8 (byte {e.start})") from None
    return parse_users(text, str(p))


def _write(p: Path, users: dict[str, User]) -> None:
    """Write the users file atomically (a temporary file renamed over it), readable by its owner only."""
    import tomli_w

    data = {"users": {u.name: {k: v for k, v in (("role", u.role), ("broker", u.broker),
                                                  ("password", u.password_hash)) if v is not None}
                      for u in users.values()}}
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("# surveil console users: `surveil console user add` (docs/console.md#logins-and-roles)\n")
        f.write(tomli_w.dumps(data))
    os.replace(tmp, p)


def add_user(path: str | Path, name: str, role: str, broker: str | None, password: str,
             replace: bool = False) -> User:
    """Add (or with ``replace`` change) a user in the users file, created if missing (mode 0600); only the
    argon2 hash of the password is written (no password: a user who logs in through the proxy only)."""
    import tomli_w

    p = Path(path)
    users = load_users(p) if p.exists() else {}
    if name in users and not replace:
        raise UsersError(f"{p}: user {name!r} exists (--replace to change it)")
    row: dict[str, Any] = {"role": role}
    if broker is not None:
        row["broker"] = broker
    if password:
        row["password"] = hash_password(password)
    users[name] = parse_users(tomli_w.dumps({"users": {name: row}}), str(p))[name]  # the checks of the start
    _write(p, users)
    return users[name]


def remove_user(path: str | Path, name: str) -> None:
    p = Path(path)
    users = load_users(p)
    if name not in users:
        raise UsersError(f"{p}: no user {name!r}")
    del users[name]
    _write(p, users)


class UsersFile:
    """The users of a file, read again when it changes (its size, mtime or inode); a bad edit keeps the
    users read before, and is logged once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp = self._stat()
        self.users = load_users(self.path)  # at start a bad file is an error
        self._bad_stamp: tuple | None = None

    def _stat(self) -> tuple | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> dict[str, User]:
        stamp = self._stat()
        if stamp != self._stamp and stamp != self._bad_stamp:
            try:
                self.users = load_users(self.path)
                self._stamp = stamp
                log.info("console: %s read again: %d users", self.path, len(self.users))
            except UsersError as e:
                self._bad_stamp = stamp
                log.error("console: %s (the users read before stay)", e)
        return self.users


# -- failed logins ------------------------------------------------------------------------------------
class FailureLimiter:
    """At most ``limit`` failures per key in ``window_s`` seconds; remembers at most ``max_keys`` keys."""

    def __init__(self, limit: int, window_s: float, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self.max_keys, self.clock = limit, window_s, max_keys, clock
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str) -> deque[float] | None:
        q = self._fails.get(key)
        if q is None:
            return None
        cutoff = self.clock() - self.window_s
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._fails[key]
            return None
        return q

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        q = self._recent(key)
        if q is None or len(q) < self.limit:
            return 0.0
        return max(0.0, q[0] + self.window_s - self.clock())

    def failed(self, key: str) -> float:
        """Count a failure of ``key``; returns its time (for :meth:`refund`)."""
        q = self._recent(key)
        if q is None:
            q = self._fails[key] = deque(maxlen=self.limit)
        at = self.clock()
        q.append(at)
        self._fails.move_to_end(key)
        while len(self._fails) > self.max_keys:
            self._fails.popitem(last=False)
        return at

    def refund(self, key: str, at: float) -> None:
        """Take back the failure :meth:`failed` counted at ``at`` (an attempt counted before it was checked,
        that succeeded); nothing when it has left the window or the key was forgotten."""
        q = self._fails.get(key)
        if q is None:
            return
        try:
            q.remove(at)
        except ValueError:
            return
        if not q:
            del self._fails[key]

    def clear(self, key: str) -> None:
        self._fails.pop(key, None)

    def __len__(self) -> int:
        return len(self._fails)


# -- proxies ------------------------------------------------------------------------------------------
def _address(text: str | None) -> Any:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None


class Proxies:
    def __init__(self, networks: tuple[Any, ...]) -> None:
        self.networks = networks

    def trusted(self, address: str | None) -> bool:
        a = _address(address)
        if a is None:
            return False
        if getattr(a, "ipv4_mapped", None) is not None:
            a = a.ipv4_mapped
        return any(a.version == n.version and a in n for n in self.networks)

    def client(self, remote: str | None, forwarded_for: str | None) -> str:
        """The client's address: the connection's, or behind a trusted proxy the nearest untrusted address
        of ``X-Forwarded-For`` (read from the right: the entries on the left are the client's own claim)."""
        addr = remote or "unknown"
        if forwarded_for and self.trusted(remote):
            for hop in reversed(forwarded_for.split(",")[-32:]):
                hop = hop.strip()
                if _address(hop) is None:
                    break
                addr = hop
                if not self.trusted(hop):
                    break
        return addr


def session_key(configured: str) -> str:
    """The Fernet key: SURVEIL_CONSOLE_SESSION_KEY, else a new random one (sessions end when the worker stops)."""
    return configured or base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def check_csrf(expected: str | None, got: str | None) -> bool:
    return bool(expected) and bool(got) and hmac.compare_digest(expected.encode(), got.encode())


#: at most this many password checks at once (each takes ~64 MiB and ~0.1 s of a core)
VERIFY_SLOTS = 2


class Verifier:
    def __init__(self) -> None:
        self._slots = asyncio.Semaphore(VERIFY_SLOTS)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(verify_password, password_hash, password)
