"""Operator commands: migrate, users, tokens, keys, check."""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit

from viarah.container import (
    Container,
    broker_reachable,
    key_problems,
    migrate_database,
    migration_state,
    new_fernet_key,
    new_vapid_keypair,
)
from viarah.domain.shared.errors import DomainError
from viarah.entrypoints.cli.common import (
    CommandFailed,
    describe_database,
    err,
    load,
    require_migrated,
    sqlite_path,
    with_container,
)
from viarah.settings import Settings, load_settings

DATABASE_ONLY = ("DATABASE_URL",)


def migrate(args: argparse.Namespace) -> int:
    """``viarah migrate [--check]``."""
    settings = load(DATABASE_ONLY)
    where = describe_database(settings)
    if args.check:
        path = sqlite_path(settings.database_url)
        if path is not None and not path.exists():
            raise CommandFailed(f"the database {path} does not exist; run `viarah migrate`")
        state = migration_state(settings.database_url)
        if state.pending:
            raise CommandFailed(
                f"{len(state.pending)} pending migration(s) on {where}: "
                f"{', '.join(state.pending)}; run `viarah migrate`"
            )
        print(f"up to date: {where} is at revision {state.current}")
        return 0
    state = migrate_database(settings.database_url)
    print(f"migrated: {where} is at revision {state.current} (head)")
    return 0


def create_user(args: argparse.Namespace) -> int:
    """``viarah users create --email E [--display-name N] [--platform-admin] --password-stdin``."""
    settings = load(DATABASE_ONLY)
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise CommandFailed("password: nothing was read from stdin")
    require_migrated(settings)

    async def create(container: Container) -> str:
        user = await container.users().create(
            args.email,
            password,
            args.display_name or "",
            platform_admin=args.platform_admin,
        )
        role = "platform admin" if args.platform_admin else "user"
        return f"created {role} {user.email} (id {user.id})"

    print(with_container(settings, create))
    return 0


def create_token(args: argparse.Namespace) -> int:
    """``viarah tokens create``: prints only the token, so it can be piped."""
    settings = load(DATABASE_ONLY)
    require_migrated(settings)

    async def issue(container: Container) -> str:
        issued = await container.api_tokens().issue_for_email(
            args.email, args.name, args.scope, args.expires_days
        )
        return issued.plaintext

    print(with_container(settings, issue))
    return 0


def keys_fernet(_args: argparse.Namespace) -> int:
    """``viarah keys fernet``: a fresh key as a ``.env`` line."""
    print(f"VIA_RAH_ENCRYPTION_KEY={new_fernet_key()}")
    return 0


def keys_vapid(_args: argparse.Namespace) -> int:
    """``viarah keys vapid``: a fresh keypair as ``.env`` lines."""
    pair = new_vapid_keypair()
    print(f"WEBPUSH_VAPID_PUBLIC_KEY={pair.public_key}")
    print(f"WEBPUSH_VAPID_PRIVATE_KEY={pair.private_key}")
    return 0


def _redis_location(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path}"


def _database_problems(settings: Settings) -> list[str]:
    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        return [f"DATABASE_URL: the SQLite database {path} does not exist; run `viarah migrate`"]
    try:
        state = migration_state(settings.database_url)
    except DomainError as exc:
        return [f"DATABASE_URL: {exc.message}"]
    if state.pending:
        return [
            f"DATABASE_URL: {len(state.pending)} pending migration(s) "
            f"({', '.join(state.pending)}); run `viarah migrate`"
        ]
    return []


def collect_problems(settings: Settings) -> list[str]:
    """Every configuration problem, one line each, starting with the variable's name."""
    problems = list(settings.problems)
    problems.extend(key_problems(settings))
    named = {problem.split(":", 1)[0] for problem in problems}
    if "DATABASE_URL" not in named:
        problems.extend(_database_problems(settings))
    broker_named = "BROKER_URL" in named
    if settings.broker_url and not broker_named and not broker_reachable(settings.broker_url):
        problems.append(f"BROKER_URL: cannot reach Redis at {_redis_location(settings.broker_url)}")
    return problems


def check(_args: argparse.Namespace) -> int:
    """``viarah check``: print every problem; exit 1 if there is any."""
    settings = load_settings()
    load(settings=settings, only=())  # prints the deprecation notices
    vapid = {
        "WEBPUSH_VAPID_PUBLIC_KEY": settings.vapid_public_key,
        "WEBPUSH_VAPID_PRIVATE_KEY": settings.vapid_private_key,
        "WEBPUSH_VAPID_SUBJECT": settings.vapid_subject,
    }
    missing = [name for name, value in vapid.items() if not value]
    if missing and len(missing) < len(vapid):
        err(f"viarah: notice: Web Push is disabled until {', '.join(missing)} is set")
    if not settings.broker_url:
        err("viarah: notice: BROKER_URL is empty: only `viarah serve` runs background jobs")
    problems = collect_problems(settings)
    for problem in problems:
        err(problem)
    if problems:
        err(f"viarah: {len(problems)} configuration problem(s)")
        return 1
    print("configuration OK")
    return 0
