"""Rules file (TOML): overrides of rule, engine and recommendation parameters.

Every section and key is checked: an unknown section or key, or a value of the
wrong type, is a :class:`ConfigError` that names it.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from surveil.events.io import text_of
from surveil.exceptions import SurveilError
from surveil.rules.base import Param


class ConfigError(SurveilError, ValueError):
    pass


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


#: the largest magnitude of any number in a rules file: more is a typo, not a setting (a threshold of 10**30
#: would also overflow the 64-bit counts and amounts it is compared with)
NUMBER_MAX = 10**15
#: the range of each numeric parameter of the built-in rules, checked in addition to the parameter's own check:
#: (section, key) -> (lowest, highest), both allowed; ``None``: no bound on that side (NUMBER_MAX still holds)
RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("order_rate_1s", "threshold"): (1, 1_000_000_000),
    ("daily_orders_20k", "threshold"): (1, 1_000_000_000),
    ("sell_burst_1m", "threshold_yuan"): (1, 10**13),  # an A-share market's turnover of a day is ~10**12 yuan
    ("sell_burst_1m", "window_seconds"): (1, 86_400),
    ("sell_burst_1m", "critical_multiple"): (1, 1_000),
    ("sell_burst_1m", "index_drop_pct"): (0, 100),
    ("recommendations", "restrict_multiple"): (1, 1_000),
    ("recommendations", "restrict_index_drop_pct"): (0, 100),
    ("recommendations", "restrict_days"): (1, 3_650),
    ("recommendations", "escalation_window_days"): (1, 3_650),
}


def _range_error(section: str, name: str, value: Any) -> str | None:
    """Why a number is not a setting: not finite, absurdly large, or out of the parameter's range."""
    if type(value) is float and not math.isfinite(value):
        return "must be a finite number"
    if abs(value) > NUMBER_MAX:
        return f"is out of range (at most {NUMBER_MAX:.0e} in magnitude)"
    lo, hi = RANGES.get((section, name), (None, None))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return f"must be {lo:,}..{hi:,}" if lo is not None and hi is not None else (
            f"must be at least {lo:,}" if lo is not None else f"must be at most {hi:,}")
    return None


def check_value(section: str, p: Param, value: Any) -> Any:
    ok = isinstance(value, p.type) and not (isinstance(value, bool) and bool not in _as_tuple(p.type))
    if isinstance(p.default, list) and ok:
        ok = all(isinstance(x, str) for x in value)
    if not ok:
        raise ConfigError(f"[{section}] {p.name} = {value!r}: expected {_type_name(p.type)}")
    if type(value) is float and not math.isfinite(value):  # before the parameter's check: nan compares false
        raise ConfigError(f"[{section}] {p.name} = {value!r}: must be a finite number")
    if p.check:
        err = p.check(value)
        if err:
            raise ConfigError(f"[{section}] {p.name} = {value!r}: {err}")
    if type(value) in (int, float):
        err = _range_error(section, p.name, value)
        if err:
            raise ConfigError(f"[{section}] {p.name} = {value!r}: {err}")
    return value


def _as_tuple(t) -> tuple:
    return t if isinstance(t, tuple) else (t,)


def resolve(sections: dict[str, tuple[Param, ...]], overrides: dict[str, Any],
            origin: str) -> dict[str, dict[str, Any]]:
    """Defaults of every section, with ``overrides`` applied and checked."""
    out = {name: {p.name: p.default for p in params} for name, params in sections.items()}
    for sec, values in overrides.items():
        if sec not in sections:
            raise ConfigError(f"{origin}: unknown section [{sec}] (known: {', '.join(sorted(sections))})")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{sec}] must be a table")
        known = {p.name: p for p in sections[sec]}
        for k, v in values.items():
            if k not in known:
                raise ConfigError(f"{origin}: unknown key [{sec}] {k} (known: {', '.join(sorted(known))})")
            try:
                out[sec][k] = check_value(sec, known[k], v)
            except ConfigError as e:
                raise ConfigError(f"{origin}: {e}") from None
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """A rules file: UTF-8 (a byte order mark at its start is allowed), TOML."""
    path = Path(path)
    text = text_of(path, "rules file", ConfigError)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"rules file {path} is not valid TOML: {e}") from None
