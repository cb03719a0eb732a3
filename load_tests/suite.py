"""The load tests as runs: capacity, soak, overload, and the short versions the test suite runs.

Rates are fractions of **one worker's measured capacity**: the events/s a worker *process* (``python -m
surveil.stream.app``, as the load runs start it) sustains on a backlog of the same frames, measured in the
same session (:func:`load_tests.runs.capacity`, which also measures the in-process worker as
``bench/worker_bench.py`` does and a bare aiokafka consumer as the baseline). ``--capacity`` gives the figure
instead (to repeat a run at the same rates).

*Caught up* (lag "back to about 0"): the worker commits its input offsets after each checkpoint, so even a
worker that keeps up shows a committed lag of up to one checkpoint interval's input. A sample counts as
caught up when its committed lag is at most ``rate x (checkpoint interval + 2 sample intervals) + 2 chunks``
of the phase's rate (:func:`caught_up_threshold`).
"""

from __future__ import annotations

import json
from pathlib import Path

from load_tests.generator import CHUNK_EVENTS, Day, Phase
from load_tests.plots import plot_run
from load_tests.runs import capacity, load_run, machine_now, prepare_day, run_settings

__all__ = ["caught_up_threshold", "run_capacity", "soak", "overload", "short", "SHORT"]

#: the short versions (tests/load): a small day, a short backlog, one worker process through three phases
SHORT = {"events": 400_000, "accounts": 3_000, "backlog_events": 1_000_000, "soak_seconds": 12.0,
         "soak_fraction": 0.7, "overload_seconds": 6.0, "overload_factor": 2.0, "recover_seconds": 15.0,
         "recover_fraction": 0.1}


def caught_up_threshold(rate: float, checkpoint_interval_ms: int, sample_s: float = 1.0) -> int:
    return int(rate * (checkpoint_interval_ms / 1000 + 2 * sample_s) + 2 * CHUNK_EVENTS)


def recovery(result: dict, phase: str) -> dict:
    """When, in phase ``phase``, the committed lag first came down to the caught-up threshold."""
    t, a = 0.0, None
    for ph in result["phases"]:
        if ph["name"] == phase:
            a, rate, secs = t, ph["target_eps"], ph["seconds"]
        t += ph["seconds"]
    if a is None:
        raise KeyError(phase)
    thr = caught_up_threshold(rate, result["checkpoint_interval_ms"])
    inside = [x for x in result["samples"] if "error" not in x and a <= x["t"] <= a + secs + 0.5]
    hit = next((x for x in inside if x["lag_events"] <= thr), None)
    return {"phase": phase, "threshold_events": thr, "recovered": hit is not None,
            "recovered_after_s": None if hit is None else round(hit["t"] - a, 2),
            "lag_events_at_phase_start": inside[0]["lag_events"] if inside else None}


def _day(events: int, accounts: int, bootstrap: str) -> tuple[Day, Path]:
    svb, acc = prepare_day(events, accounts)
    return Day(svb, run_settings(bootstrap, acc)), acc


async def run_capacity(bootstrap: str, out: Path, events: int, accounts: int, backlog_events: int) -> dict:
    day, acc = _day(events, accounts, bootstrap)
    out.mkdir(parents=True, exist_ok=True)
    res = {"machine": machine_now(), "day_events": day.events, "accounts": accounts,
           **await capacity(bootstrap, day, acc, backlog_events, out)}
    (out / "capacity.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


async def _capacity_for(bootstrap: str, out: Path, a) -> tuple[float, dict | None]:
    if a.capacity:
        return float(a.capacity), None
    cap = await run_capacity(bootstrap, out, a.events, a.accounts, a.backlog_events)
    return float(cap["process_eps_sustained"]), cap


def _finish(result: dict, out: Path, cap: dict | None, cap_eps: float) -> dict:
    result["capacity_eps"] = cap_eps
    result["capacity"] = cap
    result["plots"] = [str(p) for p in plot_run(result, out)]
    (out / f"{result['name']}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


async def soak(bootstrap: str, out: Path, a, broker_pid: int | None = None) -> dict:
    """``a.minutes`` at ``a.fraction`` of the capacity."""
    cap_eps, cap = await _capacity_for(bootstrap, out, a)
    day, acc = _day(a.events, a.accounts, bootstrap)
    res = await load_run(bootstrap, day, acc, [("soak", Phase(a.minutes * 60, a.fraction * cap_eps))], out,
                         a.name or "soak", broker_pid, drain_timeout=max(300.0, a.minutes * 60))
    res["soak_caught_up_at_end"] = _caught_up_at_end(res, "soak")
    return _finish(res, out, cap, cap_eps)


async def overload(bootstrap: str, out: Path, a, broker_pid: int | None = None) -> dict:
    """``a.seconds`` at ``a.factor`` x the capacity, then ``a.recover_seconds`` at ``a.recover_fraction``."""
    cap_eps, cap = await _capacity_for(bootstrap, out, a)
    day, acc = _day(a.events, a.accounts, bootstrap)
    phases = [("overload", Phase(a.seconds, a.factor * cap_eps)),
              ("recover", Phase(a.recover_seconds, a.recover_fraction * cap_eps))]
    res = await load_run(bootstrap, day, acc, phases, out, a.name or "overload", broker_pid)
    res["recovery"] = recovery(res, "recover")
    return _finish(res, out, cap, cap_eps)


def _caught_up_at_end(res: dict, phase: str) -> bool:
    ph = next(p for p in res["phase_results"] if p["name"] == phase)
    if "lag_events_end" not in ph:
        return False
    return ph["lag_events_end"] <= caught_up_threshold(ph["target_eps"], res["checkpoint_interval_ms"])


async def short(bootstrap: str, out: Path, broker_pid: int | None = None, p: dict = SHORT) -> dict:
    """The short versions of the soak and the overload, in one worker process: a soak phase, an overload phase,
    a recovery phase (one start-up and one replay instead of two: the test suite's time is bounded)."""
    day, acc = _day(p["events"], p["accounts"], bootstrap)
    out.mkdir(parents=True, exist_ok=True)
    cap = {"machine": machine_now(), "day_events": day.events, "accounts": p["accounts"],
           **await capacity(bootstrap, day, acc, p["backlog_events"], out, in_process=False)}
    (out / "capacity.json").write_text(json.dumps(cap, indent=1) + "\n")
    c = float(cap["process_eps_sustained"])
    phases = [("soak", Phase(p["soak_seconds"], p["soak_fraction"] * c)),
              ("overload", Phase(p["overload_seconds"], p["overload_factor"] * c)),
              ("recover", Phase(p["recover_seconds"], p["recover_fraction"] * c))]
    res = await load_run(bootstrap, day, acc, phases, out, "short", broker_pid, drain_timeout=120.0)
    res["recovery"] = recovery(res, "recover")
    res["soak_caught_up_at_end"] = _caught_up_at_end(res, "soak")
    return _finish(res, out, cap, c)
