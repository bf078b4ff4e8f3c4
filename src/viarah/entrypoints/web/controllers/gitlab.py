"""An organization's GitLab integration (admin, pm), its webhook and its deliveries.

The token, webhook secret and signing token are write-only: no response carries them.
The webhook endpoint is public (GitLab cannot log in); the use case authenticates it by
``X-Gitlab-Token`` (and the signature, when a signing token is set).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any, TypeVar

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_202_ACCEPTED,
    HTTP_400_BAD_REQUEST,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from viarah.domain.gitlab.integrations import UNSET, GitLabIntegrations, Unset, Validation
from viarah.domain.gitlab.model import GitLabIntegration, WebhookDelivery
from viarah.domain.gitlab.webhooks import MAX_PAGE, GitLabWebhooks
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.errors import DomainError
from viarah.domain.shared.text import loggable
from viarah.entrypoints.web.errors import API_ERRORS, ErrorOut

log = logging.getLogger("viarah.web")
T = TypeVar("T")

NOT_CONFIGURED_NOTE = (
    "When the organization has no GitLab integration yet this answers 200 with "
    "`base_url: null`, `has_token: false` and `webhook_configured: false`."
)


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorOut, description=description, generate_examples=False)


#: What GitLab (or anyone) may get back from the webhook endpoint.
WEBHOOK_ERRORS: dict[int, ResponseSpec] = {
    HTTP_400_BAD_REQUEST: _error("The body is not JSON"),
    HTTP_403_FORBIDDEN: _error("X-Gitlab-Token (or the signature) does not match"),
    HTTP_404_NOT_FOUND: _error("No webhook secret is configured for this organization"),
    HTTP_413_REQUEST_ENTITY_TOO_LARGE: _error("Request body over VIA_RAH_MAX_REQUEST_BYTES"),
    HTTP_503_SERVICE_UNAVAILABLE: _error("The database is unavailable; GitLab will retry"),
}


def _given(value: T | msgspec.UnsetType) -> T | Unset:
    """msgspec's "field absent" → the domain's "field absent"."""
    return UNSET if isinstance(value, msgspec.UnsetType) else value


class IntegrationPatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Only the fields given change; ``null`` removes a secret. Secrets are write-only."""

    base_url: str | msgspec.UnsetType = msgspec.UNSET
    token: str | msgspec.UnsetType | None = msgspec.UNSET
    webhook_secret: str | msgspec.UnsetType | None = msgspec.UNSET
    signing_token: str | msgspec.UnsetType | None = msgspec.UNSET


class IntegrationBody(msgspec.Struct, frozen=True):
    base_url: str | None
    has_token: bool
    token_set_at: datetime | None
    token_status: str
    token_scopes: list[str]
    token_expires_at: date | None
    webhook_configured: bool
    webhook_secret_set_at: datetime | None
    signing_token_configured: bool
    created_at: datetime | None
    updated_at: datetime | None

    @staticmethod
    def of(integration: GitLabIntegration | None) -> IntegrationBody:
        if integration is None:
            return IntegrationBody(
                base_url=None,
                has_token=False,
                token_set_at=None,
                token_status="unknown",
                token_scopes=[],
                token_expires_at=None,
                webhook_configured=False,
                webhook_secret_set_at=None,
                signing_token_configured=False,
                created_at=None,
                updated_at=None,
            )
        return IntegrationBody(
            base_url=integration.base_url,
            has_token=integration.has_token,
            token_set_at=integration.token_set_at,
            token_status=integration.token_status.value,
            token_scopes=list(integration.token_scopes),
            token_expires_at=integration.token_expires_at,
            webhook_configured=integration.webhook_configured,
            webhook_secret_set_at=integration.webhook_secret_set_at,
            signing_token_configured=integration.signing_token_ciphertext is not None,
            created_at=integration.created_at,
            updated_at=integration.updated_at,
        )


class GitLabUserBody(msgspec.Struct, frozen=True):
    username: str


class ValidationBody(msgspec.Struct, frozen=True):
    """``valid``, ``invalid`` (GitLab rejects the token) or ``not_validated`` (no token,
    no key, GitLab unreachable...); ``error_code`` says why when not valid."""

    status: str
    error_code: str | None
    user: GitLabUserBody | None

    @staticmethod
    def of(validation: Validation) -> ValidationBody:
        user = GitLabUserBody(username=validation.username) if validation.username else None
        return ValidationBody(status=validation.status, error_code=validation.error_code, user=user)


class IntegrationOut(msgspec.Struct, frozen=True):
    gitlab: IntegrationBody
    #: Present when the request set a token: what GitLab said of it.
    validation: ValidationBody | msgspec.UnsetType = msgspec.UNSET


class DeliveryBody(msgspec.Struct, frozen=True):
    id: str
    event_type: str
    status: str
    received_at: datetime
    processed_at: datetime | None
    error: str | None
    action: str | None
    project_path: str | None
    gitlab_type: str | None
    gitlab_iid: int | None

    @staticmethod
    def of(delivery: WebhookDelivery) -> DeliveryBody:
        return DeliveryBody(
            id=delivery.id,
            event_type=delivery.event_type,
            status=delivery.status.value,
            received_at=delivery.received_at,
            processed_at=delivery.processed_at,
            error=delivery.error,
            action=delivery.action,
            project_path=delivery.project_path,
            gitlab_type=delivery.kind.value if delivery.kind else None,
            gitlab_iid=delivery.iid,
        )


