"""Errors of the rules package."""

from __future__ import annotations

from surveil.exceptions import SurveilError


class RuleError(SurveilError):
    """A rule module that cannot be used (bad metadata, an unknown key, an id defined twice)."""
