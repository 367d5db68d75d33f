"""Fixtures for the library's tests: a coordinator on a temporary data directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobservice.core import JobCoordinator


@pytest.fixture
async def coord(tmp_path: Path) -> AsyncIterator[JobCoordinator]:
    c = JobCoordinator(tmp_path / "data", stop_grace=1.0)
    yield c
    await c.close()
