"""The console's logins and roles through its real HTTP server (aiohttp's test server and client, real
argon2 hashes, real encrypted cookies): the users file, every endpoint refusing an anonymous request, CSRF,
the failed-login limits, the proxy's user header (believed only from a trusted address), and a broker user
who sees exactly its firm's copies (the worker's ``broker_views``), never another firm's alert or account."""

import asyncio
import copy
import os
import stat

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from console_kit import PASSWORD, app_of, logged_in, login, write_users

from surveil.cli import main
from surveil.replay import replay
from surveil.sim import simulate
from surveil.stream.settings import Settings, SettingsError
from surveil.stream.views import broker_views
from surveil.web.api import PUBLIC
from surveil.web.auth import (
    ADDRESS_FAILURES,
    FAILURE_WINDOW_S,
    USER_FAILURES,
    FailureLimiter,
    UsersError,
    UsersFile,
    add_user,
    load_users,
    parse_users,
    verify_password,
)
from surveil.web.login import Logins, logins_from
from surveil.web.store import Store


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    day = simulate(d / "day.svb", events=20_000, accounts=500, seed=6)
    return replay([day.events_path], accounts=day.accounts_path)


@pytest.fixture(scope="module")
def lingjun(result):
    return next(a for a in result.alerts if a["subject"] == {"owner": "LINGJUN"})


@pytest.fixture(scope="module")
def firms(lingjun):
    """Two member firms of the Lingjun burst: ``mine`` (the broker user's) and ``other``."""
    brokers = sorted({x["broker"] for x in lingjun["evidence"]["by_account"]})
    assert len(brokers) >= 2, brokers
    return brokers[0], brokers[1]


@pytest.fixture(scope="module")
def users(tmp_path_factory, firms):
    return write_users(tmp_path_factory.mktemp("u") / "users.toml", {"firm1": firms[0], "firm2": firms[1]})


def filled(result) -> Store:
    s = Store()
    for a in result.alerts:
        s.put_alert(a)
    for r in result.recommendations:
        s.put_recommendation(r)
    return s


# -- the users file, hashes, limits, settings ----------------------------------------------------------
def test_users_file_keeps_only_argon2_hashes(tmp_path):
    f = tmp_path / "users.toml"
    add_user(f, "alice", "desk", None, "s3cret pass")
    add_user(f, "b017-ops", "broker", "B017", "other pass")
    add_user(f, "sso.user@example.com", "admin", None, "")  # proxy login only
    text = f.read_text()
    assert "s3cret" not in text and text.count("$argon2id$") == 2
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    users = load_users(f)
    assert users["b017-ops"].scope == "B017" and users["alice"].scope is None
    assert users["sso.user@example.com"].password_hash is None
    assert verify_password(users["alice"].password_hash, "s3cret pass")
    assert not verify_password(users["alice"].password_hash, "s3cret pas")
    assert not verify_password(None, "")  # no hash: never a match
    with pytest.raises(UsersError, match="user 'alice' exists"):
        add_user(f, "alice", "desk", None, "x")


@pytest.mark.parametrize("text, message", [
    ('[users.a]\nrole = "boss"\n', "user 'a': role='boss': expected one of desk, broker, admin"),
    ('[users.a]\nrole = "broker"\n', "user 'a': a broker user needs broker ="),
    ('[users.a]\nrole = "desk"\nbroker = "B1"\n', "broker='B1' is only for role broker"),
    ('[users.a]\nrole = "desk"\npassword = "hunter2"\n', "password is not an argon2 hash"),
    ('[users."a b"]\nrole = "desk"\n', "user 'a b': a name is 1-64 letters"),
    ('[users.a]\nrole = "desk"\ncolour = 1\n', "unknown field 'colour'"),
    ('[people.a]\nrole = "desk"\n', "unknown table 'people'"),
    ("[users.a\n", "not TOML"),
])
def test_a_bad_users_file_is_named(text, message):
    with pytest.raises(UsersError) as e:
        parse_users(text, "users.toml")
    assert str(e.value).startswith("users.toml: ") and message in str(e.value)


