"""`jobctl stop` against a real jobd: "Stopped Job 'N'", "Job 'N' is not running.", refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobctl_support import Jobctl, Server, finish


@pytest.fixture(scope="module")
def ctl(shared_jobd: Server, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Jobctl:
    return Jobctl(shared_jobd.target, pki, tmp_path_factory.mktemp("home"))


def test_stop_a_running_job(ctl: Jobctl) -> None:
    job = ctl.start("sleep", "10000")
    result = ctl("stop", str(job))
    assert (result.code, result.stdout, result.err) == (0, f"Stopped Job '{job}'\n", b"")
    assert ctl("status", str(job)).stdout == f"Job '{job}': Exited: 143 (SIGTERM)\n"


def test_stop_a_finished_job_is_an_error(ctl: Jobctl) -> None:
    job = ctl.start("true")
    assert ctl("output", str(job)).code == 0  # returns once the job has ended
    result = ctl("stop", str(job))
    assert (result.code, result.out) == (1, b"")
    assert result.stderr == f"Job '{job}' is not running.\n"


def test_a_job_that_ignores_sigterm_is_killed(ctl: Jobctl) -> None:
    job = ctl.start("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done")
    # `output` would follow forever; the first line says the trap is set.
    proc = ctl.popen("output", str(job))
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    stopped = ctl("stop", str(job))
    assert finish(proc, ("output", str(job))).code == 0  # it followed the job to its end
    assert stopped.stdout == (
        f"Stopped Job '{job}': killed (SIGKILL) after it ignored SIGTERM for the grace period\n"
    )
    assert ctl("status", str(job)).stdout == f"Job '{job}': Exited: 137 (SIGKILL)\n"


def test_who_may_stop_what(ctl: Jobctl) -> None:
    alices = ctl.start("sleep", "10000")
    charlies = ctl.start("sleep", "10000", user="charlie")
    results = [
        # alice may not see charlie's job: the answer is the one for a job that does not exist
        ctl("stop", str(charlies), user="alice"),
        ctl("stop", str(alices), user="bob"),  # an analyst sees every job but stops none
        ctl("stop", "999999"),
        ctl("stop", str(alices), user="mallory"),
        ctl("stop", str(alices), user="charlie"),  # All/Task Manager stops anyone's job
        ctl("stop", str(charlies), user="charlie"),
    ]
    assert [r.code for r in results] == [3, 4, 3, 4, 0, 0], results
    assert results[0].stderr == f"Job '{charlies}' not found.\n"
    assert "Permission denied: " in results[1].stderr
    assert results[2].stderr == "Job '999999' not found.\n"
    assert results[4].stdout == f"Stopped Job '{alices}'\n"
