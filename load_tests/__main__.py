"""``python -m load_tests capacity|soak|overload|short [options]`` (see load_tests/__init__.py and
docs/benchmarks.md). Without ``--bootstrap`` the command starts its own single-node Kafka on free ports
(``SURVEIL_KAFKA_LIB`` or ``python -m surveil.kafka_local resolve`` for the jars) and removes it at the end.
Results (JSON) and plots (PNG) go to ``--out`` (``out/load``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path

from load_tests import suite
from load_tests.runs import own_broker


def _summary(r: dict) -> dict:
    keep = ("name", "capacity_eps", "sent", "phase_results", "recovery", "soak_caught_up_at_end", "lag_events_max",
            "seconds_to_drain_after_feed", "worker_alive_throughout", "worker_exit_code_after_sigterm",
            "worker_rss_mib", "final_alerts", "replay_alerts", "equals_replay", "latency", "plots")
    s = {k: r[k] for k in keep if k in r}
    if "sent" in s:
        s["sent"] = {k: v for k, v in s["sent"].items() if k != "progress"}
    s["loadavg"] = [r["machine"]["loadavg"], r["machine_after"]["loadavg"]] if "machine_after" in r else None
    return s


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m load_tests", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["capacity", "soak", "overload", "short"])
    ap.add_argument("--bootstrap", help="an existing Kafka (default: start one for the run)")
    ap.add_argument("--out", type=Path, default=Path("out/load"))
    ap.add_argument("--events", type=int, default=2_000_000, help="background events of the simulated day")
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--backlog-events", type=int, default=6_000_000, help="capacity: backlog size")
    ap.add_argument("--capacity", type=float, default=None,
                    help="one worker's capacity in events/s (default: measured first, on a backlog)")
    ap.add_argument("--minutes", type=float, default=20.0, help="soak: duration")
    ap.add_argument("--fraction", type=float, default=0.7, help="soak: rate as a fraction of the capacity")
    ap.add_argument("--factor", type=float, default=2.0, help="overload: rate as a multiple of the capacity")
    ap.add_argument("--seconds", type=float, default=60.0, help="overload: duration of the overload")
    ap.add_argument("--recover-seconds", type=float, default=120.0, help="overload: duration of the low rate after")
    ap.add_argument("--recover-fraction", type=float, default=0.1, help="overload: the low rate, x capacity")
    ap.add_argument("--name", default=None, help="file names of the results (default: the command)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def on_term(signum, frame):  # run the finally blocks: stop the worker and the broker
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    with (contextlib.nullcontext(None) if a.bootstrap else own_broker()) as info:
        bootstrap = a.bootstrap or info.bootstrap
        pid = None if info is None else info.pid
        if a.command == "capacity":
            r = asyncio.run(suite.run_capacity(bootstrap, a.out, a.events, a.accounts, a.backlog_events))
            print(json.dumps(r, indent=1))
            return
        fn = {"soak": suite.soak, "overload": suite.overload}.get(a.command)
        if fn is None:
            r = asyncio.run(suite.short(bootstrap, a.out, pid))
        else:
            r = asyncio.run(fn(bootstrap, a.out, a, pid))
    print(json.dumps(_summary(r), indent=1, default=str))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
