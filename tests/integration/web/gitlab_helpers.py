"""GitLab test data through the HTTP API: an org with a task, the integration set up
against a local fake GitLab (``tests/gitlab_fake.py``), webhooks, and the worker's jobs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from tests.gitlab_fake import FakeGitLab
from tests.integration.web.conftest import Caller, Web
from viarah.domain.gitlab.links import REFRESH_JOB
from viarah.domain.gitlab.webhooks import DRAIN_JOB

PROJECT = "group/sub/project"
WEBHOOK_SECRET = "whsec-test-0123456789abcdef"
SIGNING_TOKEN = "sign-test-0123456789abcdef"


@dataclass
class Org:
    admin: Caller
    org_id: str
    project_id: str
    task_id: str

    @property
    def integration(self) -> str:
        return f"/api/orgs/{self.org_id}/integrations/gitlab"

    @property
    def webhook(self) -> str:
        return f"{self.integration}/webhook"

    @property
    def deliveries(self) -> str:
        return f"{self.integration}/webhook-deliveries"

    def links(self, task_id: str | None = None) -> str:
        return f"/api/orgs/{self.org_id}/tasks/{task_id or self.task_id}/gitlab-links"


def new_org(web: Web, email: str = "alice@example.com", **member: Any) -> Org:
    """A new user (``member`` as for :meth:`Web.member`), admin of a new org with a
    project and a task."""
    admin = web.member(email, **member)
    org_id = web.org(admin)
    project_id = web.project(admin, org_id)
    return Org(admin, org_id, project_id, web.task(admin, org_id, project_id)["id"])


def configure(org: Org, gitlab: FakeGitLab, **body: Any) -> dict[str, Any]:
    """Set up the integration: the fake's URL and token, and WEBHOOK_SECRET."""
    response = org.admin.patch(
        org.integration,
        json={
            "base_url": gitlab.base_url,
            "token": gitlab.token,
            "webhook_secret": WEBHOOK_SECRET,
            **body,
        },
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def issue_url(gitlab: FakeGitLab, iid: int = 12, project: str = PROJECT) -> str:
    return f"{gitlab.base_url}/{project}/-/issues/{iid}"


def run_gitlab_jobs(web: Web) -> list[str]:
    """Run every due GitLab job in the outbox (as a worker would); their names."""
    return web.run_due_jobs((REFRESH_JOB, DRAIN_JOB))


def issue_event(iid: int = 12, action: str = "close", project: str = PROJECT) -> dict[str, Any]:
    return {
        "object_kind": "issue",
        "event_type": "issue",
        "project": {"path_with_namespace": project},
        "object_attributes": {"iid": iid, "action": action, "state": "closed"},
    }


def send_hook(
    web: Web,
    org: Org,
    payload: Any = None,
    *,
    token: str = WEBHOOK_SECRET,
    event: str = "Issue Hook",
    key: str | None = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"X-Gitlab-Token": token, "X-Gitlab-Event": event, "Content-Type": "application/json"}
    if key is not None:
        sent["Idempotency-Key"] = key
    body = content if content is not None else json.dumps(payload or issue_event()).encode()
    return web.anon.post(org.webhook, content=body, headers={**sent, **(headers or {})})
