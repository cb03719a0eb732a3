"""Rules file (TOML): overrides of rule, engine and recommendation parameters.

Every section and key is checked: an unknown section or key, or a value of the
wrong type, is a :class:`ConfigError` that names it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from surveil.exceptions import SurveilError
from surveil.rules.base import Param


class ConfigError(SurveilError, ValueError):
    pass


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


def check_value(section: str, p: Param, value: Any) -> Any:
    ok = isinstance(value, p.type) and not (isinstance(value, bool) and bool not in _as_tuple(p.type))
    if isinstance(p.default, list) and ok:
        ok = all(isinstance(x, str) for x in value)
    if not ok:
        raise ConfigError(f"[{section}] {p.name} = {value!r}: expected {_type_name(p.type)}")
    if p.check:
        err = p.check(value)
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
            out[sec][k] = check_value(sec, known[k], v)
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"rules file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"rules file {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"rules file {path} is not readable: {e}") from None
