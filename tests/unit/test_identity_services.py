from __future__ import annotations

from dataclasses import replace

import pytest

from tests.fakes import FakeKeyedHasher, FakeUnitOfWork
from tests.unit.conftest import App
from viarah.domain.identity.model import API_TOKEN_PREFIX, digest
from viarah.domain.identity.services import ApiTokens, Authentication, RecentTokens
from viarah.domain.shared.actor import Actor, PlatformRole, TokenScope
from viarah.domain.shared.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated


async def test_create_user_normalizes_email_and_hashes_password(app: App) -> None:
    user = await app.users.create("  Ada@Example.COM ", "correct horse", "Ada")
    assert user.email == "ada@example.com"
    assert user.display_name == "Ada"
    assert "correct horse" not in user.password_hash
    assert app.hasher.verify(user.password_hash, "correct horse")
    assert user.platform_role is PlatformRole.USER


async def test_display_name_defaults_to_local_part(app: App) -> None:
    user = await app.users.create("grace@example.com", "correct horse")
    assert user.display_name == "grace"


async def test_duplicate_email_conflicts(app: App) -> None:
    await app.users.create("ada@example.com", "correct horse")
    with pytest.raises(Conflict):
        await app.users.create("ADA@example.com", "another pass")


async def test_a_session_is_valid_only_under_the_secret_key_it_was_issued_with(
    app: App,
) -> None:
    await app.user("ada@example.com")
    opened = await app.auth.login("ada@example.com", "correct horse")

    def uow() -> FakeUnitOfWork:
        return FakeUnitOfWork(app.db)

    other_key = Authentication(uow, app.clock, app.hasher, FakeKeyedHasher("rotated"))
    with pytest.raises(Unauthenticated):  # VIA_RAH_SECRET_KEY changed: everyone logs in again
        await other_key.from_session(opened.cookie_value)
    same_key = Authentication(uow, app.clock, app.hasher, FakeKeyedHasher())
    actor, _ = await same_key.from_session(opened.cookie_value)
    assert actor.session_id == opened.session.id


