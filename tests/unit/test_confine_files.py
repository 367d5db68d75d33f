"""The cgroup files each layout writes and reads, and v2 tracking and kill on the real mount."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from corehelp import gone

from jobservice.core import JobLimits
from jobservice.core.confine.cgroupfs import cgroup_mounts, own_cgroups
from jobservice.core.confine.hybrid import write_v1_limits
from jobservice.core.confine.v2 import V2Job, write_v2_limits

LIMITS = JobLimits(cpu=0.5, memory=256 << 20, pids=100)


def _files(root: Path, *names: str) -> Path:
    """A directory with empty files of these names, as the kernel provides them."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_text("")
    return root


def test_pure_v2_limit_files(tmp_path: Path) -> None:
    group = _files(tmp_path, "cpu.max", "memory.max", "memory.swap.max", "pids.max")
    write_v2_limits(group, LIMITS)
    assert (group / "cpu.max").read_text() == "50000 100000"
    assert (group / "memory.max").read_text() == str(256 << 20)
    assert (group / "memory.swap.max").read_text() == "0"  # no swap for the job
    assert (group / "pids.max").read_text() == "100"


def test_pure_v2_writes_only_the_limits_asked(tmp_path: Path) -> None:
    group = _files(tmp_path, "cpu.max", "memory.max", "memory.swap.max", "pids.max")
    write_v2_limits(group, JobLimits(pids=5))
    assert [(group / n).read_text() for n in ("cpu.max", "memory.max", "pids.max")] == [
        "",
        "",
        "5",
    ]


def test_a_tiny_cpu_limit_is_raised_to_the_kernels_minimum_quota(tmp_path: Path) -> None:
    group = _files(tmp_path, "cpu.max")
    write_v2_limits(group, JobLimits(cpu=0.001))
    assert (group / "cpu.max").read_text() == "1000 100000"


def test_v1_limit_files_swap_is_capped_at_the_memory_limit(tmp_path: Path) -> None:
    dirs = {
        "cpu": _files(tmp_path / "cpu", "cpu.cfs_period_us", "cpu.cfs_quota_us"),
        "memory": _files(
            tmp_path / "memory", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"
        ),
        "pids": _files(tmp_path / "pids", "pids.max"),
    }
    write_v1_limits(dirs, JobLimits(cpu=1.5, memory=64 << 20, pids=7))
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "150000"
    assert (dirs["cpu"] / "cpu.cfs_period_us").read_text() == "100000"
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (dirs["memory"] / "memory.memsw.limit_in_bytes").read_text() == str(64 << 20)
    assert (dirs["pids"] / "pids.max").read_text() == "7"


def test_mountinfo_is_parsed_with_escapes_and_versions(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
        "41 31 0:38 / /sys/fs/cgroup/uni\\040fied rw,relatime - cgroup2 cgroup2 rw\n"
        "42 31 0:38 /sub /mnt/bound rw,relatime - cgroup2 cgroup2 rw\n"
    )
    mounts = cgroup_mounts(str(info))
    assert [(str(m.path), m.version) for m in mounts] == [
        ("/sys/fs/cgroup/cpu,cpuacct", 1),
        ("/sys/fs/cgroup/uni fied", 2),
    ]
    assert {"cpu", "cpuacct"} <= mounts[0].controllers


@pytest.fixture
def v2_group() -> Iterator[V2Job]:
    """A real group on this host's cgroup2 mount (named for issue 11), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    mount = next((m for m in cgroup_mounts() if m.version == 2), None)
    if mount is None:
        pytest.skip("no cgroup2 hierarchy is mounted")
    path = mount.path / own_cgroups()[""].lstrip("/") / f"i11-files-{os.getpid()}"
    path.mkdir()
    group = V2Job(path)
    yield group
    group.kill()
    group.remove()


def test_v2_tracking_and_cgroup_kill_for_real(v2_group: V2Job) -> None:
    assert not v2_group.populated()
    children = [subprocess.Popen(["sleep", "1000"]) for _ in range(3)]
    for child in children:
        (v2_group.path / "cgroup.procs").write_text(str(child.pid))
    assert v2_group.populated()
    assert sorted(v2_group.pids()) == sorted(c.pid for c in children)
    v2_group.kill()
    assert [c.wait(10) for c in children] == [-signal.SIGKILL] * 3
    assert not v2_group.populated()
    assert v2_group.usage().cpu_seconds >= 0
    v2_group.remove()
    assert not v2_group.path.exists()
    assert all(gone(c.pid) for c in children)


def test_v2_freeze_then_kill_for_real(v2_group: V2Job) -> None:
    """The way without cgroup.kill (kernels before 5.14), on a group that keeps forking."""
    procs = v2_group.path / "cgroup.procs"
    forker = subprocess.Popen(
        ["sh", "-c", f"echo $$ > {procs}; for i in $(seq 200); do sleep 1000 & done; wait"]
    )
    deadline = time.monotonic() + 30
    while len(v2_group.pids()) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(v2_group.pids()) >= 20  # mid-loop: it forks while we kill
    v2_group.freeze_and_kill()
    assert forker.wait(10) == -signal.SIGKILL
    while v2_group.populated() and time.monotonic() < deadline:
        time.sleep(0.01)  # SIGKILLed processes die when they next run
    assert not v2_group.populated()
    assert (v2_group.path / "cgroup.freeze").read_text() == "0\n"  # thawed again
