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
    """Add the console to a Faust app built by :func:`surveil.stream.app.create_app` (no-op when off). A
    users file that cannot be used, or logins off on an address other computers reach, is a
    :class:`~surveil.stream.settings.SettingsError`."""
    from surveil.stream.settings import SettingsError, is_loopback
    from surveil.web.api import Console
    from surveil.web.login import logins_from

    s = worker_service.worker.s
    if not s.console:
        return None
    bind = str(app.conf.web_bind)
    if not s.console_auth and not is_loopback(bind):
        raise SettingsError(f"SURVEIL_CONSOLE_AUTH='off': the console without logins listens only on a loopback "
                            f"address; the web server binds {bind!r}")
    logins, storage = logins_from(s, int(app.conf.web_port))
    if logins.mode == "locked":
        log.warning("console: %s; until then it answers 503", "no SURVEIL_CONSOLE_USERS_FILE: "
                    "the console needs logins (or SURVEIL_CONSOLE_AUTH=off on a loopback address)")
    store = Store()
    console = Console(store, worker_service.worker, logins)
    console.mount(app.web.web_app, storage)
    svc = ConsoleService(s, store)
    app.service(svc)
    app.surveil_console = console  # type: ignore[attr-defined]
    return svc
