"""Small validation rules shared by several contexts."""

from __future__ import annotations

import re

from viarah.domain.shared.errors import InvalidInput

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_UNSTORABLE = re.compile("[\x00-\x1f\ud800-\udfff]")


def storable(value: str) -> bool:
    """False for text a database cannot or must not store: control characters (NUL, CR,
    LF...) and lone UTF-16 surrogates (which JSON can carry but UTF-8 cannot encode)."""
    return _UNSTORABLE.search(value) is None


def loggable(value: str, limit: int = 300) -> str:
    """``value`` safe to put in one log line: control characters escaped (no forged lines),
    cut to ``limit`` characters."""
    if storable(value) and "\x7f" not in value:
        return value[:limit]
    return value.encode("unicode_escape", "backslashreplace").decode("ascii")[:limit]


def clean_text(field: str, value: str, *, max_length: int, required: bool = True) -> str:
    """Strip ``value`` and refuse it when empty (if required) or too long."""
    cleaned = value.strip()
    if required and not cleaned:
        raise InvalidInput(field, "must not be empty")
    if len(cleaned) > max_length:
        raise InvalidInput(field, f"must be at most {max_length} characters")
    if not storable(cleaned):
        raise InvalidInput(field, "must not contain control characters")
    return cleaned


def normalize_email(value: str) -> str:
    """Lower-cased, stripped e-mail address; InvalidInput('email') when malformed."""
    email = value.strip().lower()
    if len(email) > 254 or not storable(email) or not _EMAIL.match(email):
        raise InvalidInput("email", "is not a valid e-mail address")
    return email
