"""Event model: schema codes, the columnar batch, wire formats and validation."""

from surveil.events.batch import Batch, Registry
from surveil.events.errors import Reject
from surveil.events.schema import (
    CANCEL,
    INDEX,
    ORDER,
    PRICE_SCALE,
    SIDE_B,
    SIDE_S,
    TRADE,
    VENUES,
)

__all__ = [
    "Batch", "Registry", "Reject", "ORDER", "CANCEL", "TRADE", "INDEX",
    "SIDE_B", "SIDE_S", "VENUES", "PRICE_SCALE",
]