@pytest.mark.parametrize(
    ("email", "password", "field"),
    [
        ("not-an-email", "correct horse", "email"),
        ("a@b", "correct horse", "email"),
        ("ada@example.com", "short", "password"),
        ("ada@example.com", "x" * 2000, "password"),
    ],
)
async def test_create_user_rejects_bad_input(
    app: App, email: str, password: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        await app.users.create(email, password)
    assert info.value.field == field


async def test_platform_admin_flag(app: App) -> None:
    user = await app.users.create("root@example.com", "correct horse", platform_admin=True)
    assert user.platform_role is PlatformRole.ADMIN


async def test_login_opens_a_session_that_resolves_to_the_user(app: App) -> None:
    user, _ = await app.user("ada@example.com")
    opened = await app.auth.login("ADA@example.com", "correct horse")
    assert opened.user.id == user.id
    # Stored as the server secret's HMAC of the cookie (never the cookie, nor a plain hash).
    assert opened.session.token_digest == FakeKeyedHasher().digest("session:" + opened.cookie_value)
    assert opened.session.token_digest != digest(opened.cookie_value)
    assert opened.cookie_value not in repr(opened.session)
    actor, session = await app.auth.from_session(opened.cookie_value)
    assert actor.user_id == user.id
    assert actor.scope is None
    assert actor.can_write
    assert session.csrf_matches(opened.session.csrf_token)
    assert not session.csrf_matches("wrong")
    assert not session.csrf_matches(None)


@pytest.mark.parametrize(
    ("email", "password"),
    [("ada@example.com", "wrong password"), ("nobody@example.com", "correct horse"), ("bad", "x")],
)
async def test_login_failures_are_indistinguishable(app: App, email: str, password: str) -> None:
    await app.user("ada@example.com")
    with pytest.raises(Unauthenticated) as info:
        await app.auth.login(email, password)
    assert info.value.message == "email or password is incorrect"


async def test_login_rehashes_outdated_password_hash(app: App) -> None:
    user, _ = await app.user("ada@example.com")
    app.hasher.version = "v2"
    await app.auth.login("ada@example.com", "correct horse")
    assert app.db.users[user.id].password_hash.startswith("fake-v2$")


async def test_logout_kills_the_session_server_side(app: App) -> None:
    await app.user("ada@example.com")
    opened = await app.auth.login("ada@example.com", "correct horse")
    actor, _ = await app.auth.from_session(opened.cookie_value)
    await app.auth.logout(actor)
    with pytest.raises(Unauthenticated):
        await app.auth.from_session(opened.cookie_value)


async def test_session_expires(app: App) -> None:
    await app.user("ada@example.com")
    opened = await app.auth.login("ada@example.com", "correct horse")
    app.clock.advance(days=15)
    with pytest.raises(Unauthenticated):
        await app.auth.from_session(opened.cookie_value)
    assert await app.auth.purge_expired_sessions() == 1
    assert app.db.sessions == {}


async def test_api_token_round_trip_records_last_use(app: App) -> None:
    user, actor = await app.user("ada@example.com")
    issued = await app.tokens.create(actor, "ci", "write", expires_days=30)
    assert issued.plaintext.startswith(API_TOKEN_PREFIX + issued.token.prefix + ".")
    stored = app.db.api_tokens[issued.token.id]
    assert issued.plaintext.split(".", 1)[1] not in repr(stored)
    token_actor = await app.auth.from_api_token(issued.plaintext)
    assert token_actor.user_id == user.id
    assert token_actor.scope is TokenScope.WRITE
    assert app.db.api_tokens[issued.token.id].last_used_at == app.clock.now()


async def test_last_used_is_written_at_most_once_a_minute(app: App) -> None:
    _, actor = await app.user("ada@example.com")
    issued = await app.tokens.create(actor, "ci")
    await app.auth.from_api_token(issued.plaintext)
    commits = app.db.commits
    app.clock.advance(seconds=30)
    await app.auth.from_api_token(issued.plaintext)
    assert app.db.commits == commits
    app.clock.advance(seconds=31)
    await app.auth.from_api_token(issued.plaintext)
    assert app.db.commits == commits + 1


async def test_read_scope_token_cannot_write(app: App) -> None:
    _, actor = await app.user("ada@example.com")
    issued = await app.tokens.create(actor, "reader")
    token_actor = await app.auth.from_api_token(issued.plaintext)
    assert token_actor.scope is TokenScope.READ
    assert not token_actor.can_write


@pytest.mark.parametrize(
    "raw",
    ["", "vrak_", "vrak_abc", "vrak_.secret", "bearer", "vrak_abc.", "vrak_" + "a" * 40 + ".x"],
)
async def test_malformed_tokens_are_refused(app: App, raw: str) -> None:
    with pytest.raises(Unauthenticated):
        await app.auth.from_api_token(raw)


async def test_wrong_secret_expired_and_revoked_tokens_are_refused(app: App) -> None:
    _, actor = await app.user("ada@example.com")
    issued = await app.tokens.create(actor, "ci", expires_days=1)
    prefix = issued.plaintext.split(".", 1)[0]
    with pytest.raises(Unauthenticated):
        await app.auth.from_api_token(prefix + ".not-the-secret")
    app.clock.advance(days=2)
    with pytest.raises(Unauthenticated, match="expired or revoked"):
        await app.auth.from_api_token(issued.plaintext)

    other = await app.tokens.create(actor, "other")
    await app.tokens.revoke(actor, other.token.id)
    with pytest.raises(Unauthenticated, match="expired or revoked"):
        await app.auth.from_api_token(other.plaintext)


async def test_tokens_of_a_deactivated_user_stop_working(app: App) -> None:
    user, actor = await app.user("ada@example.com")
    issued = await app.tokens.create(actor, "ci")
    app.db.users[user.id] = replace(user, is_active=False)
    with pytest.raises(Unauthenticated):
        await app.auth.from_api_token(issued.plaintext)


async def test_tokens_are_listed_and_revoked_only_by_their_owner(app: App) -> None:
    _, ada = await app.user("ada@example.com")
    _, bob = await app.user("bob@example.com")
    issued = await app.tokens.create(ada, "ci")
    assert [t.id for t in await app.tokens.list_tokens(ada)] == [issued.token.id]
    assert await app.tokens.list_tokens(bob) == []
    with pytest.raises(NotFound):
        await app.tokens.revoke(bob, issued.token.id)
    await app.tokens.revoke(ada, issued.token.id)
    await app.tokens.revoke(ada, issued.token.id)  # idempotent
    assert app.db.api_tokens[issued.token.id].revoked_at == app.clock.now()


async def test_tokens_cannot_mint_tokens(app: App) -> None:
    _, actor = await app.user("ada@example.com")
    issued = await app.tokens.create(actor, "ci", "write")
    token_actor = await app.auth.from_api_token(issued.plaintext)
    with pytest.raises(Forbidden):
        await app.tokens.create(token_actor, "escalate", "write")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "", "scope": "read"}, "name"),
        ({"name": "x", "scope": "admin"}, "scope"),
        ({"name": "x", "scope": "read", "expires_days": 0}, "expires_days"),
        ({"name": "x", "scope": "read", "expires_days": 99999}, "expires_days"),
    ],
)
async def test_token_input_validation(app: App, kwargs: dict[str, object], field: str) -> None:
    _, actor = await app.user("ada@example.com")
    with pytest.raises(InvalidInput) as info:
        await app.tokens.create(actor, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


async def test_issue_for_email_for_operators(app: App) -> None:
    user, _ = await app.user("ada@example.com")
    issued = await app.tokens.issue_for_email("ADA@example.com", "cli", "write")
    assert issued.token.user_id == user.id
    with pytest.raises(NotFound):
        await app.tokens.issue_for_email("nobody@example.com", "cli")


async def test_logout_requires_a_session(app: App) -> None:
    user, _ = await app.user("ada@example.com")
    with pytest.raises(Forbidden):
        await app.auth.logout(Actor(user_id=user.id, scope=TokenScope.WRITE))


# --- API tokens remembered for a second ---------------------------------------------------


def _remembering(app: App) -> tuple[Authentication, ApiTokens]:
    """This process's authentication and tokens, sharing one RecentTokens."""

    def uow() -> FakeUnitOfWork:
        return FakeUnitOfWork(app.db)

    recent = RecentTokens()
    return (
        Authentication(uow, app.clock, app.hasher, FakeKeyedHasher(), recent_tokens=recent),
        ApiTokens(uow, app.clock, recent_tokens=recent),
    )


async def test_a_token_revoked_elsewhere_is_refused_within_a_second(app: App) -> None:
    auth, _ = _remembering(app)
    user, actor = await app.user("ada@example.com")
    issued = await app.tokens.create(actor, "ci")
    assert (await auth.from_api_token(issued.plaintext)).user_id == user.id
    await app.tokens.revoke(actor, issued.token.id)  # another process: this one still knows
    app.clock.advance(seconds=0.5)
    assert (await auth.from_api_token(issued.plaintext)).user_id == user.id
    with pytest.raises(Unauthenticated):  # the secret is still checked on every request
        await auth.from_api_token(issued.plaintext.split(".", 1)[0] + ".not-the-secret")
    app.clock.advance(seconds=0.5)
    with pytest.raises(Unauthenticated, match="expired or revoked"):
        await auth.from_api_token(issued.plaintext)


async def test_a_token_revoked_in_this_process_is_refused_at_once(app: App) -> None:
    auth, tokens = _remembering(app)
    _, actor = await app.user("ada@example.com")
    issued = await tokens.create(actor, "ci")
    await auth.from_api_token(issued.plaintext)
    await tokens.revoke(actor, issued.token.id)
    with pytest.raises(Unauthenticated, match="expired or revoked"):
        await auth.from_api_token(issued.plaintext)


async def test_remembered_tokens_are_looked_up_once_a_second_and_touched_once_a_minute(
    app: App,
) -> None:
    auth, _ = _remembering(app)
    _, actor = await app.user("ada@example.com")
    issued = await app.tokens.create(actor, "ci")
    stored = app.db.api_tokens.pop(issued.token.id)  # not committed yet, say
    with pytest.raises(Unauthenticated):
        await auth.from_api_token(issued.plaintext)
    app.db.api_tokens[stored.id] = stored
    await auth.from_api_token(issued.plaintext)  # an unknown prefix was not remembered
    commits = app.db.commits
    stored = app.db.api_tokens.pop(issued.token.id)  # no lookup can find it now
    for _ in range(3):
        app.clock.advance(seconds=0.2)
        await auth.from_api_token(issued.plaintext)  # from memory, not touched again
    assert app.db.commits == commits
    app.db.api_tokens[stored.id] = stored
    app.clock.advance(seconds=61)
    await auth.from_api_token(issued.plaintext)
    assert app.db.commits == commits + 1
    assert app.db.api_tokens[stored.id].last_used_at == app.clock.now()
