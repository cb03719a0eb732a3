"""The stream topology's plan, derived from the rules' keys and inputs.

- **account** rules run in the partition stage, on the feed partition that owns the account;
- **owner** rules run in the owner stage: the partition stage exports to it the rows some owner rule
  declares (event types and sides), with the owner and broker of each row filled in, routed by owner;
- **security** rules run in the security stage: the rows some security rule declares, routed by
  ``VENUE:symbol``.
A stage whose rules read the market context (``Inputs.market``) also gets every feed partition's market
sell value per second and its index levels (small, broadcast). Every downstream stage with rules gets
each feed partition's progress (its watermark follows the slowest partition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from surveil.events.schema import SIDE_CODE, TYPE_CODE
from surveil.rules import STAGE_KEYS, all_rules
from surveil.rules.base import Rule

#: rows of the mask table: event type code (with room for types added later) x side code
_TYPES_MAX = 16
_SIDES_MAX = 4


@dataclass(frozen=True)
class Export:
    """What the partition stage sends to one downstream stage."""

    key: str  # "owner" or "security"
    rules: tuple[str, ...]
    table: np.ndarray  # bool, [type code * _SIDES_MAX + side code]: the rows some rule of the stage needs
    symbol: bool  # some rule of the stage reads the symbol (else it is not sent: fewer strings)
    market: bool  # some rule of the stage reads the market context

    def rows(self, etype: np.ndarray, side: np.ndarray) -> np.ndarray:
        """Row numbers of a segment's events that this stage needs."""
        return np.flatnonzero(self.table[etype.astype(np.intp) * _SIDES_MAX + side])


@dataclass(frozen=True)
class Plan:
    rules: dict[str, tuple[str, ...]]  # key -> rule ids, in evaluation order
    exports: tuple[Export, ...]  # downstream stages with rules

    def export(self, key: str) -> Export | None:
        return next((e for e in self.exports if e.key == key), None)


def _table(classes: list[type[Rule]]) -> np.ndarray:
    table = np.zeros(_TYPES_MAX * _SIDES_MAX, bool)
    for cls in classes:
        inp = cls.meta.inputs
        sides = [SIDE_CODE[s] for s in inp.sides] if inp.sides else list(range(_SIDES_MAX))
        for t in inp.types:
            code = TYPE_CODE.get(t)
            if code is None:
                continue  # a type this contract does not have yet: no row of it comes
            for sd in sides:
                table[code * _SIDES_MAX + sd] = True
    return table


def plan(only: set[str] | frozenset[str] | None = None) -> Plan:
    """The plan for the rules ``only`` (default: every rule the registry finds)."""
    classes = [c for c in all_rules() if only is None or c.meta.id in only]
    by_key = {k: tuple(c.meta.id for c in classes if c.meta.key == k) for k in STAGE_KEYS}
    exports = []
    for key in ("owner", "security"):
        mine = [c for c in classes if c.meta.key == key]
        if mine:
            exports.append(Export(key=key, rules=by_key[key], table=_table(mine),
                                  symbol=any("symbol" in c.meta.inputs.fields for c in mine) or key == "security",
                                  market=any(c.meta.inputs.market for c in mine)))
    return Plan(rules=by_key, exports=tuple(exports))