def test_console_settings_are_validated(tmp_path):
    for env, message in [
        ({"SURVEIL_CONSOLE_USERS_FILE": str(tmp_path / "none.toml")}, "SURVEIL_CONSOLE_USERS_FILE="),
        ({"SURVEIL_CONSOLE_AUTH": "maybe"}, "SURVEIL_CONSOLE_AUTH='maybe': expected on or off"),
        ({"SURVEIL_CONSOLE_AUTH": "off", "SURVEIL_WEB_BIND": "0.0.0.0"},
         "SURVEIL_CONSOLE_AUTH='off': the console without logins listens only on a loopback address"),
        ({"SURVEIL_CONSOLE_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"}, "'proxy.local' is not an address or CIDR"),
        ({"SURVEIL_CONSOLE_PROXY_USER_HEADER": "X-Forwarded-User"}, "SURVEIL_CONSOLE_TRUSTED_PROXIES='': required"),
        ({"SURVEIL_CONSOLE_PROXY_USER_HEADER": "X User", "SURVEIL_CONSOLE_TRUSTED_PROXIES": "10.0.0.1"},
         "expected an HTTP header name"),
        ({"SURVEIL_CONSOLE_SESSION_KEY": "short"}, "SURVEIL_CONSOLE_SESSION_KEY='<hidden>': expected a Fernet key"),
    ]:
        with pytest.raises(SettingsError) as e:
            Settings.from_env(env)
        assert message in str(e.value), (env, str(e.value))
    bad = tmp_path / "bad.toml"
    bad.write_text('[users.a]\nrole = "root"\n')
    with pytest.raises(SettingsError, match=r"SURVEIL_CONSOLE_USERS_FILE='.*bad.toml': .*role='root'"):
        logins_from(Settings(console_users_file=str(bad)))
    assert logins_from(Settings())[0].mode == "locked"  # logins on, no users file: the console refuses
    assert logins_from(Settings(console_auth=False))[0].mode == "off"
    cookie = logins_from(Settings(console_cookie_secure=True, web_port=7001))[1]
    assert cookie.cookie_name == "surveil_console_7001"
    assert cookie.cookie_params["secure"] is True and cookie.cookie_params["httponly"] is True
    assert cookie.cookie_params["samesite"] == "Strict" and cookie.max_age == 12 * 3600


def test_the_failure_limiter_counts_in_a_window_and_is_bounded():
    now = [0.0]
    lim = FailureLimiter(3, 60, max_keys=100, clock=lambda: now[0])
    for _ in range(3):
        assert lim.retry_after("alice") == 0
        lim.failed("alice")
    assert lim.retry_after("alice") == 60
    now[0] = 30
    assert lim.retry_after("alice") == 30 and lim.retry_after("bob") == 0
    now[0] = 60.5
    assert lim.retry_after("alice") == 0  # the first failure left the window
    for i in range(1_000):
        lim.failed(f"name{i}")
    assert len(lim) == 100  # the oldest keys are forgotten: bounded memory
    # an attempt counted before its check, that succeeded, is taken back (only its own count)
    now[0] = 100.0
    lim.failed("carol")
    now[0] = 101.0
    at = lim.failed("carol")
    lim.refund("carol", at)
    assert len(lim._fails["carol"]) == 1 and lim._fails["carol"][0] == 100.0
    lim.refund("carol", at)  # not counted any more: nothing
    lim.refund("nobody", at)
    lim.refund("carol", 100.0)
    assert "carol" not in lim._fails


def test_cli_adds_a_user_with_a_prompted_password(tmp_path):
    f = tmp_path / "users.toml"
    r = CliRunner().invoke(main, ["console", "user", "add", "--file", str(f), "--name", "b1", "--role", "broker",
                                  "--broker", "B017"], input="pw one\npw one\n")
    assert r.exit_code == 0, r.output
    assert "pw one" not in f.read_text() and verify_password(load_users(f)["b1"].password_hash, "pw one")
    r = CliRunner().invoke(main, ["console", "user", "add", "--file", str(f), "--name", "x", "--role", "broker"])
    assert r.exit_code == 2 and "--role broker needs --broker" in r.output
    r = CliRunner().invoke(main, ["console", "user", "list", "--file", str(f)])
    assert r.output == "b1\tbroker\tB017\tpassword\n"


