"""Runs the rules over batches in event time: ordering, trading-day roll-over, alert ids and lifecycle."""

from surveil.engine.engine import Engine, load_config

__all__ = ["Engine", "load_config"]
