"""Per-user job settings: the policy's run_as and limits, defaults filled, maxima enforced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobservice.api.jobsettings import JobSettings
from jobservice.core import ConfinementUnavailable, InvalidRequest, JobLimits
from jobservice.security.errors import PolicyError
from jobservice.security.jobpolicy import LimitValues
from jobservice.security.policy import Policy
from jobservice.units import format_duration, format_size, parse_duration, parse_size

MIB = 1 << 20
GRANT = 'grants = [{ entity = "self", role = "task-manager" }]\n'


def _policy(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return Policy.load(path)


def test_policy_reads_run_as_and_limits(tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        f'[users.alice]\n{GRANT}run_as = "nobody"\n'
        'limits = { memory = "64M", timeout = "30s" }\n'
        "max_limits = { cpu = 2, pids = 50 }\n"
        f"[users.bob]\n{GRANT}",
    )
    alice = policy.jobs_of("alice")
    assert alice.run_as == "nobody"
    assert alice.defaults == LimitValues(memory=64 * MIB, timeout=30.0)
    assert alice.maxima == LimitValues(cpu=2.0, pids=50)
    assert policy.jobs_of("bob").run_as is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('limits = { disk = "1G" }', "unknown key(s) 'disk'"),
        ('limits = { memory = "lots" }', "is not a size"),
        ("max_limits = { pids = 1.5 }", "must be a whole number"),
        ("max_limits = { cpu = -1 }", "must be a positive number"),
        ("run_as = 7", "must be an account name"),
    ],
)
def test_policy_refuses_bad_job_settings(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _policy(tmp_path, f"[users.alice]\n{GRANT}{entry}\n")


def test_defaults_fill_in_and_maxima_are_named(tmp_path: Path) -> None:
    policy = _policy(tmp_path, f"[users.alice]\n{GRANT}limits = {{ pids = 10 }}\n")
    settings = JobSettings.build(
        policy,
        defaults=JobLimits(timeout=60.0),
        maxima=JobLimits(memory=128 * MIB, pids=20),
        confined=True,
    )
    assert settings.limits_for("alice", JobLimits()) == JobLimits(
        memory=128 * MIB, pids=10, timeout=60.0
    )
    assert settings.limits_for("bob", JobLimits(memory=MIB * 64)).memory == 64 * MIB
    with pytest.raises(InvalidRequest, match=r"^memory limit 256M is over the maximum of 128M$"):
        settings.limits_for("alice", JobLimits(memory=256 * MIB))
    with pytest.raises(InvalidRequest, match="pids limit 21 processes is over the maximum of 20"):
        settings.limits_for("alice", JobLimits(pids=21))


def test_a_default_over_its_maximum_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="default memory limit"):
        JobSettings.build(
            Policy.default(),
            defaults=JobLimits(memory=2 * MIB),
            maxima=JobLimits(memory=MIB),
            confined=True,
        )


def test_unconfined_refuses_cgroup_limits_and_ignores_their_defaults() -> None:
    settings = JobSettings.build(
        Policy.default(), defaults=JobLimits(memory=64 * MIB, timeout=5.0), confined=False
    )
    assert settings.limits_for("alice", JobLimits()) == JobLimits(timeout=5.0)
    with pytest.raises(ConfinementUnavailable, match="unconfined"):
        settings.limits_for("alice", JobLimits(cpu=0.5))


def test_run_as_root_only_when_the_policy_names_it(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("jobd runs jobs as another account only as root")
    with pytest.raises(ValueError, match="--run-as root"):
        JobSettings.build(Policy.default(), run_as="root")
    policy = _policy(tmp_path, f'[users.alice]\n{GRANT}run_as = "root"\n[users.bob]\n{GRANT}')
    settings = JobSettings.build(policy, run_as="nobody")
    alice, bob = settings.account_for("alice"), settings.account_for("bob")
    assert alice is not None
    assert alice.uid == 0
    assert bob is not None
    assert bob.name == "nobody"
    with pytest.raises(ValueError, match="no Unix account 'no-such-account-i11'"):
        JobSettings.build(Policy.default(), run_as="no-such-account-i11")


@pytest.mark.parametrize(
    ("text", "size"), [("256M", 256 * MIB), ("1.5G", 3 << 29), ("4096", 4096), ("1KiB", 1024)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("2m", 120), ("1.5h", 5400), ("7", 7)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_formats_read_back() -> None:
    assert [format_size(n) for n in (256 * MIB, 3 << 29, 1000)] == ["256M", "1536M", "1000"]
    assert [format_duration(s) for s in (7200, 90, 2.5)] == ["2h", "90s", "2.5s"]
