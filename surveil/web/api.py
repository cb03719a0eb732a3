"""The console's HTTP handlers (aiohttp): the JSON API, server-sent events, the chart and the static page.

Every endpoint is documented in ``docs/console.md``. Each but the login page, the assets and the login
endpoints checks the user and its role first (:meth:`surveil.web.login.Logins.protect`); a broker user's
requests read only its member firm's copies of the alerts (``scope``: the firm's id; see
:mod:`surveil.web.store`), and an alert, account or owner of another firm is a ``404`` like an unknown one.
A bad parameter is a ``400`` whose JSON body names the
parameter and the value (``{"error": "venue='NYSE': unknown venue; expected one of SSE, SZSE, BSE"}``); an
unknown id is a ``404``; an alert that cannot be drawn a ``422``. Every input is bounded (ids, list
parameters, ``limit``, an owner's accounts, what a chart draws) and the store indexes only records it can
show, so no request fails on a record; an unexpected error is still a JSON body (``500``, logged).

Nanosecond timestamps are int64, which a browser's JSON numbers cannot hold: each is also sent as text made
here (``display`` of an alert, ``window_start_ns`` of a summary, ``at_text`` of a peak second), and the page
shows only those (see :mod:`surveil.report.text`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from surveil.engine.refdata import RefDataError, parse_valid_from, valid_from_text
from surveil.events.schema import VENUES, day_start_ns, day_str, trading_day_index
from surveil.report.text import evidence_text, ns_text
from surveil.web.activity import account_activity
from surveil.web.login import READERS, Logins, user_of
from surveil.web.store import (
    MAX_ID_CHARS,
    MAX_VALUES,
    RULE_IDS,
    SEVERITIES,
    STATUSES,
    FilterError,
    Filters,
    Store,
    parse_id,
    parse_limit,
)

log = logging.getLogger("surveil.console")
#: a comment line is sent on an idle event stream this often, so proxies keep it open
KEEPALIVE_S = 15.0
STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css",
          "login.html": "text/html", "login.js": "text/javascript"}
#: every console response: no script but the console's own files, no framing, no MIME sniffing
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
_CHART_CACHE_SIZE = 256
#: alerts of an account or owner page (newest first), and accounts of an owner page
PAGE_ALERTS = 5_000
OWNER_ACCOUNTS = 1_000
#: limit of the lists: default and most
LIMIT_DEFAULT, LIMIT_MOST = 500, 5_000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guarded(handler: Handler) -> Handler:
    """A bad parameter (FilterError) is a 400; any other error a logged 500 with a JSON body (never HTML)."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except FilterError as e:
            return _error(400, str(e))
        except web.HTTPException:
            raise
        except Exception as e:  # noqa: BLE001 - the console must not take the worker's web server down
            log.exception("console: %s %s failed", request.method, request.path_qs[:200])
            return _error(500, f"internal error ({type(e).__name__}); see the worker's log")

    return run


def owner_accounts(ref: Any, owner: str, day: int) -> dict[str, dict[str, Any]]:
    """The accounts whose reference data gives them to ``owner`` at some time of trading ``day``, each with
    the broker and the validity (``valid_from``, ``valid_until``: None for since always / until further notice)
    of the row, the earliest of the day when several (``rows_today``: how many)."""
    d0, d1 = day_start_ns(day), day_start_ns(day + 1)
    out: dict[str, dict[str, Any]] = {}
    for (v, acct), h in list(ref.histories.items()):
        for i, r in enumerate(h):
            until = h[i + 1].since if i + 1 < len(h) else None
            if r.owner != owner or r.since >= d1 or (until is not None and until <= d0):
                continue
            name = f"{VENUES[v]}:{acct}"
            if name in out:
                out[name]["rows_today"] += 1
                continue
            out[name] = {"venue": VENUES[v], "account": acct, "broker": r.broker,
                         "valid_from": valid_from_text(r.valid_from), "valid_until": valid_from_text(until),
                         "rows_today": 1}
    return out


def _scope(request: web.Request) -> str | None:
    return user_of(request).scope


#: the routes anyone may request: the login page and its assets, who-am-I (with the CSRF token), the login
PUBLIC = frozenset({"/", "/console/login", "/console/static/{name}", "/api/session", "/api/login"})


