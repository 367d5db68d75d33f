"""The library package: every public name resolves, lazily, to its one definition."""

from __future__ import annotations

import subprocess
import sys

import jobservice.core as core


def test_every_public_name_has_a_home_and_resolves() -> None:
    assert set(core.__all__) == set(core._HOMES)
    for name in core.__all__:
        value = getattr(core, name)
        assert value.__module__ == f"jobservice.core.{core._HOMES[name]}"


def test_records_load_without_the_coordinator() -> None:
    code = (
        "import sys, jobservice.core.model\n"
        "print('jobservice.core.coordinator' in sys.modules, 'subprocess' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
