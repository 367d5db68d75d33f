"""`jobctl output` against a real jobd: bytes unmodified, streams apart, live follow, pipes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
from jobctl_support import JOBCTL, Jobctl, Server, finish


@pytest.fixture(scope="module")
def ctl(shared_jobd: Server, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Jobctl:
    return Jobctl(shared_jobd.target, pki, tmp_path_factory.mktemp("home"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_contract_example(ctl: Jobctl) -> None:
    job = ctl.start("echo", "hello world")
    result = ctl("output", str(job), "--all")
    assert (result.code, result.out, result.err) == (0, b"hello world\n", b"")


def test_binary_output_is_unmodified_on_both_streams(ctl: Jobctl, tmp_path: Path) -> None:
    # Random bytes with NULs, invalid UTF-8 and lone CRs: anything decoding would show.
    payload = os.urandom(300_000) + b"\x00\r\n\xff\xfe" * 1000
    (tmp_path / "blob").write_bytes(payload)
    job = ctl.start("sh", "-c", f"cat {tmp_path}/blob; cat {tmp_path}/blob >&2")
    results = ctl.many([("output", str(job)), ("output", str(job), "--stdout")])
    for result in results:
        assert result.code == 0
        assert _sha(result.out) == _sha(payload)
    assert _sha(results[0].err) == _sha(payload)
    assert results[1].err == b""


def test_streams_are_kept_apart(ctl: Jobctl) -> None:
    job = ctl.start("sh", "-c", "printf out1; printf err1 >&2; printf out2; printf err2 >&2")
    every, out, err = ctl.many(
        [
            ("output", str(job), "--all"),
            ("output", str(job), "--stdout"),
            ("output", str(job), "--stderr"),
        ]
    )
    assert (every.out, every.err) == (b"out1out2", b"err1err2")
    assert (out.out, out.err) == (b"out1out2", b"")
    assert (err.out, err.err) == (b"", b"err1err2")


def test_offset_resumes(ctl: Jobctl) -> None:
    job = ctl.start("printf", "hello world")
    results = ctl.many([("output", str(job), "--offset", n) for n in ("0", "6", "11", "99")])
    assert [r.out for r in results] == [b"hello world", b"world", b"", b""]
    assert all(r.code == 0 for r in results)


def test_follows_a_running_job_until_it_ends(ctl: Jobctl, tmp_path: Path) -> None:
    go = tmp_path / "go"
    job = ctl.start(
        "sh", "-c", f"echo first; while [ ! -e {go} ]; do sleep 0.02; done; echo second"
    )
    proc = ctl.popen("output", str(job))
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"first\n"  # live, while the job still runs
    assert proc.poll() is None
    go.touch()
    result = finish(proc, ("output", str(job)))
    assert (result.code, result.out) == (0, b"second\n")


@pytest.mark.parametrize("script", ["seq 1 300000", "while :; do echo y; sleep 0.01; done"])
def test_survives_head(ctl: Jobctl, tmp_path: Path, script: str) -> None:
    """`jobctl output N | head -1`: one line, then a quiet exit (141, as for SIGPIPE)."""
    job = ctl.start("sh", "-c", script)
    err = tmp_path / "err"
    pipeline = f'"{JOBCTL}" output {job} 2>"{err}" | head -1; exit "${{PIPESTATUS[0]}}"'
    done = subprocess.run(
        ["bash", "-c", pipeline], env=ctl.env(), capture_output=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, err.read_bytes()) in (
        (141, b"1\n", b""),
        (141, b"y\n", b""),
    )
    ctl("stop", str(job))


def test_errors(ctl: Jobctl) -> None:
    charlies = ctl.start("true", user="charlie")
    missing, hidden, stranger = ctl.many(
        [("output", "424242"), ("output", str(charlies)), ("output", "0", "--offset", "-1")]
    )
    assert (missing.code, missing.stderr) == (3, "Job '424242' not found.\n")
    assert (hidden.code, hidden.stderr) == (3, f"Job '{charlies}' not found.\n")
    assert stranger.code == 2
    assert missing.out == hidden.out == b""


def test_truncated_output_is_noted(jobd_launcher: object, pki: Path, tmp_path: Path) -> None:
    server = jobd_launcher.start("--max-output-bytes", "10")  # type: ignore[attr-defined]
    ctl = Jobctl(server.target, pki, tmp_path)
    job = ctl.start("sh", "-c", "echo 0123456789abcdef")
    result = ctl("output", str(job))
    assert (result.code, result.out) == (0, b"0123456789")
    assert "more output than the server keeps" in result.stderr


def test_a_lost_connection_says_where_to_resume(
    jobd_launcher: object, pki: Path, tmp_path: Path
) -> None:
    server = jobd_launcher.start()  # type: ignore[attr-defined]
    ctl = Jobctl(server.target, pki, tmp_path)
    # The job dies of SIGPIPE once jobd is gone, so nothing outlives the test.
    job = ctl.start("sh", "-c", "echo first; while echo tick; do sleep 0.05; done")
    proc = ctl.popen("output", str(job))
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"first\n"
    os.kill(server.pid, signal.SIGKILL)
    received = b"first\n" + proc.stdout.read()  # through the reader's buffer, to the end
    result = finish(proc, ("output", str(job)))
    assert result.code == 5, result
    assert result.stderr.startswith(f"Lost the connection to {server.target}")
    assert result.stderr.endswith(f"Resume with: jobctl output {job} --offset {len(received)}\n")