class Console:
    """Handlers over a :class:`Store` and (optionally) the local worker, for the account pages; ``logins``
    says who may ask (:class:`~surveil.web.login.Logins`)."""

    def __init__(self, store: Store, worker: Any = None, logins: Logins | None = None) -> None:
        self.store = store
        self.worker = worker
        self._charts: dict[tuple[str, str, str | None], str] = {}
        self._static = {name: resources.files("surveil.web").joinpath("static", name).read_bytes()
                        for name in STATIC}
        self.logins = logins if logins is not None else Logins("locked")
        self.logins.login_html = self._static["login.html"]

    def routes(self) -> list[web.RouteDef]:
        L = self.logins

        def api(handler: Any, roles: tuple[str, ...] = READERS) -> Any:
            return L.protect(_guarded(handler), roles)

        return [
            web.get("/", self.root),
            web.get("/console/login", L.login_page),
            web.get("/console/static/{name}", self.static),
            web.get("/api/session", _guarded(L.session)),
            web.post("/api/login", _guarded(L.login)),
            web.post("/api/logout", api(L.logout)),
            web.get("/console", L.protect(self.page, page=True)),
            web.get("/console/", L.protect(self.page, page=True)),
            web.get("/api/meta", api(self.meta)),
            web.get("/api/alerts", api(self.alerts)),
            web.get("/api/alerts/{alert_id}", api(self.alert)),
            web.get("/api/alerts/{alert_id}/chart.svg", api(self.chart)),
            web.get("/api/recommendations", api(self.recommendations)),
            web.get("/api/accounts/{venue}/{account}", api(self.account)),
            web.get("/api/owners/{owner}", api(self.owner)),
            web.get("/api/users", api(L.users_list, ("admin",))),
            # a stream: its errors cannot become a response once it started
            web.get("/api/events", L.protect(self.events)),
        ]

    def mount(self, app: web.Application, session_storage: Any) -> None:
        """Add the console to an aiohttp application: its routes, the session cookies (aiohttp-session's
        middleware with ``session_storage``) and the security headers of every console response."""
        import aiohttp_session

        aiohttp_session.setup(app, session_storage)
        app.router.add_routes(self.routes())

        async def headers(request: web.Request, response: web.StreamResponse) -> None:
            if request.path.startswith(("/console", "/api/")):
                for k, v in SECURITY_HEADERS.items():
                    response.headers.setdefault(k, v)
                if request.path.startswith("/api/"):
                    response.headers.setdefault("Cache-Control", "no-store")

        app.on_response_prepare.append(headers)

    # -- pages ------------------------------------------------------------------------------------
    async def root(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/console/")

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._static["index.html"], content_type="text/html", charset="utf-8")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            return _error(404, f"name={name!r}: no such file")
        return web.Response(body=self._static[name], content_type=STATIC[name], charset="utf-8")

    # -- API ---------------------------------------------------------------------------------------
    async def meta(self, request: web.Request) -> web.Response:
        s = self.store
        user = user_of(request)
        limits = {"limit": LIMIT_MOST, "limit_default": LIMIT_DEFAULT, "id_chars": MAX_ID_CHARS,
                  "list_values": MAX_VALUES, "page_alerts": PAGE_ALERTS, "owner_accounts": OWNER_ACCOUNTS}
        if user.scope is not None:  # a member firm's user: its own counts, nothing of the cluster's
            return _json({"rules": list(RULE_IDS), "venues": list(VENUES), "severities": list(SEVERITIES),
                          "statuses": list(STATUSES), "alerts": len(s.summaries_of(user.scope)),
                          "caught_up": s.caught_up, "seq": s.seq, "ref_late": [], "limits": limits,
                          "user": user.public()})
        return _json({"user": user.public(), "rules": list(RULE_IDS), "venues": list(VENUES),
                      "severities": list(SEVERITIES),
                      "statuses": list(STATUSES), "alerts": len(s.alerts), "recommendations": len(s.recos),
                      "caught_up": s.caught_up, "seq": s.seq, "counts": s.counts, "refused": dict(s.refused),
                      "live_subscribers": len(s.subscribers),
                      # reference updates that came after the events they cover (they apply from their arrival on)
                      "ref_late": list(getattr(self.worker, "ref_late", [])) if self.worker is not None else [],
                      "limits": limits})

    async def alerts(self, request: web.Request) -> web.Response:
        f = Filters.parse(request.query)
        limit = parse_limit(request.query, LIMIT_DEFAULT, LIMIT_MOST)
        rows, total = self.store.list(f, limit, _scope(request))
        return _json({"alerts": rows, "total": total, "seq": self.store.seq, "caught_up": self.store.caught_up})

    def _get(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The alert, else the error: 422 when its record was refused (with the reason), else 404."""
        aid = parse_id("alert_id", request.match_info["alert_id"])
        scope = _scope(request)
        a = self.store.alert_of(aid, scope)
        if a is not None:
            return a
        why = self.store.refused_ids.get(aid) if scope is None else None
        if why is not None:
            return _error(422, f"alert_id={aid!r}: its record on the alerts topic was refused ({why})")
        return _error(404, f"alert_id={aid!r}: no such alert")

    async def alert(self, request: web.Request) -> web.Response:
        a = self._get(request)
        if isinstance(a, web.Response):
            return a
        # the ns timestamps as text (Asia/Shanghai): the page shows these, never the int64 as a JS number
        display = {"window_start": ns_text(a["window_start"]), "window_end": ns_text(a["window_end"]),
                   "evidence": evidence_text(a.get("evidence") or {})}
        scope = _scope(request)
        return _json({"alert": a, "summary": self.store.summaries_of(scope)[a["alert_id"]], "display": display,
                      "recommendations": self.store.recommendations_for(alert_id=a["alert_id"], scope=scope)})

    async def chart(self, request: web.Request) -> web.Response:
        a = self._get(request)
        if isinstance(a, web.Response):
            return a
        key = (a["alert_id"], a["status"], _scope(request))  # a firm's chart is drawn from its copy
        svg = self._charts.get(key)
        if svg is None:
            # imported on first use: a worker whose console nobody opens never loads matplotlib
            from surveil.report.charts import ChartError, chart_svg

            try:
                # matplotlib takes ~0.1-0.3 s: off the event loop, so the worker's loop is not held up
                svg = await asyncio.to_thread(chart_svg, a)
            except ChartError as e:
                return _error(422, str(e))
            if len(self._charts) >= _CHART_CACHE_SIZE:
                self._charts.pop(next(iter(self._charts)))
            self._charts[key] = svg
        return web.Response(text=svg, content_type="image/svg+xml", charset="utf-8")

    async def recommendations(self, request: web.Request) -> web.Response:
        f = Filters.parse(request.query, ("venue", "owner", "account", "day", "limit"))
        limit = parse_limit(request.query, LIMIT_DEFAULT, LIMIT_MOST)
        rows, total = self.store.recommendations(f, limit, _scope(request))
        return _json({"recommendations": rows, "total": total})

    async def account(self, request: web.Request) -> web.Response:
        venue, account = request.match_info["venue"], parse_id("account", request.match_info["account"])
        if venue not in VENUES:
            return _error(400, f"venue={venue!r}: unknown venue; expected one of {', '.join(VENUES)}")
        name = f"{venue}:{account}"
        scope = _scope(request)
        alerts, _ = self.store.list(Filters(account=name), PAGE_ALERTS, scope)
        ref = None
        if self.worker is not None:
            r = self.worker.ref.get(VENUES.index(venue), account)
            if r is not None and (scope is None or r.broker == scope):
                ref = {"owner": r.owner, "broker": r.broker, "reported": r.reported}
        if scope is not None and not alerts and not self._firm_had(scope, venue, account):
            return _error(404, f"account={name!r}: no such account of member firm {scope!r}")
        activity = account_activity(self.worker, venue, account) if self.worker is not None else None
        peak = self._peak(alerts, scope)
        return _json({"venue": venue, "account": account, "reference": ref, "activity": activity,
                      "peak_second": peak, "alerts": alerts,
                      "recommendations": self.store.recommendations_for(account=(venue, account), scope=scope)})

    def _firm_had(self, firm: str, venue: str, account: str) -> bool:
        """Whether reference data gives the account to ``firm`` at some time (the worker's history of it)."""
        if self.worker is None:
            return False
        rows = self.worker.ref.histories.get((VENUES.index(venue), account)) or []
        return any(r.broker == firm for r in rows)

    def _day(self, request: web.Request) -> int:
        """The trading day a page shows: ``?day=YYYY-MM-DD``, else the worker's newest event's, else today's."""
        text = request.query.get("day")
        if text:
            try:
                return int(trading_day_index(parse_valid_from(text)))
            except RefDataError:
                raise web.HTTPBadRequest(text=f"day={text[:40]!r}: expected YYYY-MM-DD") from None
        now = self.worker.event_time() if self.worker is not None else None
        return int(trading_day_index(now if now is not None else time.time_ns()))

    def _peak(self, alerts: list[dict[str, Any]], scope: str | None) -> dict[str, Any] | None:
        """The peak message rate (``evidence.peak_rate``, given by the rules that measure one) of the latest
        such alert among an account's alerts (newest first)."""
        for s in alerts:
            a = self.store.alert_of(s["alert_id"], scope)
            if a is None:
                continue
            peak = (a.get("evidence") or {}).get("peak_rate")
            if peak is not None and "venue" in a["subject"]:
                return {"count": peak["count"], "at": peak["at"], "at_iso": peak["at_iso"],
                        "at_text": ns_text(peak["at"]), "trading_day": s["trading_day"], "status": s["status"]}
        return None

    async def owner(self, request: web.Request) -> web.Response:
        owner = parse_id("owner", request.match_info["owner"])
        scope = _scope(request)
        alerts, _ = self.store.list(Filters(owner=owner), PAGE_ALERTS, scope)
        day = self._day(request)
        accounts: dict[str, dict[str, Any]] = {}
        if self.worker is not None:
            accounts.update({k: x for k, x in owner_accounts(self.worker.ref, owner, day).items()
                             if scope is None or x["broker"] == scope})
        if scope is not None and not accounts and not alerts:
            return _error(404, f"owner={owner!r}: no such owner of member firm {scope!r}'s accounts")
        for s in alerts:
            for name in s["accounts"]:
                v, acct = name.split(":", 1)
                accounts.setdefault(name, {"venue": v, "account": acct, "broker": None})
        names = sorted(accounts)[:OWNER_ACCOUNTS]
        # each account's alerts in one pass over the store (not one pass per account), newest first
        of_account: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for s in self.store.summaries_of(scope).values():
            for name in s["accounts"]:
                if name in of_account:
                    of_account[name].append(s)
        rows = []
        for name in names:
            x = accounts[name]
            if self.worker is not None:
                x = {**x, "activity": account_activity(self.worker, x["venue"], x["account"])}
            mine = sorted(of_account[name], key=lambda s: (s["window_start"], s["rule"], s["subject_text"]),
                          reverse=True)
            x["peak_second"] = self._peak(mine, scope)
            rows.append(x)
        return _json({"owner": owner, "day": day_str(day), "accounts": rows, "accounts_total": len(accounts),
                      "alerts": alerts,
                      "recommendations": self.store.recommendations_for(owner=owner, scope=scope)})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``alert`` (a summary, filtered) and ``recommendation``, as they arrive."""
        try:
            f = Filters.parse(request.query, tuple(p for p in Filters.PARAMS if p != "limit"))
        except FilterError as e:
            return _error(400, str(e))
        scope = _scope(request)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q = self.store.subscribe()
        try:
            await resp.write(b"event: hello\ndata: " + orjson.dumps({"seq": self.store.seq}) + b"\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except TimeoutError:
                    if q not in self.store.subscribers:  # dropped (too slow) or the server is stopping
                        break
                    if await self.logins.user(request) != user_of(request):  # removed, or password changed
                        break
                    await resp.write(b": keepalive\n\n")
                    continue
                if item is None:
                    break
                kind, seq, data, scoped = item
                if scope is not None:  # a member firm's user: its copy, or nothing
                    data = scoped.get(scope)
                    if data is None:
                        continue
                if kind == "alert" and not f.match(data):
                    continue
                await resp.write(b"event: " + kind.encode() + b"\nid: " + str(seq).encode() + b"\ndata: "
                                 + orjson.dumps(data) + b"\n\n")
        except ConnectionResetError:  # the browser went away
            pass
        finally:
            self.store.unsubscribe(q)
        return resp
