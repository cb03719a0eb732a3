"""The console's login endpoints and the check every other endpoint passes (see :mod:`surveil.web.auth` for
the parts, docs/console.md#logins-and-roles for the operator's view).

Three modes, from the settings:

- ``on``: a users file (``SURVEIL_CONSOLE_USERS_FILE``): password logins, and with
  ``SURVEIL_CONSOLE_PROXY_USER_HEADER`` also the proxy's single sign-on;
- ``locked``: logins are on (the default) but no users file is configured: the worker runs, its console
  refuses every request with ``503`` saying what to configure (logged at start). Surveillance does not stop
  for a console setting, and nothing is shown to nobody-in-particular;
- ``off`` (``SURVEIL_CONSOLE_AUTH=off``, only on a loopback address): no login, everyone is a desk user, for
  a demo on one's own machine.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp_session import get_session, new_session

from surveil.web.auth import (
    ADDRESS_FAILURES,
    CSRF_HEADER,
    FAILURE_WINDOW_S,
    MAX_PASSWORD_CHARS,
    USER_FAILURES,
    USERNAME,
    FailureLimiter,
    Proxies,
    User,
    UsersFile,
    Verifier,
    check_csrf,
)

log = logging.getLogger("surveil.console")

#: every role reads the console (a broker user its firm's part); ``/api/users`` is the admin's
READERS = ("desk", "broker", "admin")
_RequestKey = getattr(web, "RequestKey", None)  # aiohttp >= 3.12; a plain key before
USER_KEY: Any = _RequestKey("surveil.console.user", User) if _RequestKey else "surveil.console.user"
LOCKED = ("the console needs logins: set SURVEIL_CONSOLE_USERS_FILE (add users with `surveil console user "
          "add`), or SURVEIL_CONSOLE_AUTH=off for a demo on a loopback address (docs/console.md)")
ANONYMOUS_DESK = User("anonymous", "desk")
MAX_LOGIN_BODY = 4096
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def user_of(request: web.Request) -> User:
    """The user a protected handler runs for."""
    return request[USER_KEY]


class Logins:
    def __init__(self, mode: str, users_file: UsersFile | None = None, proxy_header: str = "",
                 proxies: Proxies | None = None,
                 by_user: FailureLimiter | None = None, by_address: FailureLimiter | None = None) -> None:
        assert mode in ("on", "locked", "off"), mode
        self.mode = mode
        self.users_file = users_file
        self.proxy_header = proxy_header
        self.proxies = proxies or Proxies(())
        # "is None", not "or": a limiter with no failures yet is empty, hence false
        self.by_user = by_user if by_user is not None else FailureLimiter(USER_FAILURES, FAILURE_WINDOW_S)
        self.by_address = (by_address if by_address is not None
                           else FailureLimiter(ADDRESS_FAILURES, FAILURE_WINDOW_S))
        self.verifier = Verifier()
        self.login_html = b""  # the login page (the console sets it)
        self._warned_at = 0.0
        self.counts = {"logins": 0, "failed_logins": 0, "limited_logins": 0, "untrusted_proxy_headers": 0}

    # -- who is asking -------------------------------------------------------------------------------
    def users(self) -> dict[str, User]:
        return self.users_file.current() if self.users_file is not None else {}

    async def user(self, request: web.Request) -> User | None:
        if self.mode == "off":
            return ANONYMOUS_DESK
        if self.mode == "locked":
            return None
        users = self.users()
        if self.proxy_header:
            name = request.headers.get(self.proxy_header)
            if name is not None:
                if self.proxies.trusted(request.remote):
                    u = users.get(name)
                    if u is None:
                        self._warn(f"the proxy's {self.proxy_header} names {name[:80]!r}, not in the users file")
                    return u
                self.counts["untrusted_proxy_headers"] += 1
                self._warn(f"{self.proxy_header} from {request.remote}, not a trusted proxy "
                           "(SURVEIL_CONSOLE_TRUSTED_PROXIES): ignored")
        session = await get_session(request)
        name = session.get("user")
        u = users.get(name) if isinstance(name, str) else None
        if u is None or session.get("fp") != u.fingerprint():
            return None
        return u

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 60:  # at most once a minute: a request cannot flood the log
            self._warned_at = now
            log.warning("console: %s", message)

    # -- the check of every protected endpoint ---------------------------------------------------------
    def protect(self, handler: Handler, roles: tuple[str, ...] = READERS, page: bool = False) -> Handler:
        """``handler`` for a user of one of ``roles``; else 401 (a page: 302 to the login page), 403 (a
        role without access, or a state change without the CSRF token) or 503 (locked)."""

        async def run(request: web.Request) -> web.StreamResponse:
            if self.mode == "locked":
                if page:
                    raise web.HTTPFound("/console/login")
                return _json({"error": LOCKED}, 503)
            user = await self.user(request)
            if user is None:
                if page:
                    raise web.HTTPFound("/console/login")
                return _json({"error": "not logged in", "login": "/console/login"}, 401)
            if user.role not in roles:
                return _json({"error": f"user {user.name!r} (role {user.role}) may not use {request.path}"}, 403)
            if request.method not in ("GET", "HEAD"):
                session = await get_session(request)
                if not check_csrf(session.get("csrf"), request.headers.get(CSRF_HEADER)):
                    return _json({"error": f"missing or wrong {CSRF_HEADER} header (GET /api/session gives it)"},
                                 403)
            request[USER_KEY] = user
            return await handler(request)

        run.__name__ = getattr(handler, "__name__", "handler")
        return run

    # -- endpoints ------------------------------------------------------------------------------------
    async def login_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.login_html, content_type="text/html", charset="utf-8")

    async def session(self, request: web.Request) -> web.Response:
        """Who is logged in, and the CSRF token (created with the session when there is none)."""
        session = await get_session(request)
        token = session.get("csrf")
        if not isinstance(token, str):
            token = session["csrf"] = secrets.token_urlsafe(32)
        user = await self.user(request)
        return _json({"authenticated": user is not None, "user": user.public() if user else None,
                      "csrf": token, "auth": self.mode, "locked": LOCKED if self.mode == "locked" else None,
                      "password_login": self.mode == "on"})

    async def login(self, request: web.Request) -> web.Response:
        """``POST {"username", "password"}`` with the CSRF token: a new session, or 401/429."""
        session = await get_session(request)
        if not check_csrf(session.get("csrf"), request.headers.get(CSRF_HEADER)):
            return _json({"error": f"missing or wrong {CSRF_HEADER} header (GET /api/session gives it)"}, 403)
        if self.mode != "on":
            return _json({"error": LOCKED if self.mode == "locked" else "logins are off (SURVEIL_CONSOLE_AUTH=off)"},
                         503 if self.mode == "locked" else 400)
        if request.content_length is None or request.content_length > MAX_LOGIN_BODY:
            return _json({"error": f"expected a JSON body of at most {MAX_LOGIN_BODY} bytes"}, 413)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        name, password = (body.get("username"), body.get("password")) if isinstance(body, dict) else (None, None)
        if not isinstance(name, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
            return _json({"error": "expected {\"username\": \"...\", \"password\": \"...\"}"}, 400)
        client = self.proxies.client(request.remote, request.headers.get("X-Forwarded-For"))
        user_key = name if USERNAME.match(name) else "?"  # any other name: one key (no such user exists)
        wait = max(self.by_user.retry_after(user_key), self.by_address.retry_after(client))
        if wait > 0:
            self.counts["limited_logins"] += 1
            return _json({"error": f"too many failed logins; try again in {math.ceil(wait)} s"}, 429,
                         headers={"Retry-After": str(math.ceil(wait))})
        # counted as a failure before the check (no await between the check above and here): attempts sent
        # together cannot all pass the limit while the first ones wait for a verification slot
        self.by_user.failed(user_key)
        address_at = self.by_address.failed(client)
        u = self.users().get(name)
        if not await self.verifier.verify(u.password_hash if u else None, password):
            self.counts["failed_logins"] += 1
            log.warning("console: failed login as %r from %s", name[:64], client)
            return _json({"error": "wrong user name or password"}, 401)
        assert u is not None
        self.by_user.clear(user_key)
        self.by_address.refund(client, address_at)
        session = await new_session(request)  # a new session (and token) at each login: no fixation
        token = secrets.token_urlsafe(32)
        session.update({"user": u.name, "fp": u.fingerprint(), "csrf": token, "at": int(time.time())})
        self.counts["logins"] += 1
        log.info("console: %s (%s%s) logged in from %s", u.name, u.role, f" {u.broker}" if u.broker else "", client)
        return _json({"user": u.public(), "csrf": token})

    async def logout(self, request: web.Request) -> web.Response:
        session = await get_session(request)
        session.invalidate()  # the cookie is cleared
        return _json({"ok": True})

    async def users_list(self, request: web.Request) -> web.Response:
        """The users file's users (names, roles, firms; never a hash), for the admin."""
        users = sorted(self.users().values(), key=lambda u: u.name)
        return _json({"users": [{**u.public(), "password_login": u.password_hash is not None} for u in users],
                      "auth": self.mode, "proxy_user_header": self.proxy_header or None, "counts": self.counts,
                      "failure_keys": {"users": len(self.by_user), "addresses": len(self.by_address)}})


