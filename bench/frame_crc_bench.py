"""What the checksums of binary frames (versions 5 and 6, CRC32C) cost on the hot path.

The same frames are decoded as version 5 (with checksums: the header's and the body's CRC32C are verified)
and as version 3 (the same tables and records, no checksum), with ``binary.decode_frame_at`` into a frame
block, as the stream's partition stage decodes feed records; and the CRC32C alone, in GB/s.

    .venv/bin/python bench/frame_crc_bench.py
"""

from __future__ import annotations

import json
import platform
import time

import numpy as np

from surveil.events import binary
from surveil.events.batch import Batch, Registry
from surveil.events.schema import F_HAS_ORDER_ID, F_HAS_PRICE, F_HAS_QTY, F_ORDER_ID_INT

T0 = 1_708_306_200_000_000_000


def _batch(n: int, reg: Registry, rng: np.random.Generator) -> Batch:
    acc = reg.accounts.intern_list([f"A{i:07d}" for i in rng.integers(0, 20_000, n).tolist()])
    sym = reg.symbols.intern_list([f"60{i:04d}" for i in rng.integers(0, 2_000, n).tolist()])
    return Batch(ts=T0 + np.arange(n, dtype=np.int64) * 1000, venue=np.zeros(n, np.uint8),
                 etype=np.zeros(n, np.uint8), side=np.ones(n, np.uint8),
                 flags=np.full(n, F_HAS_PRICE | F_HAS_QTY | F_HAS_ORDER_ID | F_ORDER_ID_INT, np.uint8),
                 price=np.full(n, 100_000, np.int64), qty=np.full(n, 100, np.int64), seq=np.zeros(n, np.int64),
                 account=np.asarray(acc, np.int32), symbol=np.asarray(sym, np.int32),
                 owner=np.full(n, -1, np.int32), broker=np.full(n, -1, np.int32),
                 order_id=np.arange(n, dtype=np.int64), src=np.arange(n, dtype=np.int64))


def _decode_rates(versions: list[list[bytes]], rows: int, repeat: int) -> list[float]:
    """Events per second decoding each list of frames (a warm registry, a reused block: the worker's steady
    state), the best of ``repeat`` rounds, the lists taking turns (the machine is shared: its load varies)."""
    regs = [Registry() for _ in versions]
    block = binary.FrameBlock(rows)
    best = [float("inf")] * len(versions)
    for _ in range(repeat):
        for k, frames in enumerate(versions):
            block.row = 0
            t = time.perf_counter()
            for f in frames:
                binary.decode_frame_at(f, 0, regs[k], "bench", 0, [], into=block)
            best[k] = min(best[k], time.perf_counter() - t)
    return [rows / b for b in best]


def _file_rates(rng: np.random.Generator, events: int = 2_000_000) -> dict:
    """Reading a file (``read_events``, the replay's reader) of 65,536-event frames: versions 5 and 6 (with
    checksums; every 16th frame with the whole dictionary) against the same frames as versions 3 and 4."""
    import tempfile
    from pathlib import Path

    from surveil.events.io import EventWriter, read_events

    with tempfile.TemporaryDirectory() as d:
        new, old = Path(d) / "v56.svb", Path(d) / "v34.svb"
        batches = [_batch(100_000, Registry(), rng) for _ in range(events // 100_000)]
        reg = Registry()
        reg.accounts.intern_list([f"A{i:07d}" for i in range(20_000)])
        reg.symbols.intern_list([f"60{i:04d}" for i in range(2_000)])
        with EventWriter(new, reg) as w:
            for b in batches:
                w.write(b)
        data = new.read_bytes()
        # the same file as written before checksums: the first frame and the delta frames as version 4, written
        # with one frame holding the whole dictionary (the first) only
        interval, binary.KEY_FRAME_INTERVAL = binary.KEY_FRAME_INTERVAL, 1 << 30
        try:
            with EventWriter(old, reg) as w:
                for b in batches:
                    w.write(b)
        finally:
            binary.KEY_FRAME_INTERVAL = interval
        v56 = old.read_bytes()
        parts, off = [], 0
        while off < len(v56):
            end = off + binary.frame_length(v56, off)
            parts.append(binary.reseal(v56[off:end], binary.VERSION_3_DELTA))
            off = end
        old.write_bytes(b"".join(parts))
        best = {"v56": float("inf"), "v34": float("inf")}
        for _ in range(5):
            for name, path in (("v56", new), ("v34", old)):
                t = time.perf_counter()
                n = sum(len(b) for b in read_events(path, Registry(), []))
                best[name] = min(best[name], time.perf_counter() - t)
        return {"events": n, "bytes_v56": len(data), "bytes_v34": old.stat().st_size,
                "events_per_s_versions_5_6": round(n / best["v56"]),
                "events_per_s_versions_3_4": round(n / best["v34"]),
                "cost_pct": round(100 * (best["v56"] / best["v34"] - 1), 1)}


def main() -> dict:
    rng = np.random.default_rng(1)
    reg = Registry()
    out: dict = {"machine": platform.processor() or platform.machine(), "crc": binary.CRC_IMPLEMENTATION,
                 "compiled_decoder": binary.FAST}
    for size in (10, 200, 2000):
        n_frames = max(20, 200_000 // size)
        frames5 = [binary.encode_frame(_batch(size, reg, rng), reg) for _ in range(n_frames)]
        frames3 = [binary.reseal(f, binary.VERSION_3) for f in frames5]
        rows = size * n_frames
        with_crc, without = _decode_rates([frames5, frames3], rows, 9)
        out[f"frames_of_{size}"] = {
            "frame_bytes": len(frames5[0]),
            "events_per_s_version_5": round(with_crc),
            "events_per_s_version_3": round(without),
            "checksum_cost_ns_per_frame": round((rows / with_crc - rows / without) / n_frames * 1e9),
            "checksum_cost_pct": round(100 * (without / with_crc - 1), 1),
        }
    out["file_read"] = _file_rates(rng)
    for size in (1_000, 150_000, 8_000_000):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        n = max(5, 400_000_000 // size)
        t = time.perf_counter()
        for _ in range(n):
            binary.crc32c(data, 48, size)
        dt = time.perf_counter() - t
        out[f"crc32c_{size}_bytes"] = {"GB_per_s": round(n * (size - 48) / dt / 1e9, 2),
                                       "ns_per_call": round(dt / n * 1e9)}
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
