"""Fixtures for system tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.system.processes import Proc


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()
