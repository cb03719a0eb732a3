"""Errors of this package: each a :class:`~surveil.exceptions.SurveilError` (the CLI prints it, exits 1)."""

from __future__ import annotations

from surveil.events.errors import Reject
from surveil.exceptions import SurveilError


class StrictError(SurveilError, Exception):
    """``--strict``: the first reject stops the run."""

    def __init__(self, reject: Reject):
        self.reject = reject
        super().__init__(f"rejected input (--strict): {reject.message}")
