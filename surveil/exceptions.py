"""The base of every error ``surveil`` raises on purpose: the CLI catches it, prints it and exits 1."""

from __future__ import annotations


class SurveilError(Exception):
    """An error with a message for the user (bad input, configuration or state), not a bug."""
