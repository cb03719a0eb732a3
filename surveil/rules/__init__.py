"""Detection rules: one module per rule, pure and vectorised. See each module's docstring.

The registry finds the rules: every module of this package that defines ``RULE`` (a
:class:`~surveil.rules.base.Rule` subclass), and every module in the folders named by the environment
variable ``SURVEIL_RULES_PATH`` (``os.pathsep``-separated; a site's own rules). Adding a rule is adding its
module (and its golden cases under ``tests/rules/<rule id>/``): nothing else names a rule id.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path

from surveil.rules.base import KEYS, Rule, RuleMeta
from surveil.rules.exceptions import RuleError

#: modules of this package that are not rules
_NOT_RULES = {"base", "config", "market_context", "exceptions", "catalogue"}
#: environment variable: extra folders of rule modules
RULES_PATH_ENV = "SURVEIL_RULES_PATH"
#: keys the stream topology runs (``market`` is reserved)
STAGE_KEYS = ("account", "owner", "security")

_cache: dict[tuple[str, ...], tuple[type[Rule], ...]] = {}


def _check(cls, where: str) -> type[Rule]:
    if not (isinstance(cls, type) and issubclass(cls, Rule)):
        raise RuleError(f"{where}: RULE must be a subclass of surveil.rules.base.Rule, not {cls!r}")
    meta = getattr(cls, "meta", None)
    if not isinstance(meta, RuleMeta):
        raise RuleError(f"{where}: {cls.__name__}.meta must be a RuleMeta")
    if meta.key not in KEYS:
        raise RuleError(f"{where}: rule {meta.id}: key={meta.key!r}: expected one of {', '.join(KEYS)}")
    if meta.key not in STAGE_KEYS:
        raise RuleError(f"{where}: rule {meta.id}: key={meta.key!r}: no stage runs {meta.key}-keyed rules yet")
    return cls


def _extra_paths() -> tuple[str, ...]:
    raw = os.environ.get(RULES_PATH_ENV, "")
    return tuple(p for p in raw.split(os.pathsep) if p)


def _load_folder(folder: str) -> list[type[Rule]]:
    out = []
    path = Path(folder)
    if not path.is_dir():
        raise RuleError(f"{RULES_PATH_ENV}={folder!r}: not a folder")
    for f in sorted(path.glob("*.py")):
        if f.name.startswith("_"):
            continue
        name = f"surveil_site_rules.{f.stem}"
        spec = importlib.util.spec_from_file_location(name, f)
        if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
            continue
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as e:  # noqa: BLE001 - a site rule that does not import is a configuration error
            raise RuleError(f"rule module {f}: {type(e).__name__}: {e}") from e
        if hasattr(mod, "RULE"):
            out.append(_check(mod.RULE, str(f)))
    return out


def all_rules() -> tuple[type[Rule], ...]:
    """Every rule, in evaluation order: this package's (by module name), then the extra folders' ones."""
    extra = _extra_paths()
    got = _cache.get(extra)
    if got is not None:
        return got
    found: list[type[Rule]] = []
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if m.name in _NOT_RULES or m.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{m.name}")
        if hasattr(mod, "RULE"):
            found.append(_check(mod.RULE, mod.__name__))
    for folder in extra:
        found.extend(_load_folder(folder))
    ids = [c.meta.id for c in found]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise RuleError(f"rule id(s) defined twice: {', '.join(dup)}")
    got = _cache[extra] = tuple(found)
    return got


def rule_class(rule_id: str) -> type[Rule] | None:
    """The rule with this id, or None."""
    for cls in all_rules():
        if cls.meta.id == rule_id:
            return cls
    return None


def rules_keyed(key: str, only: frozenset[str] | set[str] | None = None) -> tuple[type[Rule], ...]:
    """The rules with this key (of ``only`` when given)."""
    return tuple(c for c in all_rules() if c.meta.key == key and (only is None or c.meta.id in only))


def __getattr__(name: str):
    if name == "RULES":  # every rule (a function call: the extra folders are read when first asked)
        return all_rules()
    raise AttributeError(name)


__all__ = ["all_rules", "rule_class", "rules_keyed", "RuleError", "STAGE_KEYS"]
