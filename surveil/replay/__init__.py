"""Files → engine, in process: the same engine the stream workers run."""

from surveil.replay.run import ReplayResult, merged_batches, replay

__all__ = ["replay", "ReplayResult", "merged_batches"]
