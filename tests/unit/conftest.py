"""Fixtures for the library's tests: a coordinator on a temporary data directory."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jobservice.core import ConfinementUnavailable, JobCoordinator
from jobservice.core.confine import Confinement, ConfineMode, detect


@pytest.fixture
async def coord(tmp_path: Path) -> AsyncIterator[JobCoordinator]:
    c = JobCoordinator(tmp_path / "data", stop_grace=1.0)
    yield c
    await c.close()


_names = itertools.count()


@pytest.fixture
def confinement() -> Iterator[Confinement]:
    """The host's real cgroup layout, under a group named for this test run (issue 11)."""
    if os.geteuid() != 0:
        pytest.skip("confinement tests need root (cgroups and run-as)")
    try:
        found, _ = detect(ConfineMode.REQUIRED, f"i11-test-{os.getpid()}-{next(_names)}")
    except ConfinementUnavailable as exc:
        pytest.skip(f"no cgroups to confine jobs in: {exc}")
    yield found
    found.close()


@pytest.fixture
async def confined(tmp_path: Path, confinement: Confinement) -> AsyncIterator[JobCoordinator]:
    """A coordinator whose jobs run in their own cgroups."""
    c = JobCoordinator(tmp_path / "data", stop_grace=1.0, confinement=confinement)
    yield c
    await c.close()
