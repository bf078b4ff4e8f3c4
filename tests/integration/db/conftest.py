from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dependency_injector import providers

from tests.conftest import base_env
from viarah.adapters.crypto.passwords import Argon2PasswordHasher
from viarah.container import Container, build_container, close_container
from viarah.settings import load_settings


@pytest.fixture
async def container(database_url: str) -> AsyncIterator[Container]:
    """The production container on a real database (SQLite and PostgreSQL)."""
    container = build_container(load_settings(base_env(DATABASE_URL=database_url)).require_valid())
    container.password_hasher.override(providers.Object(Argon2PasswordHasher(fast=True)))
    yield container
    await close_container(container)
