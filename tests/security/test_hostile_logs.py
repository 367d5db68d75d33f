"""Log injection: no text a client controls starts a line of jobd's log or drives a terminal."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path

from hostilehelp import assert_log_lines_are_records
from jobdhelp import Connect, Jobd, read_output

from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.logsafe import SafeFormatter, escape_controls, quote_field

FORGED = (
    "2026-01-01 00:00:00,000 INFO jobservice.audit: audit user=charlie rpc=Stop job=0 result=OK"
)


async def test_a_command_name_cannot_forge_audit_lines(
    shared_jobd: Jobd, connect: Connect, tmp_path: Path
) -> None:
    # A file name may hold any byte but / and NUL: alice makes one that reads as a log record
    # (and clears the operator's terminal), then runs it. jobd logs the command of every job.
    command = tmp_path / f"x\n{FORGED}\x1b[2J\r"
    command.write_text("#!/bin/sh\necho ran\n")
    command.chmod(stat.S_IRWXU)
    alice = await connect(shared_jobd, "alice")
    job_id = (await alice.Start(pb.StartRequest(command=str(command)))).job_id
    assert (await read_output(alice, job_id)).data() == b"ran\n"
    await shared_jobd.logged(rf"job {job_id} started by alice")
    log = shared_jobd.log
    assert "\x1b" not in log
    assert not any(line.startswith(FORGED) for line in log.splitlines())
    assert quote_field(str(command)) in log  # shown, quoted and escaped, in its own record
    assert "audit user=charlie" not in log  # not even inside another record
    assert_log_lines_are_records(log)


def test_tracebacks_are_indented_and_escaped() -> None:
    formatter = SafeFormatter("%(levelname)s %(name)s: %(message)s")
    try:
        raise OSError(f"disk on fire\n{FORGED}\x1b[31m")
    except OSError:
        record = logging.LogRecord(
            "jobservice.api", logging.ERROR, __file__, 1, "failed: %s", ("a\nb",), exc_info=None
        )
        record.exc_info = sys.exc_info()
    lines = formatter.format(record).splitlines()
    assert lines[0] == "ERROR jobservice.api: failed: a\\x0ab"
    assert all(line.startswith("    ") for line in lines[1:])
    assert any(line == "    " + FORGED + "\\x1b[31m" for line in lines[1:])


def test_escape_controls_keeps_text_and_escapes_controls() -> None:
    assert escape_controls("plain tab\there ünïcode") == "plain tab\there ünïcode"
    assert escape_controls("\x00\x07\x7f\x85\u2028") == "\\x00\\x07\\x7f\\x85\\u2028"
    # Bidirectional controls: U+202E shows "txt.exe" as "exe.txt".
    assert escape_controls("a\u202etxt.exe\u2066\u200f") == "a\\u202etxt.exe\\u2066\\u200f"


def test_a_quoted_field_holds_no_space_and_reads_back_as_json() -> None:
    name = "x audit user=charlie rpc=Stop job=7 result=OK \u202e\n"
    quoted = quote_field(name)
    assert quoted == (
        '"x\\u0020audit\\u0020user=charlie\\u0020rpc=Stop\\u0020job=7\\u0020result=OK'
        '\\u0020\\u202e\\n"'
    )
    assert json.loads(quoted) == name
    assert quote_field("alice") == "alice"
    assert os.linesep not in escape_controls(f"a{os.linesep}b")
