"""Which package may import which: the layers, read from every module's imports (lazy ones too).

cli, bench, scripts  ->  anything below (the api through its public face only)
api                  ->  core, security, cluster, store, _upstream, neutral modules
cluster              ->  core, security, _upstream, neutral modules   (never api or cli)
store                ->  core (the interface it implements), neutral modules
security             ->  _upstream, neutral modules
core                 ->  neutral modules only                          (nothing of gRPC)
_upstream            ->  nothing of jobservice
address, logsafe,    ->  nothing of jobservice (the neutral modules: standard library only)
units
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

_NEUTRAL = {"jobservice.address", "jobservice.logsafe", "jobservice.units"}
# A layer and the jobservice packages (besides itself and the neutral modules) it may import.
ALLOWED: dict[str, set[str]] = {
    "jobservice.address": set(),
    "jobservice.logsafe": set(),
    "jobservice.units": set(),
    "jobservice._upstream": set(),
    "jobservice.core": set(),
    "jobservice.security": {"jobservice._upstream"},
    "jobservice.cluster": {"jobservice.core", "jobservice.security", "jobservice._upstream"},
    "jobservice.store": {"jobservice.core"},
    "jobservice.api": {
        "jobservice.core",
        "jobservice.security",
        "jobservice.cluster",
        "jobservice.store",
        "jobservice._upstream",
    },
}
# Other projects a layer must not use, whatever it imports them through.
FORBIDDEN_THIRD_PARTY = {
    "jobservice.core": {"grpclib", "grpc", "h2", "hpack", "hyperframe", "google", "nats"},
    "jobservice.address": {"grpclib", "h2", "google", "cryptography", "click"},
    "jobservice.logsafe": {"grpclib", "h2", "google", "cryptography", "click"},
    "jobservice.units": {"grpclib", "h2", "google", "cryptography", "click"},
}
# What code outside the api package may import of it: the public face, the server face and
# the generated messages. Everything else in `jobservice.api` is private to the package.
API_FACE = ("jobservice.api", "jobservice.api.server", "jobservice.api.v1")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in the file (function bodies included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _layer(module: str) -> str | None:
    return next((layer for layer in ALLOWED if _within(module, layer)), None)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


SOURCES = sorted(p for p in (SRC / "jobservice").rglob("*.py") if "v1" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_each_module_imports_only_what_its_layer_may(path: Path) -> None:
    module = _module_name(path)
    layer = _layer(module)
    if layer is None:  # jobservice.cli and the package root: the top
        return
    allowed = {layer, *_NEUTRAL, *ALLOWED[layer]}
    for imported in _imports(path):
        if _within(imported, "jobservice") and imported != "jobservice":
            owner = _layer(imported) or imported
            assert any(_within(owner, a) for a in allowed), f"{module} imports {imported}"
        top = imported.split(".")[0]
        assert top not in FORBIDDEN_THIRD_PARTY.get(layer, set()), f"{module} imports {imported}"


OUTSIDE_API = [
    p
    for p in [*SOURCES, *(ROOT / "bench").glob("*.py"), *(ROOT / "scripts").glob("*.py")]
    if not _within(_module_name(p) if p.is_relative_to(SRC) else "", "jobservice.api")
]


@pytest.mark.parametrize("path", OUTSIDE_API, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_api_is_imported_through_its_faces_only(path: Path) -> None:
    for imported in _imports(path):
        if not _within(imported, "jobservice.api"):
            continue
        face = imported == "jobservice.api" or any(
            _within(imported, f) for f in API_FACE if f != "jobservice.api"
        )
        # `from jobservice.api import open_channel` names an attribute, not a module.
        public = (
            imported.rsplit(".", 1)[0] == "jobservice.api"
            and imported.rsplit(".", 1)[1] in _api_names()
        )
        assert face or public, f"{path.name} imports {imported}, private to jobservice.api"


def _api_names() -> set[str]:
    import jobservice.api  # noqa: PLC0415

    return set(jobservice.api.__all__)


def test_the_rules_cover_a_package_for_every_directory() -> None:
    packages = {
        _module_name(p.parent / "__init__.py")
        for p in SOURCES
        if p.name == "__init__.py" and p.parent.parent.name == "jobservice"
    }
    assert packages <= {*ALLOWED, "jobservice.cli"}, packages - {*ALLOWED, "jobservice.cli"}
