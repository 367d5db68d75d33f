"""docs/security.md stays true: every test it cites as proof exists."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
DOC = TESTS.parent / "docs" / "security.md"
# `path/test_x.py::test_name[params]`, and `::test_other` continuing the same file.
_CITATION = re.compile(r"`(?:([\w/]+\.py))?::(test_\w+)(?:\[[^\]]*\])?`")


def test_every_cited_test_exists() -> None:
    cited: list[tuple[str, str]] = []
    for line in DOC.read_text().splitlines():
        current = None
        for path, name in _CITATION.findall(line):
            current = path or current
            assert current, f"a citation without a file: {name}"
            cited.append((current, name))
    assert len(cited) > 80
    for path, name in cited:
        source = (TESTS / path).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name} is cited"
