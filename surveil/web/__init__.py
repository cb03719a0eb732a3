"""The live console, served by the worker's Faust web server (see docs/console.md).

:func:`install` adds the console's routes to the app's aiohttp application and a service that runs the
console's own reader of the alert and recommendation topics. With ``SURVEIL_CONSOLE=off`` it does nothing,
so a benchmark can compare the worker with and without it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import mode

from surveil.web.store import Store

log = logging.getLogger("surveil.console")


class ConsoleService(mode.Service):
    """Runs the console's topic reader for the life of the app, and ends live streams when stopping."""

    def __init__(self, settings: Any, store: Store, **kwargs: Any) -> None:
        from surveil.web.alert_feed import AlertFeed

        self.store = store
        self.feed = AlertFeed(settings, store)
        self._task: asyncio.Task | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self._task = asyncio.create_task(self.feed.run())

    async def on_stop(self) -> None:
        self.store.close()  # live event streams end, so the web server can stop at once
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5.0)


def install(app: Any, worker_service: Any) -> ConsoleService | None:
    """Add the console to a Faust app built by :func:`surveil.stream.app.create_app` (no-op when off)."""
    from surveil.web.api import Console

    s = worker_service.worker.s
    if not s.console:
        return None
    store = Store()
    console = Console(store, worker_service.worker)
    app.web.web_app.router.add_routes(console.routes())
    svc = ConsoleService(s, store)
    app.service(svc)
    app.surveil_console = console  # type: ignore[attr-defined]
    return svc
