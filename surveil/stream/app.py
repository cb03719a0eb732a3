"""The Faust app that hosts a stream worker (``surveil worker``).

What Faust does here, and what it does not:

- **Faust runs the process**: the app object, the worker life cycle (``faust.Worker``: logging set-up,
  SIGTERM/SIGINT handling, an orderly stop of every service, a non-zero exit when a service crashes) and
  its aiohttp web server, which serves ``GET /status`` (the worker's partitions, offsets and counters, as
  JSON), ``GET /health`` (liveness: ``200 ok`` while the processing loop runs, ``503`` otherwise) and
  ``GET /ready`` (readiness: ``200`` while every assigned partition is processed, else ``503`` with the reasons).
- **The data path is ours**: :class:`~surveil.stream.worker.Worker`, a bare aiokafka consumer group
  with per-partition checkpoints, runs as a :class:`mode.Service` of the app. There are no Faust agents,
  topics or tables. Measured on our 2-vCPU machines (docs/architecture.md §2), a Faust agent handling one
  Kafka record per event does 8–9k events/s per worker, CPU-bound in Faust's per-record machinery
  (``stream.take()`` does not help), while a bare aiokafka ``getmany`` loop does 180–316k records/s;
  the checkpoint-and-seek design also avoids Faust's open issues with windowed tables across rebalances
  and offset commits (docs/architecture.md §7).
- **Faust does not touch Kafka**: its own consumer, producer, leader assignor and table manager are
  not started (:class:`_BootStrategy`), so it joins no consumer group of its own, creates no topic
  (no ``surveil-__assignor-__leader``, no changelogs) and opens no broker connection. The broker and
  credentials are still given to the app, so ``app.conf`` describes the cluster the worker uses.
- **One source of configuration**: Faust reads no environment variable (``env={}``: otherwise a stray
  ``WEB_PORT`` or ``BROKER_URL`` would override our settings); everything comes from ``SURVEIL_*``
  (:class:`~surveil.stream.settings.Settings`).

Stopping (SIGTERM, SIGINT), in this order (:meth:`WorkerService.on_stop`):
1. set ``Worker.stop``: the processing loop finishes the record it is handling and returns;
2. ``Worker.close()``: a final checkpoint of every assigned partition (outputs flushed first), then the
   Kafka clients are closed, which leaves the consumer group so that other workers take over at once.
Both steps together are bounded by :data:`STOP_TIMEOUT_S`; past it, the last periodic checkpoint stands
and the partitions are re-read from there (outputs are idempotent).

Importing this module has no side effect: the app is built by :func:`create_app`, and run by
:func:`run` (or :func:`main`, which reads the settings from the environment first).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import faust
import mode
import orjson
from faust.app.base import BootStrategy

from surveil.stream.settings import Settings, SettingsError
from surveil.stream.worker import Worker

log = logging.getLogger("surveil.app")

APP_ID = "surveil"
#: where the web server listens unless told otherwise (``--web-bind``): the status is not public
DEFAULT_WEB_BIND = "127.0.0.1"
#: the longest a stop may take (loop end + final checkpoint + closing the clients)
STOP_TIMEOUT_S = 25.0


class _BootStrategy(BootStrategy):
    """Start Faust's web server only: no Faust consumer, producer, leader assignor or tables, and no
    sensors (Faust's Monitor measures agents and tables, which we do not have; its 1-second sampler
    would only log event-loop drift)."""

    enable_kafka = False
    enable_kafka_consumer = False
    enable_kafka_producer = False
    enable_sensors = False


class SurveilApp(faust.App):
    BootStrategy = _BootStrategy

    async def on_first_start(self) -> None:
        # Faust would create ``<id>-data/v1/tables`` in the current directory for local tables;
        # there are none (the worker's state lives in its checkpoint topic).
        return None


class WorkerService(mode.Service):
    """Runs a :class:`~surveil.stream.worker.Worker` inside the Faust app: start, loop, stop."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        # The worker is built now (rules file read and checked), so that a bad configuration is an
        # error before Faust starts anything.
        self.worker = Worker(settings)
        self._task: asyncio.Future | None = None
        self._failed: BaseException | None = None
        super().__init__(**kwargs)

    @property
    def running(self) -> bool:
        """True while the processing loop runs (partitions are being read)."""
        w = self.worker
        return (w.ready.is_set() and not w.stop.is_set() and self._task is not None
                and not self._task.done())

    async def on_start(self) -> None:
        s = self.worker.s
        log.info("starting the stream worker: kafka %s, group %s, feed topics %s", s.bootstrap_servers,
                 s.group_id, ",".join(s.feed_topics))
        try:
            await self.worker.start()
        except BaseException as e:
            log.error("the stream worker could not start (Kafka at %s): %r", s.bootstrap_servers, e)
            await self.worker.close()
            raise
        # add_future: if the loop raises, mode crashes the service tree and the process exits non-zero
        self._task = self.add_future(self._process())

    async def _process(self) -> None:
        try:
            await self.worker.loop()
        except BaseException as e:
            self._failed = e
            raise
        if not self.worker.stop.is_set():  # pragma: no cover - the loop only returns when told to stop
            raise RuntimeError("the worker loop ended on its own")

    async def on_stop(self) -> None:
        w = self.worker
        w.stop.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT_S
        if self._task is not None and not self._task.done():
            done, _ = await asyncio.wait([self._task], timeout=STOP_TIMEOUT_S / 2)
            if not done:
                log.warning("the worker loop did not end within %.0f s: cancelling it", STOP_TIMEOUT_S / 2)
                self._task.cancel()
                await asyncio.wait([self._task], timeout=1.0)
                self._failed = self._failed or asyncio.CancelledError()
        if self._failed is not None:
            # The loop failed or was cancelled, maybe half way through a record: no final checkpoint
            # of its states; their partitions are read again from the last periodic checkpoint.
            log.warning("the worker loop %s: no final checkpoint, the last periodic one stands",
                        "was cancelled" if isinstance(self._failed, asyncio.CancelledError) else "failed")
            w.states.clear()
        before = w.stats["checkpoints"]
        parts = len(w.states)
        try:
            await asyncio.wait_for(w.close(), timeout=max(1.0, deadline - loop.time()))
        except TimeoutError:
            log.error("stopping took longer than %.0f s: the last periodic checkpoint stands", STOP_TIMEOUT_S)
            return
        if w.stats["checkpoints"] > before:
            log.info("final checkpoint written (%d partitions); stream worker stopped", parts)
        else:
            log.info("stream worker stopped (no final checkpoint: %s)",
                     "no partition" if not parts else "see the errors above")


