"""Test data that needs real cryptography: browser push keys."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from viarah.domain.shared.actor import Actor
from viarah.domain.shared.ids import OrgId, ProjectId, UserId

if TYPE_CHECKING:
    from tests.gitlab_fake import FakeGitLab
    from viarah.container import Container


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def browser() -> tuple[ec.EllipticCurvePrivateKey, str, bytes]:
    """A browser's private key (to open what is sent to it), its ``keys.p256dh`` (a real
    P-256 point) and its auth secret (16 random bytes; ``b64url`` it for ``keys.auth``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return key, b64url(point), os.urandom(16)


def browser_keys() -> tuple[str, str]:
    """A browser's ``keys.p256dh`` and ``keys.auth``."""
    _, p256dh, auth = browser()
    return p256dh, b64url(auth)


@dataclass(frozen=True)
class GitLabOrg:
    """What :func:`seed_gitlab_org` made."""

    admin: Actor
    admin_id: UserId
    org_id: OrgId
    project_id: ProjectId


async def seed_gitlab_org(
    container: Container,
    gitlab: FakeGitLab,
    *,
    admin_email: str,
    password: str,
    webhook_secret: str,
    org_name: str = "Acme",
    project_name: str = "App",
) -> GitLabOrg:
    """Through the container's use cases: an admin, an org whose GitLab integration
    points at ``gitlab`` (its token and ``webhook_secret`` set), and a project."""
    user = await container.users().create(admin_email, password)
    admin = Actor(user_id=user.id)
    org = (await container.organizations().create(admin, org_name)).org
    await container.gitlab_integrations().update(
        admin, org.id, base_url=gitlab.base_url, token=gitlab.token, webhook_secret=webhook_secret
    )
    project = await container.projects().create(admin, org.id, project_name)
    return GitLabOrg(admin, user.id, org.id, project.id)