# -- over HTTP -------------------------------------------------------------------------------------------
async def _anonymous(result, users):
    app = app_of(filled(result), users)
    routes = [(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"]
    assert len(routes) >= 15
    # the same console routes as a worker's web server mounts (create_app), beside the worker's own
    from surveil.stream.app import create_app

    worker_app = create_app(Settings(console_users_file=str(users))).web.web_app
    worker_routes = {(r.method, r.resource.canonical) for r in worker_app.router.routes() if r.method != "HEAD"}
    assert worker_routes - set(routes) == {("GET", "/status"), ("GET", "/metrics"), ("GET", "/health"),
                                           ("GET", "/ready")}, worker_routes - set(routes)
    async with TestClient(TestServer(app)) as c:
        for method, path in routes:
            if path in PUBLIC:
                continue
            url = path.format(alert_id="x", venue="SSE", account="A1", owner="O1", name="app.js")
            r = await c.request(method, url, allow_redirects=False)
            if path.startswith("/console"):
                assert r.status == 302 and r.headers["Location"] == "/console/login", (method, path)
            else:
                assert r.status == 401, (method, path, r.status)
                assert (await r.json())["error"] == "not logged in"
        # the public ones: the login page (with the security headers), who-am-I, the assets
        r = await c.get("/console/login")
        assert r.status == 200 and "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert '<form id="login"' in await r.text()
        assert r.headers["X-Frame-Options"] == "DENY"
        s = await (await c.get("/api/session")).json()
        assert s["authenticated"] is False and len(s["csrf"]) >= 32


def test_every_endpoint_but_the_login_refuses_an_anonymous_request(result, users):
    asyncio.run(_anonymous(result, users))


async def _login(users):
    async with TestClient(TestServer(app_of(Store(), users))) as c:
        body = orjson.dumps({"username": "desk1", "password": PASSWORD})
        r = await c.post("/api/login", data=body)  # no CSRF token
        assert r.status == 403 and "X-CSRF-Token" in (await r.json())["error"]
        token = (await (await c.get("/api/session")).json())["csrf"]
        r = await c.post("/api/login", data=body, headers={"X-CSRF-Token": "x" + token[1:]})
        assert r.status == 403
        r = await c.post("/api/login", data=body, headers={"X-CSRF-Token": token})
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        new_token = (await r.json())["csrf"]
        assert new_token != token  # a new session at login
        assert (await c.get("/api/alerts")).status == 200
        assert (await c.get("/api/users")).status == 403  # a desk user is not the admin
        assert (await c.post("/api/logout")).status == 403  # a state change without the token
        assert (await c.post("/api/logout", headers={"X-CSRF-Token": new_token})).status == 200
        assert (await c.get("/api/alerts")).status == 401

        # failures: 5 per user name, then 429 (even with the right password), before any hash is checked
        token = (await (await c.get("/api/session")).json())["csrf"]
        for _ in range(5):
            r = await c.post("/api/login", headers={"X-CSRF-Token": token},
                             data=orjson.dumps({"username": "admin1", "password": "guess"}))
            assert r.status == 401 and (await r.json())["error"] == "wrong user name or password"
        r = await c.post("/api/login", headers={"X-CSRF-Token": token},
                         data=orjson.dumps({"username": "admin1", "password": PASSWORD}))
        assert r.status == 429 and 0 < int(r.headers["Retry-After"]) <= 900
        # an unknown name answers as a wrong password does
        r = await c.post("/api/login", headers={"X-CSRF-Token": token},
                         data=orjson.dumps({"username": "nobody", "password": "x"}))
        assert r.status == 401 and (await r.json())["error"] == "wrong user name or password"
        r = await c.post("/api/login", headers={"X-CSRF-Token": token}, data=b"x" * 5000)
        assert r.status == 413


def test_login_csrf_cookies_logout_and_failure_limits(users):
    asyncio.run(_login(users))


async def _concurrent_wrong_logins(users):
    now = [0.0]
    logins = Logins("on", UsersFile(users),
                    by_user=FailureLimiter(USER_FAILURES, FAILURE_WINDOW_S, clock=lambda: now[0]),
                    by_address=FailureLimiter(ADDRESS_FAILURES, FAILURE_WINDOW_S, clock=lambda: now[0]))
    checked = []
    verify = logins.verifier.verify

    async def counting(password_hash, password):
        checked.append(password)
        return await verify(password_hash, password)

    logins.verifier.verify = counting
    async with TestClient(TestServer(app_of(Store(), users, logins=logins))) as c:
        token = (await (await c.get("/api/session")).json())["csrf"]

        async def attempt(password):
            r = await c.post("/api/login", headers={"X-CSRF-Token": token},
                             data=orjson.dumps({"username": "admin1", "password": password}))
            return r.status

        # 20 wrong passwords at once: the verification slots (2) make most of them wait; each is counted
        # before it waits, so only USER_FAILURES passwords are checked, the rest are refused at once
        statuses = await asyncio.gather(*(attempt(f"guess{i}") for i in range(20)))
        assert sorted(statuses) == [401] * USER_FAILURES + [429] * (20 - USER_FAILURES), statuses
        assert len(checked) == USER_FAILURES
        assert await attempt(PASSWORD) == 429  # the right password too, within the window
        now[0] = FAILURE_WINDOW_S + 1
        assert await attempt(PASSWORD) == 200  # after the window: the right password logs in
        assert len(logins.by_address) == 0  # the failures left the window; the success took back its own count
        assert logins.counts["failed_logins"] == USER_FAILURES and logins.counts["limited_logins"] == 16


def test_concurrent_wrong_logins_are_limited_before_their_passwords_are_checked(tmp_path):
    asyncio.run(_concurrent_wrong_logins(write_users(tmp_path / "users.toml")))


async def _sessions_follow_the_file(tmp_path):
    f = write_users(tmp_path / "users.toml")
    async with TestClient(TestServer(app_of(Store(), f))) as c:
        await login(c, "desk1")
        assert (await c.get("/api/meta")).status == 200
        add_user(f, "desk1", "desk", None, "a new password", replace=True)  # the file is read again
        assert (await c.get("/api/meta")).status == 401  # the old password's session ended
        f.write_text("not toml [")  # a bad edit: logged, the users read before stay
        await login(c, "desk1", "a new password")
        assert (await c.get("/api/meta")).status == 200


def test_a_changed_password_ends_its_sessions(tmp_path):
    asyncio.run(_sessions_follow_the_file(tmp_path))


async def _proxy(users):
    import ipaddress

    for nets, want in ((("10.0.0.0/8",), 401), (("127.0.0.1/32",), 200)):
        proxies = tuple(ipaddress.ip_network(n) for n in nets)
        app = app_of(Store(), users, proxy_header="X-Forwarded-User", proxies=proxies)
        async with TestClient(TestServer(app)) as c:  # the test client connects from 127.0.0.1
            r = await c.get("/api/meta", headers={"X-Forwarded-User": "desk1"})
            assert r.status == want, (nets, await r.text())
            if want == 200:
                assert (await r.json())["user"]["name"] == "desk1"
                r = await c.get("/api/meta", headers={"X-Forwarded-User": "stranger"})
                assert r.status == 401  # a user the users file does not have
                r = await c.get("/api/users", headers={"X-Forwarded-User": "admin1"})
                assert r.status == 200 and "$argon2" not in await r.text()


def test_the_proxy_user_header_is_believed_only_from_a_trusted_address(users):
    asyncio.run(_proxy(users))


async def _locked():
    async with TestClient(TestServer(app_of(Store(), None))) as c:
        r = await c.get("/api/alerts")
        assert r.status == 503 and "SURVEIL_CONSOLE_USERS_FILE" in (await r.json())["error"]
        assert (await (await c.get("/api/session")).json())["locked"].startswith("the console needs logins")
        r = await c.get("/console/", allow_redirects=False)
        assert r.status == 302
    async with TestClient(TestServer(app_of(Store(), None, logins=Logins("off")))) as c:
        body = await (await c.get("/api/meta")).json()
        assert body["user"] == {"name": "anonymous", "role": "desk", "broker": None}


def test_no_users_file_locks_the_console_and_auth_off_is_a_desk(tmp_path):
    asyncio.run(_locked())


# -- a broker user ---------------------------------------------------------------------------------------
async def _broker(result, users, lingjun, firms):
    mine, other = firms
    store = filled(result)
    views = {a["alert_id"]: broker_views(a) for a in result.alerts}
    own_ids = {v[mine]["alert_id"] for v in views.values() if mine in v}  # a copy may have its own id
    others = [a for a in result.alerts if mine not in views[a["alert_id"]]]
    assert own_ids and others
    copy_of_lj = views[lingjun["alert_id"]][mine]
    async with logged_in(store, users, "firm1") as c:
        body = await (await c.get("/api/alerts", params={"limit": "5000"})).json()
        assert {s["alert_id"] for s in body["alerts"]} == own_ids and body["total"] == len(own_ids)
        assert all(s["brokers"] == [mine] for s in body["alerts"])
        # the Lingjun alert is the firm's copy, the one on its broker topic, exactly
        got = await (await c.get(f"/api/alerts/{copy_of_lj['alert_id']}")).json()
        assert got["alert"] == copy_of_lj and "by_broker" not in got["alert"]["evidence"]
        assert got["alert"]["value"] < lingjun["value"] and got["recommendations"] == []
        assert {x["broker"] for x in got["alert"]["evidence"]["by_account"]} == {mine}
        assert (await c.get(f"/api/alerts/{copy_of_lj['alert_id']}/chart.svg")).status == 200
        # another firm's alert and account, and the owner-wide alert: 404, as an unknown one
        a = others[0]
        for path in (f"/api/alerts/{a['alert_id']}", f"/api/alerts/{a['alert_id']}/chart.svg",
                     *([f"/api/alerts/{lingjun['alert_id']}"] if copy_of_lj["alert_id"] != lingjun["alert_id"]
                       else [])):
            r = await c.get(path)
            assert r.status == 404 and "no such alert" in (await r.json())["error"]
        theirs = next(x for x in lingjun["evidence"]["by_account"] if x["broker"] == other)
        r = await c.get(f"/api/accounts/{theirs['venue']}/{theirs['account']}")
        assert r.status == 404 and f"no such account of member firm {mine!r}" in (await r.json())["error"]
        own = next(x for x in lingjun["evidence"]["by_account"] if x["broker"] == mine)
        r = await c.get(f"/api/accounts/{own['venue']}/{own['account']}")
        assert r.status == 200 and [s["alert_id"] for s in (await r.json())["alerts"]] == [copy_of_lj["alert_id"]]
        body = await (await c.get("/api/owners/LINGJUN")).json()
        assert {x["account"] for x in body["accounts"]} == {
            x["account"] for x in lingjun["evidence"]["by_account"] if x["broker"] == mine}
        assert body["recommendations"] == []  # the owner's recommendation is computed from the owner-wide alert
        assert (await c.get("/api/owners/SOMEONE-ELSE")).status == 404
        for rec in (await (await c.get("/api/recommendations")).json())["recommendations"]:
            assert "account" in rec["subject"] and set(rec["reasons"]) & own_ids
        meta = await (await c.get("/api/meta")).json()
        assert meta["alerts"] == len(own_ids) and "counts" not in meta and meta["user"]["broker"] == mine
        assert (await c.get("/api/users")).status == 403

        # the live stream sends the firm's copies, and nothing of other firms
        r = await c.get("/api/events")
        assert (await r.content.readuntil(b"\n\n")).startswith(b"event: hello")
        foreign = copy.deepcopy(others[0])
        foreign["alert_id"] = "f" * 32
        store.put_alert(foreign)
        store.put_alert(lingjun)
        frame = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        lines = dict(x.split(": ", 1) for x in frame.decode().strip().split("\n"))
        sent = orjson.loads(lines["data"])
        assert sent["alert_id"] == copy_of_lj["alert_id"] and sent["value"] == copy_of_lj["value"]
        store.close()
    async with logged_in(filled(result), users, "admin1") as c:  # the admin: everything, and the users
        body = await (await c.get("/api/alerts", params={"limit": "5000"})).json()
        assert body["total"] == len(result.alerts)
        body = await (await c.get("/api/users")).json()
        assert {u["name"]: u["role"] for u in body["users"]} == {
            "desk1": "desk", "admin1": "admin", "firm1": "broker", "firm2": "broker"}


def test_a_broker_user_sees_only_its_firms_copies(result, users, lingjun, firms):
    asyncio.run(_broker(result, users, lingjun, firms))
