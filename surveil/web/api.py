"""The console's HTTP handlers (aiohttp): the JSON API, server-sent events, the chart and the static page.

Every endpoint is documented in ``docs/console.md``. A bad parameter is a ``400`` whose JSON body names the
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
STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
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


class Console:
    """Handlers over a :class:`Store` and (optionally) the local worker, for the account pages."""

    def __init__(self, store: Store, worker: Any = None) -> None:
        self.store = store
        self.worker = worker
        self._charts: dict[tuple[str, str], str] = {}
        self._static = {name: resources.files("surveil.web").joinpath("static", name).read_bytes()
                        for name in STATIC}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.root),
            web.get("/console", self.page),
            web.get("/console/", self.page),
            web.get("/console/static/{name}", self.static),
            web.get("/api/meta", _guarded(self.meta)),
            web.get("/api/alerts", _guarded(self.alerts)),
            web.get("/api/alerts/{alert_id}", _guarded(self.alert)),
            web.get("/api/alerts/{alert_id}/chart.svg", _guarded(self.chart)),
            web.get("/api/recommendations", _guarded(self.recommendations)),
            web.get("/api/accounts/{venue}/{account}", _guarded(self.account)),
            web.get("/api/owners/{owner}", _guarded(self.owner)),
            web.get("/api/events", self.events),  # a stream: its errors cannot become a response once it started
        ]

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
        return _json({"rules": list(RULE_IDS), "venues": list(VENUES), "severities": list(SEVERITIES),
                      "statuses": list(STATUSES), "alerts": len(s.alerts), "recommendations": len(s.recos),
                      "caught_up": s.caught_up, "seq": s.seq, "counts": s.counts, "refused": dict(s.refused),
                      "live_subscribers": len(s.subscribers),
                      # reference updates that came after the events they cover (they apply from their arrival on)
                      "ref_late": list(getattr(self.worker, "ref_late", [])) if self.worker is not None else [],
                      "limits": {"limit": LIMIT_MOST, "limit_default": LIMIT_DEFAULT, "id_chars": MAX_ID_CHARS,
                                 "list_values": MAX_VALUES, "page_alerts": PAGE_ALERTS,
                                 "owner_accounts": OWNER_ACCOUNTS}})

    async def alerts(self, request: web.Request) -> web.Response:
        f = Filters.parse(request.query)
        limit = parse_limit(request.query, LIMIT_DEFAULT, LIMIT_MOST)
        rows, total = self.store.list(f, limit)
        return _json({"alerts": rows, "total": total, "seq": self.store.seq, "caught_up": self.store.caught_up})

    def _get(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The alert, else the error: 422 when its record was refused (with the reason), else 404."""
        aid = parse_id("alert_id", request.match_info["alert_id"])
        a = self.store.alerts.get(aid)
        if a is not None:
            return a
        why = self.store.refused_ids.get(aid)
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
        return _json({"alert": a, "summary": self.store.summaries[a["alert_id"]], "display": display,
                      "recommendations": self.store.recommendations_for(alert_id=a["alert_id"])})

    async def chart(self, request: web.Request) -> web.Response:
        a = self._get(request)
        if isinstance(a, web.Response):
            return a
        key = (a["alert_id"], a["status"])
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
        rows, total = self.store.recommendations(f, limit)
        return _json({"recommendations": rows, "total": total})

    async def account(self, request: web.Request) -> web.Response:
        venue, account = request.match_info["venue"], parse_id("account", request.match_info["account"])
        if venue not in VENUES:
            return _error(400, f"venue={venue!r}: unknown venue; expected one of {', '.join(VENUES)}")
        name = f"{venue}:{account}"
        alerts, _ = self.store.list(Filters(account=name), PAGE_ALERTS)
        activity = account_activity(self.worker, venue, account) if self.worker is not None else None
        peak = self._peak(alerts)
        ref = None
        if self.worker is not None:
            r = self.worker.ref.get(VENUES.index(venue), account)
            if r is not None:
                ref = {"owner": r.owner, "broker": r.broker, "reported": r.reported}
        return _json({"venue": venue, "account": account, "reference": ref, "activity": activity,
                      "peak_second": peak, "alerts": alerts,
                      "recommendations": self.store.recommendations_for(account=(venue, account))})

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

    def _peak(self, alerts: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The peak message rate (``evidence.peak_rate``, given by the rules that measure one) of the latest
        such alert among an account's alerts (newest first)."""
        for s in alerts:
            a = self.store.alerts[s["alert_id"]]
            peak = (a.get("evidence") or {}).get("peak_rate")
            if peak is not None and "venue" in a["subject"]:
                return {"count": peak["count"], "at": peak["at"], "at_iso": peak["at_iso"],
                        "at_text": ns_text(peak["at"]), "trading_day": s["trading_day"], "status": s["status"]}
        return None

    async def owner(self, request: web.Request) -> web.Response:
        owner = parse_id("owner", request.match_info["owner"])
        alerts, _ = self.store.list(Filters(owner=owner), PAGE_ALERTS)
        day = self._day(request)
        accounts: dict[str, dict[str, Any]] = {}
        if self.worker is not None:
            accounts.update(owner_accounts(self.worker.ref, owner, day))
        for s in alerts:
            for name in s["accounts"]:
                v, acct = name.split(":", 1)
                accounts.setdefault(name, {"venue": v, "account": acct, "broker": None})
        names = sorted(accounts)[:OWNER_ACCOUNTS]
        # each account's alerts in one pass over the store (not one pass per account), newest first
        of_account: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for s in self.store.summaries.values():
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
            x["peak_second"] = self._peak(mine)
            rows.append(x)
        return _json({"owner": owner, "day": day_str(day), "accounts": rows, "accounts_total": len(accounts),
                      "alerts": alerts,
                      "recommendations": self.store.recommendations_for(owner=owner)})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``alert`` (a summary, filtered) and ``recommendation``, as they arrive."""
        try:
            f = Filters.parse(request.query, tuple(p for p in Filters.PARAMS if p != "limit"))
        except FilterError as e:
            return _error(400, str(e))
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
                    await resp.write(b": keepalive\n\n")
                    continue
                if item is None:
                    break
                kind, seq, data = item
                if kind == "alert" and not f.match(data):
                    continue
                await resp.write(b"event: " + kind.encode() + b"\nid: " + str(seq).encode() + b"\ndata: "
                                 + orjson.dumps(data) + b"\n\n")
        except ConnectionResetError:  # the browser went away
            pass
        finally:
            self.store.unsubscribe(q)
        return resp
