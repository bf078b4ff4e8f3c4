"""Identifiers. Every entity id is a UUID4 string minted by the domain."""

from __future__ import annotations

import uuid
from typing import NewType

UserId = NewType("UserId", str)
OrgId = NewType("OrgId", str)
MembershipId = NewType("MembershipId", str)
ProjectId = NewType("ProjectId", str)
TaskId = NewType("TaskId", str)
ApiTokenId = NewType("ApiTokenId", str)


def new_id() -> str:
    """A fresh random identifier."""
    return str(uuid.uuid4())


def is_valid_id(value: str) -> bool:
    """True when ``value`` is the canonical form of a UUID (what :func:`new_id` mints)."""
    try:
        return str(uuid.UUID(value)) == value
    except (ValueError, AttributeError, TypeError):
        return False
