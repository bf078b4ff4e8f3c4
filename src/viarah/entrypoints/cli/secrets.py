"""Operator commands on stored secrets: ``viarah keys rotate`` and ``viarah doctor secrets``."""

from __future__ import annotations

import argparse
import sys

from viarah.container import Container, key_problems
from viarah.entrypoints.cli.common import CommandFailed, err, load, require_migrated, with_container
from viarah.settings import Settings

#: What these commands need from the configuration.
NEEDED = ("DATABASE_URL", "VIA_RAH_ENCRYPTION_KEY")


def _require_keys(settings: Settings) -> None:
    problems = [p for p in key_problems(settings) if p.startswith("VIA_RAH_ENCRYPTION_KEY")]
    if problems:
        raise CommandFailed("; ".join(problems))
    if not settings.encryption_keys:
        raise CommandFailed(
            "VIA_RAH_ENCRYPTION_KEY: is not set (generate one with `viarah keys fernet`)"
        )
    require_migrated(settings)


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width if total == 0 else int(width * done / total)
    bar = "#" * filled + "-" * (width - filled)
    end = "\n" if done >= total else ""
    print(f"\rrotating [{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)


def rotate(_args: argparse.Namespace) -> int:
    """Re-encrypt every stored secret with the first key of VIA_RAH_ENCRYPTION_KEY."""
    settings = load(NEEDED)
    _require_keys(settings)

    async def run(container: Container) -> int:
        report = await container.stored_secrets().rotate(_progress)
        print(
            f"rotated {report.rotated} of {report.examined} integration(s) "
            "to the newest key; the others already used it"
        )
        for failure in report.failed:
            err(f"viarah: cannot decrypt {failure} with any configured key")
        return 1 if report.failed else 0

    return with_container(settings, run)


def doctor_secrets(_args: argparse.Namespace) -> int:
    """Try to decrypt every stored secret; list those no configured key opens."""
    settings = load(NEEDED)
    _require_keys(settings)

    async def run(container: Container) -> int:
        checked, broken = await container.stored_secrets().undecryptable()
        for item in broken:
            print(f"✗ org {item.org_id}: {item.field} does not decrypt with any configured key")
        if broken:
            err(
                f"viarah: {len(broken)} of {checked} stored secret(s) cannot be decrypted; "
                "restore the key that encrypted them (keep it after the new key in "
                "VIA_RAH_ENCRYPTION_KEY) or re-enter those secrets"
            )
            return 1
        print(f"✓ all {checked} stored secret(s) decrypt with the configured keys")
        return 0

    return with_container(settings, run)
