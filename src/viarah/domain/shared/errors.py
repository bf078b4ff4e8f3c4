"""Domain errors. Entrypoints map each class to one outcome (HTTP status, exit code, retry)."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: ``message`` is a human sentence safe to show to the caller."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(DomainError):
    """The thing does not exist, or the caller may not learn that it exists."""

    code = "not_found"


class Unauthenticated(DomainError):
    """No credentials, or credentials that are invalid, expired or revoked."""

    code = "unauthenticated"


class Forbidden(DomainError):
    """Authenticated, but the caller's role does not allow this."""

    code = "forbidden"


class InvalidInput(DomainError):
    """A field has a value the domain refuses; ``field`` names it."""

    code = "invalid_input"

    def __init__(self, field: str, reason: str, *, code: str | None = None) -> None:
        super().__init__(f"{field}: {reason}", code=code)
        self.field = field
        self.reason = reason


class Conflict(DomainError):
    """The request contradicts the current state (duplicate, last admin, ...)."""

    code = "conflict"


class Unavailable(DomainError):
    """A dependency or an optional feature is not available right now."""

    code = "unavailable"
