"""The caller: ``/api/me`` and personal API tokens (``/api/me/tokens``, session only)."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from viarah.domain.identity.model import ApiToken, User
from viarah.domain.identity.services import ApiTokens, Users
from viarah.domain.orgs.model import MemberUser
from viarah.domain.orgs.services import Organizations
from viarah.domain.shared.actor import Actor
from viarah.entrypoints.web.errors import API_ERRORS

NO_STORE = {"Cache-Control": "no-store"}


class UserOut(msgspec.Struct, frozen=True):
    id: str
    email: str
    display_name: str

    @staticmethod
    def of(user: User | MemberUser) -> UserOut:
        return UserOut(id=user.id, email=user.email, display_name=user.display_name)


class MyMembershipOut(msgspec.Struct, frozen=True):
    org_id: str
    org_name: str
    role: str


class MeOut(msgspec.Struct, frozen=True):
    user: UserOut
    memberships: list[MyMembershipOut]
    platform_role: str


async def me_view(user: User, actor: Actor, organizations: Organizations) -> MeOut:
    """The login / ``/api/me`` body: the user, their memberships and platform role."""
    views = await organizations.list_orgs(actor)
    return MeOut(
        user=UserOut.of(user),
        memberships=[
            MyMembershipOut(org_id=v.org.id, org_name=v.org.name, role=v.role.value) for v in views
        ],
        platform_role=user.platform_role.value,
    )


class TokenIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    scope: str = "read"
    expires_days: int | None = None


class ApiTokenOut(msgspec.Struct, frozen=True):
    id: str
    name: str
    prefix: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @staticmethod
    def of(token: ApiToken) -> ApiTokenOut:
        return ApiTokenOut(
            id=token.id,
            name=token.name,
            prefix=token.prefix,
            scope=token.scope.value,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
            last_used_at=token.last_used_at,
        )


class TokenListOut(msgspec.Struct, frozen=True):
    tokens: list[ApiTokenOut]


class IssuedTokenOut(msgspec.Struct, frozen=True):
    token: str
    api_token: ApiTokenOut


class MeController(Controller):
    """Who am I, and my API tokens."""

    path = "/me"
    tags = ["me"]

    @get("", responses=API_ERRORS, summary="The caller, their memberships and platform role")
    async def me(
        self,
        actor: NamedDependency[Actor],
        users: NamedDependency[Users],
        organizations: NamedDependency[Organizations],
    ) -> MeOut:
        user = await users.get(actor.user_id)
        return await me_view(user, actor, organizations)

    @get(
        "/tokens",
        responses=API_ERRORS,
        opt={"session_only": True},
        summary="My API tokens (never the secrets)",
    )
    async def list_tokens(
        self, actor: NamedDependency[Actor], api_tokens: NamedDependency[ApiTokens]
    ) -> TokenListOut:
        tokens = await api_tokens.list_tokens(actor)
        return TokenListOut(tokens=[ApiTokenOut.of(t) for t in tokens])

    @post(
        "/tokens",
        responses=API_ERRORS,
        opt={"session_only": True},
        status_code=HTTP_201_CREATED,
        summary="Issue an API token; the plaintext is shown once",
    )
    async def create_token(
        self,
        actor: NamedDependency[Actor],
        api_tokens: NamedDependency[ApiTokens],
        data: JSONBody[TokenIn],
    ) -> Response[IssuedTokenOut]:
        issued = await api_tokens.create(actor, data.name, data.scope, data.expires_days)
        body = IssuedTokenOut(token=issued.plaintext, api_token=ApiTokenOut.of(issued.token))
        return Response(body, status_code=HTTP_201_CREATED, headers=NO_STORE)

    @delete(
        "/tokens/{token_id:str}",
        responses=API_ERRORS,
        opt={"session_only": True},
        summary="Revoke an API token",
    )
    async def revoke_token(
        self,
        actor: NamedDependency[Actor],
        api_tokens: NamedDependency[ApiTokens],
        token_id: FromPath[str],
    ) -> None:
        await api_tokens.revoke(actor, token_id)
