"""A database that is down gives a clear Unavailable, never a raw driver error."""

from __future__ import annotations

import pytest

from tests.conftest import base_env
from viarah.container import build_container, close_container
from viarah.domain.shared.errors import Unavailable
from viarah.settings import load_settings


async def test_unreachable_postgres_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(base_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing"))
    container = build_container(settings.require_valid())
    try:
        with pytest.raises(Unavailable, match="database is unavailable"):
            await container.users().create("ada@example.com", "correct horse")
        assert not await container.health().database_ok()
        assert any("db.unavailable" in r.getMessage() for r in caplog.records)
    finally:
        await close_container(container)
