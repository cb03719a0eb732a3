"""What the console tests share: a users file, the console's real HTTP server (aiohttp, in this process) with
logins on, and logging in the way a browser does (``GET /api/session`` for the CSRF token, then ``POST
/api/login``), from aiohttp's test client, urllib or a Chromium page."""

from __future__ import annotations

import asyncio
import http.cookiejar
import threading
import urllib.error
import urllib.parse
import urllib.request
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from surveil.web.api import Console
from surveil.web.auth import SESSION_S, Proxies, UsersFile, add_user, session_key
from surveil.web.login import Logins
from surveil.web.store import Store

PASSWORD = "correct horse battery staple"


def write_users(path: Path, brokers: dict[str, str] | None = None) -> Path:
    """``desk1`` (desk), ``admin1`` (admin), and a broker user per ``{name: firm}``; all with :data:`PASSWORD`."""
    add_user(path, "desk1", "desk", None, PASSWORD)
    add_user(path, "admin1", "admin", None, PASSWORD)
    for name, firm in (brokers or {}).items():
        add_user(path, name, "broker", firm, PASSWORD)
    return path


def app_of(store: Store, users: Path | None, worker=None, *, proxy_header: str = "", proxies: tuple = (),
           mode: str | None = None, logins: Logins | None = None) -> web.Application:
    """An aiohttp application with the console mounted as a worker mounts it (routes, session cookies,
    security headers)."""
    if logins is None:
        mode = mode or ("on" if users is not None else "locked")
        logins = Logins(mode, UsersFile(users) if users is not None else None, proxy_header, Proxies(proxies))
    app = web.Application()
    Console(store, worker, logins).mount(app, EncryptedCookieStorage(
        session_key(""), cookie_name="surveil_console_test", max_age=SESSION_S, httponly=True,
        samesite="Strict", path="/"))
    return app


async def login(c: TestClient, name: str, password: str = PASSWORD) -> str:
    """Log ``c`` in; returns the session's CSRF token."""
    token = (await (await c.get("/api/session")).json())["csrf"]
    r = await c.post("/api/login", data=orjson.dumps({"username": name, "password": password}),
                     headers={"X-CSRF-Token": token, "Content-Type": "application/json"})
    assert r.status == 200, await r.text()
    return (await r.json())["csrf"]


@asynccontextmanager
async def logged_in(store: Store, users: Path, name: str = "desk1", worker=None):
    """A test client of the console over ``store``, logged in as ``name``."""
    async with TestClient(TestServer(app_of(store, users, worker))) as c:
        await login(c, name)
        yield c


@contextmanager
def serving(store: Store, users: Path | None):
    """The console over ``store`` on a free loopback port, in a thread; yields the base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app_of(store, users))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(store.close)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        t.join(30)
        loop.close()


class Session:
    """urllib with a cookie jar, logged in to a console at ``base``."""

    def __init__(self, base: str, name: str, password: str = PASSWORD) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        _, s = self.get("/api/session")
        req = urllib.request.Request(base + "/api/login", method="POST",
                                     data=orjson.dumps({"username": name, "password": password}),
                                     headers={"X-CSRF-Token": s["csrf"], "Content-Type": "application/json"})
        with self.opener.open(req, timeout=30) as r:
            assert r.status == 200

    def get(self, path: str) -> tuple[int | None, dict | None]:
        try:
            with self.opener.open(self.base + path, timeout=10) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, orjson.loads(e.read())
        except OSError:
            return None, None


def browser_login(page, base: str, name: str, password: str = PASSWORD) -> None:
    """Open the console in a Chromium page: it sends an anonymous visitor to the login page; log in there."""
    page.goto(base + "/console/")
    page.wait_for_url(lambda u: urllib.parse.urlsplit(u).path == "/console/login", timeout=30_000)
    page.wait_for_selector("#login:not([hidden])", timeout=30_000)
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#submit")
    page.wait_for_url(lambda u: urllib.parse.urlsplit(u).path == "/console/", timeout=30_000)
    page.wait_for_selector("#user-name", timeout=30_000)