class DeliveryListOut(msgspec.Struct, frozen=True):
    deliveries: list[DeliveryBody]
    next_cursor: str | None


class WebhookOut(msgspec.Struct, frozen=True):
    status: str  # accepted | duplicate


class GitLabIntegrationController(Controller):
    """Admins and PMs manage the integration; members get 403, non-members 404."""

    path = "/orgs/{org_id:str}/integrations/gitlab"
    tags = ["gitlab"]

    @get(
        "",
        responses=API_ERRORS,
        summary="The GitLab integration (never the secrets)",
        description=NOT_CONFIGURED_NOTE,
    )
    async def get_integration(
        self,
        actor: NamedDependency[Actor],
        gitlab_integrations: NamedDependency[GitLabIntegrations],
        org_id: FromPath[str],
    ) -> IntegrationOut:
        integration = await gitlab_integrations.get(actor, org_id)
        return IntegrationOut(gitlab=IntegrationBody.of(integration))

    @patch(
        "",
        responses=API_ERRORS,
        summary="Set up or change the integration",
        description=(
            "Only the fields sent change; `null` removes the token, webhook secret or "
            "signing token. A new token is checked against GitLab first (400 "
            "`invalid_token` when GitLab rejects it) and the answer carries `validation`. "
            "Storing a token or signing token needs VIA_RAH_ENCRYPTION_KEY on the server "
            "(409 `encryption_key_missing` otherwise)."
        ),
    )
    async def update_integration(
        self,
        actor: NamedDependency[Actor],
        gitlab_integrations: NamedDependency[GitLabIntegrations],
        org_id: FromPath[str],
        data: JSONBody[IntegrationPatch],
    ) -> IntegrationOut:
        integration, validation = await gitlab_integrations.update(
            actor,
            org_id,
            base_url=_given(data.base_url),
            token=_given(data.token),
            webhook_secret=_given(data.webhook_secret),
            signing_token=_given(data.signing_token),
        )
        log.info("gitlab.integration_updated org=%s user_id=%s", org_id, actor.user_id)
        return IntegrationOut(
            gitlab=IntegrationBody.of(integration),
            validation=msgspec.UNSET if validation is None else ValidationBody.of(validation),
        )

    @delete("", responses=API_ERRORS, summary="Remove the integration and its secrets")
    async def delete_integration(
        self,
        actor: NamedDependency[Actor],
        gitlab_integrations: NamedDependency[GitLabIntegrations],
        org_id: FromPath[str],
    ) -> None:
        await gitlab_integrations.delete(actor, org_id)

    @post(
        "/validate",
        responses=API_ERRORS,
        status_code=HTTP_200_OK,
        summary="Ask GitLab whether the stored token works",
    )
    async def validate(
        self,
        actor: NamedDependency[Actor],
        gitlab_integrations: NamedDependency[GitLabIntegrations],
        org_id: FromPath[str],
    ) -> ValidationBody:
        return ValidationBody.of(await gitlab_integrations.validate(actor, org_id))

    @get(
        "/webhook-deliveries",
        responses=API_ERRORS,
        summary="Webhook deliveries, newest first",
        description=(
            f"`limit` is 1 to {MAX_PAGE} (default 50); pass `next_cursor` back as `cursor` "
            "for the next page. Status is received, processed, failed or ignored."
        ),
    )
    async def list_deliveries(
        self,
        actor: NamedDependency[Actor],
        gitlab_webhooks: NamedDependency[GitLabWebhooks],
        org_id: FromPath[str],
        limit: FromQuery[int] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> DeliveryListOut:
        page, next_cursor = await gitlab_webhooks.list_deliveries(actor, org_id, limit, cursor)
        return DeliveryListOut(
            deliveries=[DeliveryBody.of(d) for d in page], next_cursor=next_cursor
        )


class GitLabWebhookController(Controller):
    """Mounted outside the authenticated ``/api`` router: no session, token or CSRF."""

    path = "/api/orgs/{org_id:str}/integrations/gitlab/webhook"
    tags = ["gitlab"]

    @post(
        "",
        responses=WEBHOOK_ERRORS,
        status_code=HTTP_202_ACCEPTED,
        security=[{}],  # OpenAPI: no session or API token needed
        summary="Receive a GitLab webhook (authenticated by X-Gitlab-Token)",
        description=(
            "Stored before the answer and processed in the background. A repeated "
            '`Idempotency-Key` answers `{"status": "duplicate"}`; events other than '
            "issue and merge request hooks are stored as `ignored` and still answered 202."
        ),
    )
    async def receive(
        self,
        request: Request[Any, Any, Any],
        gitlab_webhooks: NamedDependency[GitLabWebhooks],
        org_id: FromPath[str],
    ) -> WebhookOut:
        body = await request.body()  # raw bytes: never parsed by litestar; size-limited
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            status = await gitlab_webhooks.receive(org_id, headers, body)
        except DomainError as exc:
            log.info("gitlab.webhook_refused org=%s code=%s", loggable(org_id, 64), exc.code)
            raise
        return WebhookOut(status=status)
