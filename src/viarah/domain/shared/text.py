"""Small validation rules shared by several contexts."""

from __future__ import annotations

import re

from viarah.domain.shared.errors import InvalidInput

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def clean_text(field: str, value: str, *, max_length: int, required: bool = True) -> str:
    """Strip ``value`` and refuse it when empty (if required) or too long."""
    cleaned = value.strip()
    if required and not cleaned:
        raise InvalidInput(field, "must not be empty")
    if len(cleaned) > max_length:
        raise InvalidInput(field, f"must be at most {max_length} characters")
    if any(ord(ch) < 32 for ch in cleaned):
        raise InvalidInput(field, "must not contain control characters")
    return cleaned


def normalize_email(value: str) -> str:
    """Lower-cased, stripped e-mail address; InvalidInput('email') when malformed."""
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidInput("email", "is not a valid e-mail address")
    return email
