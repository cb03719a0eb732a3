"""Errors of this package: each a :class:`~surveil.exceptions.SurveilError` (the CLI prints it, exits 1)."""

from __future__ import annotations

from surveil.exceptions import SurveilError


class RefDataError(SurveilError, ValueError):
    def __init__(self, message: str, field: str | None = None, value=None, reason: str | None = None):
        super().__init__(message)
        self.field, self.value, self.reason = field, value, reason
