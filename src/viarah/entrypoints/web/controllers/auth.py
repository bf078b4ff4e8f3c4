"""Logging in and out with a cookie session."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from viarah.domain.identity.services import Authentication
from viarah.domain.orgs.services import Organizations
from viarah.domain.shared.actor import Actor
from viarah.domain.shared.errors import Unauthenticated
from viarah.entrypoints.web.auth import clear_session_cookies, set_session_cookies
from viarah.entrypoints.web.controllers.me import NO_STORE, MeOut, me_view
from viarah.entrypoints.web.errors import API_ERRORS, LOGIN_ERRORS
from viarah.entrypoints.web.ratelimit import LoginThrottle
from viarah.settings import Settings

log = logging.getLogger("viarah.web")


class LoginIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    email: str
    password: str


def _client_ip(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


class AuthController(Controller):
    """Cookie sessions for browsers; scripts use API tokens instead."""

    path = "/auth"
    tags = ["auth"]

    @post(
        "/login",
        responses=LOGIN_ERRORS,
        opt={"public": True},
        status_code=HTTP_200_OK,
        summary="Open a session: sets the session and CSRF cookies",
    )
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[LoginIn],
        authentication: NamedDependency[Authentication],
        organizations: NamedDependency[Organizations],
        throttle: NamedDependency[LoginThrottle],
        settings: NamedDependency[Settings],
    ) -> Response[MeOut]:
        client_ip = _client_ip(request)
        throttle.check(client_ip, data.email)
        try:
            opened = await authentication.login(data.email, data.password)
        except Unauthenticated:
            throttle.failed(client_ip, data.email)
            log.info("auth.login_failed ip=%s", client_ip)
            raise
        throttle.succeeded(client_ip, data.email)
        log.info("auth.login user_id=%s", opened.user.id)
        actor = Actor(
            user_id=opened.user.id,
            platform_role=opened.user.platform_role,
            session_id=opened.session.id,
        )
        response = Response(
            await me_view(opened.user, actor, organizations), headers=dict(NO_STORE)
        )
        set_session_cookies(
            response, opened, secure=not settings.debug, now=opened.session.created_at
        )
        return response

    @post(
        "/logout",
        responses=API_ERRORS,
        opt={"session_only": True},
        status_code=HTTP_204_NO_CONTENT,
        summary="End the session server-side and clear the cookies",
    )
    async def logout(
        self,
        actor: NamedDependency[Actor],
        authentication: NamedDependency[Authentication],
        settings: NamedDependency[Settings],
    ) -> Response[None]:
        await authentication.logout(actor)
        log.info("auth.logout user_id=%s", actor.user_id)
        response: Response[None] = Response(None, status_code=HTTP_204_NO_CONTENT)
        clear_session_cookies(response, secure=not settings.debug)
        return response
