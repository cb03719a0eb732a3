"""Errors of this package: each a :class:`~surveil.exceptions.SurveilError` (the CLI prints it, exits 1)."""

from __future__ import annotations

from surveil.exceptions import SurveilError


class ReportError(SurveilError, OSError):
    """The report folder cannot be created or written."""


class ChartError(SurveilError, ValueError):
    """The alert cannot be drawn (unknown rule, or evidence without the fields a chart needs)."""