def _credentials(settings: Settings) -> Any:
    """Faust's form of the Kafka security settings (the same as :meth:`Settings.kafka_kwargs`)."""
    proto = settings.security_protocol
    if proto == "PLAINTEXT":
        return None
    ssl_context = settings.kafka_kwargs().get("ssl_context")
    if proto.startswith("SASL"):
        return faust.SASLCredentials(username=settings.sasl_username, password=settings.sasl_password,
                                     mechanism=settings.sasl_mechanism, ssl_context=ssl_context)
    return faust.SSLCredentials(ssl_context)


def create_app(settings: Settings | None = None, *, web_bind: str | None = None) -> SurveilApp:
    """The Faust app hosting one stream worker, with ``/status`` and ``/health`` on its web server.

    ``settings`` default to :meth:`Settings.from_env` (a wrong setting raises :class:`SettingsError`);
    a bad rules file raises :class:`~surveil.rules.config.ConfigError`. Nothing connects until the app
    is started (:func:`run`)."""
    s = settings if settings is not None else Settings.from_env()
    bind = web_bind or getattr(s, "web_bind", None) or DEFAULT_WEB_BIND
    app = SurveilApp(
        APP_ID,
        env={},  # Faust reads no environment variable: SURVEIL_* only
        broker=[f"kafka://{b.strip()}" for b in s.bootstrap_servers.split(",")],
        broker_credentials=_credentials(s),
        autodiscover=False,
        store="memory://",
        topic_replication_factor=1,
        topic_disable_leader=True,
        web_enabled=True,
        web_port=s.web_port,
        web_bind=bind,
        web_host=bind if bind not in ("0.0.0.0", "::") else faust.Settings.NODE_HOSTNAME,  # for canonical_url
        web_router_enabled=False,  # table routing: no tables
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
    )
    svc = WorkerService(s)
    app.surveil_worker = svc  # type: ignore[attr-defined]
    app.service(svc)  # started after the web server, stopped before it

    from surveil.web import install

    install(app, svc)  # the live console (docs/console.md), unless SURVEIL_CONSOLE=off

    @app.page("/status")
    async def status(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """The worker's partitions (offset, progress, trading day) and counters."""
        return view.bytes(orjson.dumps(svc.worker.status()), content_type="application/json")

    @app.page("/metrics")
    async def metrics(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """Prometheus metrics (bounded labels: never an account or owner id)."""
        from surveil.metrics import CONTENT_TYPE_LATEST

        m = svc.worker.metrics
        if not m.enabled:
            return view.text("metrics are off (SURVEIL_METRICS=off)\n", status=404)
        m.sample(svc.worker, min_interval=0.5)  # gauges as of this scrape (lags, state size, partitions)
        return view.bytes(m.exposition(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """200 while the processing loop runs; 503 while starting or stopping."""
        if svc.running:
            return view.text("ok\n")
        return view.text("not running\n", status=503)

    @app.page("/ready")
    async def ready(view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """200 while every assigned partition is being processed; 503 with the reasons otherwise."""
        why = svc.worker.readiness() if svc.running else ["the processing loop is not running"]
        body = orjson.dumps({"ready": not why, "reasons": why})
        return view.bytes(body, content_type="application/json", status=200 if not why else 503)

    return app


_app: SurveilApp | None = None


def __getattr__(name: str) -> Any:
    """``surveil.stream.app.app``: the app built from the environment on first use, for Faust's own
    command line (``faust -A surveil.stream.app worker``)."""
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(app: faust.App, *, loglevel: str = "info") -> NoReturn:
    """Run the app as a Faust worker until SIGTERM/SIGINT; exit 0 after a clean stop, non-zero after a
    crash (for example Kafka unreachable for longer than the worker's retry deadline)."""
    worker = faust.Worker(app, loglevel=loglevel.lower(), quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``python -m surveil.stream.app [--log-level info] [--web-port N] [--web-bind HOST]``.

    Settings come from the SURVEIL_* environment variables; a wrong one is reported, naming the
    variable, with exit status 2 before Faust starts."""
    from surveil.rules.config import ConfigError

    p = argparse.ArgumentParser(prog="surveil-worker", description="Run a stream worker in a Faust app.")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error", "critical"],
                   type=str.lower)
    p.add_argument("--web-port", type=int, help="web server port (default: SURVEIL_WEB_PORT, 6066)")
    p.add_argument("--web-bind", help=f"web server address (default: {DEFAULT_WEB_BIND})")
    args = p.parse_args(argv)
    try:
        settings = Settings.from_env(web_port=args.web_port)
        app = create_app(settings, web_bind=args.web_bind)
    except (SettingsError, ConfigError) as e:
        print(f"surveil worker: bad settings: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    run(app, loglevel=args.log_level)


if __name__ == "__main__":
    main()
