"""`make demo` (scripts/demo.py): the design's session passes, nothing left behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def test_demo_runs_the_design_session_and_cleans_up(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for line in (
        "$ jobctl start --cmd echo --args 'hello world' --envs PATH=/usr/bin --dir /tmp\n0\n",
        "$ jobctl stop 0\nJob '0' is not running.\n[exit status 1]\n",
        "$ jobctl status 0\nJob '0': Exited: 0\n",
        "$ jobctl status 1\nJob '1': Running\n",
        "$ jobctl stop 1\nStopped Job '1'\n",
        "$ jobctl output 0 --all\nhello world\n",
        "$ jobctl status 1\nJob '1': Exited: 143 (SIGTERM)\n",
    ):
        assert line in done.stdout
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # ./demo-run removed, the server stopped
