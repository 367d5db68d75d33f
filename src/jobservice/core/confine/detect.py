"""Choose the cgroup layout at start: pure v2, hybrid (v2 tracking + v1 limits), or none."""

from __future__ import annotations

import enum
import hashlib
import os
from pathlib import Path

from jobservice.core.confine.base import Confinement
from jobservice.core.confine.cgroupfs import Mount, cgroup_mounts, own_cgroups
from jobservice.core.confine.hybrid import V1_CONTROLLERS, HybridConfinement
from jobservice.core.confine.none import Unconfined
from jobservice.core.confine.v2 import CONTROLLERS, V2Confinement
from jobservice.core.errors import ConfinementUnavailable

__all__ = ["ConfineMode", "detect", "root_name"]


class ConfineMode(enum.Enum):
    """`--confine`: use cgroups when possible, insist on them, or never use them."""

    AUTO = "auto"
    REQUIRED = "required"
    OFF = "off"


def root_name(data_dir: Path | str) -> str:
    """The group jobs of one data directory live under: stable across restarts of its server."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(data_dir))).hexdigest()[:12]
    return f"jobservice-{digest}"


def detect(
    mode: ConfineMode, name: str, cgroup_root: Path | None = None
) -> tuple[Confinement, str | None]:
    """The confinement to use and, when it is none though cgroups were wanted, why.

    REQUIRED raises ConfinementUnavailable naming what is missing instead of falling back.
    """
    if mode is ConfineMode.OFF:
        return Unconfined("--confine off"), None
    try:
        return _cgroups(name, cgroup_root), None
    except (OSError, ConfinementUnavailable) as exc:
        reason = str(exc) if isinstance(exc, ConfinementUnavailable) else _why(exc)
        if mode is ConfineMode.REQUIRED:
            raise ConfinementUnavailable(f"cannot confine jobs: {reason}") from None
        return Unconfined(reason), reason


def _cgroups(name: str, cgroup_root: Path | None) -> Confinement:
    mounts = cgroup_mounts()
    v2 = next((m for m in mounts if m.version == 2), None)
    if v2 is None:
        raise ConfinementUnavailable("no cgroup2 hierarchy is mounted")
    own = own_cgroups()
    if cgroup_root is not None:
        return V2Confinement(v2.path, cgroup_root, name)
    own_v2 = v2.path / own.get("", "/").lstrip("/")
    available = set((own_v2 / "cgroup.controllers").read_text().split())
    if all(c in available for c in CONTROLLERS):
        return V2Confinement(v2.path, own_v2, name)
    v1 = {c: _v1_group(mounts, own, c) for c in V1_CONTROLLERS}
    return HybridConfinement(own_v2 / name, {c: p / name for c, p in v1.items()})


def _v1_group(mounts: list[Mount], own: dict[str, str], controller: str) -> Path:
    mount = next((m for m in mounts if m.version == 1 and controller in m.controllers), None)
    if mount is None:
        raise ConfinementUnavailable(
            f"the cgroup2 hierarchy has no {controller} controller and no v1 {controller} "
            "hierarchy is mounted"
        )
    return mount.path / own.get(controller, "/").lstrip("/")


def _why(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"no access to cgroups: {exc.strerror or exc}{where}"
