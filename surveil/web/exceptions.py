"""Errors of this package: each a :class:`~surveil.exceptions.SurveilError` (the CLI prints it, exits 1)."""

from __future__ import annotations

from surveil.exceptions import SurveilError


class FilterError(SurveilError, ValueError):
    """A bad query parameter: the message names the parameter and the value."""


class RecordError(SurveilError, ValueError):
    """A record of the alert or recommendation topic that the console refuses to index (not what the
    workers publish): the message says which field and why."""
