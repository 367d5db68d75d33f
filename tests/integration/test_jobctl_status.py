"""`jobctl status` against a real jobd: the contract's lines, --json, and who sees what."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jobctl_support import JOB_KEYS, Jobctl, Server


@pytest.fixture(scope="module")
def ctl(shared_jobd: Server, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Jobctl:
    return Jobctl(shared_jobd.target, pki, tmp_path_factory.mktemp("home"))


def _ended(ctl: Jobctl, *argv: str) -> int:
    job = ctl.start(*argv)
    assert ctl("output", str(job)).code == 0  # follows until the job has ended
    return job


def test_status_lines(ctl: Jobctl) -> None:
    zero = _ended(ctl, "true")
    three = _ended(ctl, "sh", "-c", "exit 3")
    termed = _ended(ctl, "sh", "-c", "kill -TERM $$")
    running = ctl.start("sleep", "10000")
    results = ctl.many([("status", str(job)) for job in (zero, three, termed, running)])
    assert [r.stdout for r in results] == [
        f"Job '{zero}': Exited: 0\n",
        f"Job '{three}': Exited: 3\n",
        f"Job '{termed}': Exited: 143 (SIGTERM)\n",
        f"Job '{running}': Running\n",
    ]
    assert all(r.code == 0 and r.err == b"" for r in results)
    ctl("stop", str(running))


def test_status_json(ctl: Jobctl) -> None:
    termed = _ended(ctl, "sh", "-c", "kill -TERM $$")
    running = ctl.start("sleep", "10000")
    ended_json, running_json = (
        json.loads(r.stdout)
        for r in ctl.many([("status", "--json", str(termed)), ("status", str(running), "--json")])
    )
    ctl("stop", str(running))
    assert set(ended_json) == set(running_json) == JOB_KEYS
    assert ended_json["id"] == termed
    assert (ended_json["state"], ended_json["exit_code"], ended_json["signal"]) == (
        "exited",
        143,
        "SIGTERM",
    )
    assert ended_json["ended_at"] is not None
    assert (running_json["state"], running_json["exit_code"], running_json["ended_at"]) == (
        "running",
        None,
        None,
    )
    assert running_json["args"] == ["10000"]


def test_who_sees_what(ctl: Jobctl) -> None:
    job = ctl.start("true")
    charlies = ctl.start("true", user="charlie")
    results = [
        ctl("status", str(job), user="bob"),  # All/Analyst sees everyone's jobs
        ctl("status", str(charlies), user="alice"),  # Self sees only her own
        ctl("status", str(job), user="mallory"),  # in no policy: nothing
        ctl("status", "123456789"),
    ]
    assert [r.code for r in results] == [0, 3, 4, 3], results
    assert results[0].stdout.startswith(f"Job '{job}': ")
    assert results[1].stderr == f"Job '{charlies}' not found.\n"
    assert results[2].stderr.startswith("Permission denied: ")
    assert results[3].stderr == "Job '123456789' not found.\n"


def test_plain_status_imports_no_more_than_it_needs(ctl: Jobctl) -> None:
    """The polling hot path loads no click, no cryptography, and no json without --json."""
    job = _ended(ctl, "true")
    code = (
        "import sys\n"
        "from jobservice.cli.jobctl import main\n"
        f"code = main(['status', '{job}'])\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "print(code, sorted(loaded & {'click', 'cryptography', 'json'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=ctl.env(),
        timeout=60,
    )
    assert done.stdout == f"Job '{job}': Exited: 0\n0 []\n", done.stderr


def test_plain_and_click_paths_answer_alike(ctl: Jobctl) -> None:
    """`status N` runs without click, `status -- N` through click: same bytes, same status."""
    ended, failed = _ended(ctl, "true"), _ended(ctl, "sh", "-c", "exit 3")
    running = ctl.start("sleep", "10000")
    charlies = ctl.start("true", user="charlie")
    cases: list[tuple[str, ...]] = [
        (str(ended),),
        (str(failed), "--json"),
        (str(running),),
        (str(charlies),),  # not alice's: the answer for a job that does not exist
        ("123456789", "--json"),
    ]
    plain = ctl.many([("status", *case) for case in cases])
    clicked = ctl.many([("status", *case[1:], "--", case[0]) for case in cases])
    down = [ctl("-s", "127.0.0.1:1", *line) for line in (("status", "0"), ("status", "--", "0"))]
    ctl("stop", str(running))
    for one, other in [*zip(plain, clicked, strict=True), tuple(down)]:
        assert (one.code, one.out, one.err) == (other.code, other.out, other.err), (one, other)
    assert [r.code for r in plain] == [0, 0, 0, 3, 3]
    assert down[0].code == 5
