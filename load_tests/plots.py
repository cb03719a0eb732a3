"""PNG plots of a load run: consumer lag (with the input and consumption rates) and memory over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_run"]

_COLOURS = ("#e8f0fe", "#fde8e8", "#e8f8ec", "#fff6e0")


def _phases(ax, result: dict) -> None:
    t = 0.0
    for i, ph in enumerate(result["phases"]):
        ax.axvspan(t, t + ph["seconds"], color=_COLOURS[i % len(_COLOURS)], zorder=0)
        ax.text(t + 0.5, 1.0, ph["name"], transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="#444")
        t += ph["seconds"]


def _rates(samples: list[dict], key: str, window: int = 5) -> tuple[list[float], list[float]]:
    """k events/s of a counter over the last ``window`` samples (the committed offsets move once per
    checkpoint, every 2 s: a per-second rate would alternate between 0 and twice the true one)."""
    ts, rs = [], []
    for a, b in zip(samples, samples[window:]):
        dt = b["t"] - a["t"]
        if dt > 0:
            ts.append(b["t"])
            rs.append((b[key] - a[key]) / dt / 1e3)
    return ts, rs


def plot_run(result: dict, out_dir: Path) -> list[Path]:
    """``<name>-lag.png`` and ``<name>-memory.png`` in ``out_dir``; returns their paths."""
    samples = [x for x in result["samples"] if "error" not in x]
    name = result["name"]
    load = result["machine"]["loadavg"][0]
    title = f"{name}: one worker process, {result['feed_partitions']} feed partitions (load avg at start {load:.1f})"
    t = [x["t"] for x in samples]
    paths = []

    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    _phases(ax, result)
    ax.plot(t, [x["lag_events"] / 1e6 for x in samples], color="#c0392b", label="consumer lag (M events)")
    ax.set_xlabel("seconds since the feed started")
    ax.set_ylabel("lag, M events (committed)")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ts, rs = _rates(samples, "sent_events")
    ax2.plot(ts, rs, color="#2c7fb8", lw=1, label="input (k events/s, 5 s mean)")
    ts, rs = _rates(samples, "committed_events")
    ax2.plot(ts, rs, color="#31a354", lw=1, alpha=0.8, label="consumed, committed (k events/s, 5 s mean)")
    ax2.set_ylabel("k events/s")
    ax2.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    p = out_dir / f"{name}-lag.png"
    fig.savefig(p)
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(8, 3.0), dpi=100)
    _phases(ax, result)
    ax.plot(t, [x["worker_rss_mib"] or 0 for x in samples], color="#6a51a3", label="worker RSS (MiB)")
    if any(x.get("broker_rss_mib") for x in samples):
        ax.plot(t, [x["broker_rss_mib"] or 0 for x in samples], color="#999", lw=1, label="broker RSS (MiB)")
    ax.set_xlabel("seconds since the feed started")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(f"{name}: memory (VmRSS)", fontsize=9)
    fig.tight_layout()
    p = out_dir / f"{name}-memory.png"
    fig.savefig(p)
    plt.close(fig)
    paths.append(p)
    return paths
