"""Errors of this package: each a :class:`~surveil.exceptions.SurveilError` (the CLI prints it, exits 1)."""

from __future__ import annotations

from surveil.exceptions import SurveilError


class RuleError(SurveilError):
    """A rule module that cannot be used (bad metadata, an unknown key, an id defined twice)."""
