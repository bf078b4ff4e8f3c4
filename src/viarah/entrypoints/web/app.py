"""The Litestar application factory for the HTTP API."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from viarah.container import Container, close_container
from viarah.entrypoints.web.auth import CSRF_HEADER, SESSION_COOKIE, authenticate
from viarah.entrypoints.web.controllers.auth import AuthController
from viarah.entrypoints.web.controllers.gitlab import (
    GitLabIntegrationController,
    GitLabWebhookController,
)
from viarah.entrypoints.web.controllers.gitlab_links import GitLabLinkController
from viarah.entrypoints.web.controllers.health import HealthController
from viarah.entrypoints.web.controllers.me import MeController
from viarah.entrypoints.web.controllers.memberships import MembershipController
from viarah.entrypoints.web.controllers.metrics import MetricsController
from viarah.entrypoints.web.controllers.orgs import OrgController
from viarah.entrypoints.web.controllers.page import PageController
from viarah.entrypoints.web.controllers.projects import ProjectController
from viarah.entrypoints.web.controllers.push import (
    NotificationPreferenceController,
    PushController,
)
from viarah.entrypoints.web.controllers.tasks import ProjectTaskController, TaskController
from viarah.entrypoints.web.deps import CONTAINER_KEY, DEPENDENCIES, THROTTLE_KEY, settings_of
from viarah.entrypoints.web.errors import EXCEPTION_HANDLERS
from viarah.entrypoints.web.middleware import HostAllowlistMiddleware, RequestLogMiddleware
from viarah.entrypoints.web.ratelimit import LoginThrottle

log = logging.getLogger("viarah.web")

LifespanHook = Callable[[], Awaitable[None]]


def _app_version() -> str:
    try:
        return version("viarah")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def _openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="ViaRah API",
        version=_app_version(),
        description=(
            'Errors are JSON: {"error": <sentence>, "code": <code>, "fields"?: '
            "{field: reason}}. Authenticate with the session cookie (unsafe methods need "
            f"the {CSRF_HEADER} header) or an API token (Authorization: Bearer vrak_...)."
        ),
        path="/schema",
        render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin()],
        components=Components(
            security_schemes={
                "session": SecurityScheme(
                    type="apiKey", name=SESSION_COOKIE, security_scheme_in="cookie"
                ),
                "apiToken": SecurityScheme(type="http", scheme="bearer"),
            }
        ),
        security=[{"session": []}, {"apiToken": []}],
    )


def _api_router() -> Router:
    """Everything under ``/api``: authenticated unless a handler says ``public``."""
    return Router(
        path="/api",
        guards=[authenticate],
        route_handlers=[
            AuthController,
            MeController,
            OrgController,
            MembershipController,
            ProjectController,
            ProjectTaskController,
            TaskController,
            GitLabIntegrationController,
            GitLabLinkController,
            PushController,
            NotificationPreferenceController,
        ],
    )


def create_app(
    container: Container,
    *,
    on_startup: Sequence[LifespanHook] = (),
    on_shutdown: Sequence[LifespanHook] = (),
) -> Litestar:
    """The HTTP API on ``container``'s services.

    ``on_startup`` hooks run in order when the app starts; ``on_shutdown`` hooks run in
    order when it stops, and then the container is closed (pooled connections disposed),
    even if a hook failed.
    """
    state = State({CONTAINER_KEY: container, THROTTLE_KEY: LoginThrottle()})
    settings = settings_of(state)
    shutdown_hooks = tuple(on_shutdown)

    async def shutdown() -> None:
        try:
            for hook in shutdown_hooks:
                try:
                    await hook()
                except Exception as exc:
                    log.error("app.shutdown_hook_failed error=%s", type(exc).__name__)
        finally:
            await close_container(container)

    return Litestar(
        # GitLab's webhook sits outside the authenticated router: no session, API token
        # or CSRF check; the use case authenticates it by X-Gitlab-Token. So does the
        # browser page (static files; its script asks the API who is logged in), and the
        # Prometheus scrape target (kept off the public proxy, see operator-basics.md).
        route_handlers=[
            HealthController,
            MetricsController,
            _api_router(),
            GitLabWebhookController,
            PageController,
        ],
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            RequestLogMiddleware(container.telemetry()),
            HostAllowlistMiddleware(settings.allowed_hosts),
        ],
        request_max_body_size=settings.max_request_bytes,
        openapi_config=_openapi_config(),
        on_startup=list(on_startup),
        on_shutdown=[shutdown],
        state=state,
        logging_config=None,
        debug=False,
    )