def logins_from(settings: Any, port: int | None = None) -> tuple[Logins, Any]:
    """The logins the settings ask for, and the session cookies' storage (aiohttp-session's encrypted
    cookie; its name carries the port, so that two workers on one host keep their own sessions). A users
    file that cannot be used raises :class:`~surveil.stream.settings.SettingsError` naming it."""
    from aiohttp_session.cookie_storage import EncryptedCookieStorage

    from surveil.stream.settings import SettingsError
    from surveil.web.auth import SESSION_S, UsersError, session_key

    s = settings
    if not s.console_auth:
        mode, users = "off", None
    elif s.console_users_file:
        mode = "on"
        try:
            users = UsersFile(s.console_users_file)
        except UsersError as e:
            raise SettingsError(f"SURVEIL_CONSOLE_USERS_FILE={s.console_users_file!r}: {e}") from None
    else:
        mode, users = "locked", None
    logins = Logins(mode, users, s.console_proxy_user_header, Proxies(s.trusted_proxy_networks()))
    storage = EncryptedCookieStorage(session_key(s.console_session_key),
                                     cookie_name=f"surveil_console_{port or s.web_port}", max_age=SESSION_S,
                                     httponly=True, samesite="Strict", secure=s.console_cookie_secure, path="/")
    return logins, storage
