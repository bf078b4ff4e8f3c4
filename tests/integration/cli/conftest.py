"""Fixtures for the operator commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import base_env
from viarah.settings import VARIABLES


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment in an empty directory (no stray .env), valid by default."""
    monkeypatch.chdir(tmp_path)
    for variable in VARIABLES:
        monkeypatch.delenv(variable.name, raising=False)
        if variable.alias:
            monkeypatch.delenv(variable.alias, raising=False)
    for name, value in base_env().items():
        monkeypatch.setenv(name, value)
    return monkeypatch
