"""The cgroup file system as this process sees it: mounts, its own groups, and small file I/O."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Mount",
    "cgroup_mounts",
    "own_cgroups",
    "parse_int",
    "parse_keyed",
    "procs",
    "read_bytes",
    "read_int",
    "read_keyed",
    "remove_dir",
    "write",
]

_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class Mount:
    """A mounted cgroup hierarchy: where, which version, and (v1) which controllers."""

    path: Path
    version: int  # 1 or 2
    controllers: frozenset[str]  # v1 only; v2 lists its controllers in cgroup.controllers


def cgroup_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    """Every cgroup and cgroup2 mount, read from mountinfo (never assumed at /sys/fs/cgroup)."""
    found = []
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, super_options = fields[sep + 1], fields[sep + 3].split(",")
            if fstype not in ("cgroup", "cgroup2") or fields[3] != "/":
                continue  # a bind mount of a subtree would give wrong paths; skip it
            path = Path(_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4]))
            version = 2 if fstype == "cgroup2" else 1
            controllers = frozenset(super_options) if version == 1 else frozenset()
            found.append(Mount(path, version, controllers))
    return found


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """This process's group in each hierarchy: controller name -> path ("" names the v2 one)."""
    groups = {}
    with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                groups[name] = path
    return groups


def write(path: Path, text: str) -> None:
    """One write(2) of `text`: cgroup files take a value per write, errors come from the write."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read_bytes(path: Path) -> bytes:
    """A small cgroup file's contents; empty when it does not exist (older kernels, or gone)."""
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(4096)
    except FileNotFoundError:
        return b""


def read_keyed(path: Path) -> dict[str, int]:
    """A flat keyed file (`key value` lines: cgroup.events, cpu.stat, memory.events)."""
    return parse_keyed(read_bytes(path))


def parse_keyed(contents: bytes) -> dict[str, int]:
    """The `key value` lines of a flat keyed file's contents."""
    values = {}
    for line in contents.decode("ascii", "replace").splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return values


def read_int(path: Path) -> int | None:
    """A file holding one number, or None when it does not exist (older kernels)."""
    return parse_int(read_bytes(path))


def parse_int(contents: bytes) -> int | None:
    """The number a file's contents start with, or None (a missing file reads empty)."""
    try:
        return int(contents.split()[0])
    except (IndexError, ValueError):
        return None


def procs(path: Path) -> list[int]:
    """The processes in a group (its cgroup.procs); empty if the group is gone."""
    try:
        return [int(line) for line in path.read_text(encoding="ascii").split()]
    except FileNotFoundError:
        return []


def remove_dir(path: Path) -> None:
    """rmdir a group; gone already is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(path)
