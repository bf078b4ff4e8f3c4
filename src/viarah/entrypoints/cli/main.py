"""The ``viarah`` console script.

Exit codes: 0 ok, 1 failure (one line ``viarah: <reason>`` on stderr, no traceback for an
operator's mistake), 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from viarah.domain.shared.errors import DomainError
from viarah.entrypoints.cli import admin, ops, secrets, serving
from viarah.entrypoints.cli.common import CommandFailed, err
from viarah.settings import SettingsError

log = logging.getLogger("viarah.cli")

Handler = Callable[[argparse.Namespace], int]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), got {value}")
    return value


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler, help: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="viarah", description="ViaRah: tasks linked to GitLab, with Web Push."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(sub, "serve", serving.serve, "all-in-one: web API and worker")
    web = _command(sub, "web", serving.web, "the HTTP API only")
    for p in (serve, web):
        p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
        p.add_argument("--port", type=_positive, default=8000, help="port to bind (8000)")
    web.add_argument("--workers", type=_positive, default=1, help="uvicorn worker processes")

    worker = _command(sub, "worker", serving.worker, "the background worker (needs BROKER_URL)")
    worker.add_argument("--processes", type=_positive, default=1, help="worker processes (1)")
    worker.add_argument("--threads", type=_positive, default=8, help="jobs at once per process")
    worker.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus /metrics on PORT (with --processes N: PORT..PORT+N-1); "
        "default WORKER_METRICS_PORT, empty = off",
    )
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the metrics server binds (127.0.0.1; 0.0.0.0 in a container)",
    )

    migrate = _command(sub, "migrate", admin.migrate, "upgrade the database schema to head")
    migrate.add_argument(
        "--check", action="store_true", help="exit 1 if migrations are pending; change nothing"
    )

    users = sub.add_parser("users", help="user accounts").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create_user = _command(users, "create", admin.create_user, "create a user")
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--display-name", default="")
    create_user.add_argument("--platform-admin", action="store_true")
    create_user.add_argument(
        "--password-stdin", action="store_true", required=True, help="read the password from stdin"
    )

    tokens = sub.add_parser("tokens", help="API tokens").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create_token = _command(tokens, "create", admin.create_token, "print a new API token")
    create_token.add_argument("--email", required=True, help="the token's user")
    create_token.add_argument("--name", required=True, help="what the token is for")
    create_token.add_argument("--scope", choices=("read", "write"), default="read")
    create_token.add_argument("--expires-days", type=_positive, default=None)

    keys = sub.add_parser("keys", help="generate and rotate keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    _command(keys, "fernet", admin.keys_fernet, "a fresh VIA_RAH_ENCRYPTION_KEY")
    _command(keys, "vapid", admin.keys_vapid, "a fresh Web Push VAPID keypair")
    _command(
        keys,
        "rotate",
        secrets.rotate,
        "re-encrypt every stored secret with the first key of VIA_RAH_ENCRYPTION_KEY",
    )
    doctor = sub.add_parser("doctor", help="diagnose stored data").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    _command(doctor, "secrets", secrets.doctor_secrets, "report secrets no configured key decrypts")

    _command(sub, "check", admin.check, "validate the configuration; exit 1 on any problem")

    db = sub.add_parser("db", help="back up and restore the PostgreSQL database").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    backup = _command(db, "backup", ops.db_backup, "write a plain-SQL backup with a manifest")
    backup.add_argument(
        "--output",
        metavar="FILE",
        default=None,
        help="file or directory to write to (viarah-backup-<UTC time>.sql in the current "
        "directory)",
    )
    restore = _command(
        db, "restore", ops.db_restore, "restore a backup into an empty database, then migrate"
    )
    restore.add_argument("file", metavar="FILE", help="a file written by `viarah db backup`")
    restore.add_argument(
        "--yes",
        action="store_true",
        help="the database is not empty: drop everything in its public schema first",
    )

    smoke = _command(sub, "smoke", ops.smoke, "run the operator smoke checklist against a stack")
    smoke.add_argument(
        "--url",
        type=ops.smoke_url,
        default=ops.DEFAULT_URL,
        help=f"the web API's base URL ({ops.DEFAULT_URL})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    handler: Handler = args.handler
    try:
        return handler(args)
    except SettingsError as exc:
        for problem in exc.problems:
            err(f"viarah: {problem}")
        return 1
    except (CommandFailed, DomainError) as exc:
        reason = exc.message if isinstance(exc, DomainError) else str(exc)
        err(f"viarah: {reason}")
        return 1
    except KeyboardInterrupt:
        err("viarah: interrupted")
        return 130
    except Exception as exc:
        log.debug("unexpected error", exc_info=True)
        err(
            f"viarah: unexpected error ({type(exc).__name__}); "
            "set VIA_RAH_LOG_LEVEL=DEBUG to see the details"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
