"""`jobctl list` against a fresh jobd: the table, --json, and only the jobs one may see."""

from __future__ import annotations

import json
from pathlib import Path

from jobctl_support import JOB_KEYS, Jobctl, Server


def test_list_shows_what_each_user_may_see(jobd: Server, pki: Path, tmp_path: Path) -> None:
    ctl = Jobctl(jobd.target, pki, tmp_path)
    echo = ctl.start("echo", "hello world")
    ctl("output", str(echo))
    sleeper = ctl.start("sleep", "10000", user="charlie")
    alice, bob, alice_json, bob_json, mallory = [
        ctl("list"),
        ctl("list", user="bob"),
        ctl("list", "--json"),
        ctl("list", "--json", user="bob"),
        ctl("list", user="mallory"),
    ]
    ctl("stop", str(sleeper), user="charlie")

    header, *rows = alice.stdout.splitlines()
    assert header.split() == ["ID", "OWNER", "STATE", "EXIT", "STARTED", "COMMAND"]
    assert len(rows) == 1
    assert rows[0].split()[:4] == [str(echo), "alice", "exited", "0"]
    assert rows[0].endswith("echo 'hello world'")
    bob_rows = bob.stdout.splitlines()[1:]
    assert [row.split()[:3] for row in bob_rows] == [
        [str(echo), "alice", "exited"],
        [str(sleeper), "charlie", "running"],
    ]
    assert [job["id"] for job in json.loads(alice_json.stdout)] == [echo]
    everyone = json.loads(bob_json.stdout)
    assert [(job["id"], job["owner"]) for job in everyone] == [
        (echo, "alice"),
        (sleeper, "charlie"),
    ]
    assert all(set(job) == JOB_KEYS for job in everyone)
    assert mallory.code == 4


def test_empty_list(jobd: Server, pki: Path, tmp_path: Path) -> None:
    ctl = Jobctl(jobd.target, pki, tmp_path)
    table, as_json = ctl.many([("list",), ("list", "--json")])
    assert table.stdout.split() == ["ID", "OWNER", "STATE", "EXIT", "STARTED", "COMMAND"]
    assert json.loads(as_json.stdout) == []


def test_list_follows_every_page(jobd: Server, pki: Path, tmp_path: Path) -> None:
    ctl = Jobctl(jobd.target, pki, tmp_path)
    # Two running jobs with ~900 KiB of arguments each: over a page's 1 MiB, so two pages.
    big = ["a" * ((127 << 10) - 1)] * 7
    jobs = [ctl.start("sh", "-c", "sleep 30", "sh", *big) for _ in range(2)]
    listed = ctl("list", "--json")
    for job in jobs:
        ctl("stop", str(job))
    assert listed.code == 0, str(listed)
    assert [job["id"] for job in json.loads(listed.stdout)] == jobs
