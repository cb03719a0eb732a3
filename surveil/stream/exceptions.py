"""Errors of this package: each a :class:`~surveil.exceptions.SurveilError` (the CLI prints it, exits 1)."""

from __future__ import annotations

from surveil.exceptions import SurveilError


class EnvelopeError(SurveilError, ValueError):
    pass


class SettingsError(SurveilError, ValueError):
    pass


class AccessDenied(SurveilError):
    """Kafka refused this client's principal an operation (a missing ACL): never retried, the worker stops with
    this message, which names the operation, the topic or group, and the principal."""

    def __init__(self, operation: str, resource: str, name: str, principal: str, doing: str = ""):
        self.operation, self.resource, self.name, self.principal = operation, resource, name, principal
        super().__init__(f"Kafka refused {operation} on {resource} {name!r} to User:{principal}"
                         f"{f' ({doing})' if doing else ''}: grant it (surveil acl apply, docs/security.md) and start "
                         "again")


def denied(e: BaseException, operation: str, principal: str, doing: str = "", name: str | None = None
           ) -> AccessDenied | None:
    """The :class:`AccessDenied` an aiokafka authorization error means (None for any other error). The topic or
    group is the one the error names (aiokafka puts it in the error's arguments), else ``name``."""
    from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

    if isinstance(e, AccessDenied):
        return e
    if not isinstance(e, (TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
        return None
    arg = e.args[0] if e.args else None
    names = sorted(arg) if isinstance(arg, (set, frozenset, list, tuple)) else [arg] if arg else []
    what = ", ".join(str(n) for n in names) or name or "?"
    group = isinstance(e, GroupAuthorizationFailedError)
    return AccessDenied("READ" if group else operation, "group" if group else "topic", what, principal or "ANONYMOUS",
                        doing)
