"""Organizations, their members, projects and tasks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from viarah.domain.shared.errors import InvalidInput
from viarah.domain.shared.ids import MembershipId, OrgId, ProjectId, TaskId, UserId


class Role(StrEnum):
    ADMIN = "admin"
    PM = "pm"
    MEMBER = "member"

    @property
    def manages(self) -> bool:
        """Admins and PMs manage projects and the GitLab integration."""
        return self in (Role.ADMIN, Role.PM)

    @staticmethod
    def parse(value: str) -> Role:
        try:
            return Role(value)
        except ValueError:
            raise InvalidInput("role", "must be one of admin, pm, member") from None


class TaskStatus(StrEnum):
    TODO = "todo"
    IN_PROGRESS = "in_progress"
    BLOCKED = "blocked"
    DONE = "done"

    @staticmethod
    def parse(value: str) -> TaskStatus:
        try:
            return TaskStatus(value)
        except ValueError:
            allowed = ", ".join(s.value for s in TaskStatus)
            raise InvalidInput("status", f"must be one of {allowed}") from None


@dataclass(frozen=True, slots=True)
class Organization:
    id: OrgId
    name: str
    logo_url: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MemberUser:
    """What the orgs context knows about a user (owned by the identity context)."""

    id: UserId
    email: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Membership:
    id: MembershipId
    org_id: OrgId
    user_id: UserId
    role: Role
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MembershipView:
    membership: Membership
    user: MemberUser


@dataclass(frozen=True, slots=True)
class OrgView:
    """An organization as seen by one member: with that member's role."""

    org: Organization
    role: Role


@dataclass(frozen=True, slots=True)
class Project:
    id: ProjectId
    org_id: OrgId
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Task:
    id: TaskId
    org_id: OrgId
    project_id: ProjectId
    title: str
    status: TaskStatus
    assignee_user_id: UserId | None
    created_at: datetime
    updated_at: datetime
