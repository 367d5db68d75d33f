"""jobctl's pure parts: status lines, JSON shape, list table, error table, job specs, config."""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Sequence
from pathlib import Path

import click
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobservice.api import ConnectError, ConnectFailure, status_to_info
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.cli.jobctl import status
from jobservice.cli.jobctl.app import VERBS, cli
from jobservice.cli.jobctl.config import Globals, config_path, parse_server, resolve
from jobservice.cli.jobctl.exitcodes import CliError, ExitCode, from_exception
from jobservice.cli.jobctl.plain_status import parse_plain
from jobservice.cli.jobctl.render import job_json, list_table, status_line
from jobservice.cli.jobctl.start import StartArgs


def _status(**fields: object) -> pb.JobStatus:
    base: dict[str, object] = {
        "job_id": 42,
        "owner": "alice",
        "command": "echo",
        "args": ["hello world"],
        "dir": "/tmp",
        "state": pb.JOB_STATE_EXITED,
        "started_at": Timestamp(seconds=1_700_000_000, nanos=500_000_000),
    }
    base.update(fields)
    return pb.JobStatus(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"exit_code": 0}, "Job '42': Exited: 0"),
        ({"exit_code": 3}, "Job '42': Exited: 3"),
        ({"signal": 15}, "Job '42': Exited: 143 (SIGTERM)"),
        ({"signal": 9}, "Job '42': Exited: 137 (SIGKILL)"),
        ({"state": pb.JOB_STATE_RUNNING}, "Job '42': Running"),
        ({"state": pb.JOB_STATE_LOST, "lost_reason": "jobd crashed"}, "Job '42': Lost"),
        ({"signal": 9, "oom_killed": True}, "Job '42': Exited: 137 (SIGKILL, out of memory)"),
        ({"signal": 15, "timed_out": True}, "Job '42': Exited: 143 (SIGTERM, timed out)"),
        ({"exit_code": 1, "oom_killed": True}, "Job '42': Exited: 1 (out of memory)"),
    ],
)
def test_status_line_matches_the_contract(fields: dict[str, object], line: str) -> None:
    assert status_line(status_to_info(_status(**fields))) == line


def test_json_shape_is_the_documented_one() -> None:
    ended = Timestamp(seconds=1_700_000_001)
    job = status_to_info(
        _status(
            signal=15,
            ended_at=ended,
            output_bytes=12,
            limits=pb.ResourceLimits(memory_bytes=64 << 20, timeout_seconds=2.0),
            usage=pb.ResourceUsage(cpu_seconds=0.25, peak_memory_bytes=1 << 20),
            timed_out=True,
            run_as="nobody",
        )
    )
    assert job_json(job) == {
        "id": 42,
        "owner": "alice",
        "command": "echo",
        "args": ["hello world"],
        "dir": "/tmp",
        "state": "exited",
        "exit_code": 143,
        "signal": "SIGTERM",
        "started_at": "2023-11-14T22:13:20.500+00:00",
        "ended_at": "2023-11-14T22:13:21.000+00:00",
        "output_bytes": 12,
        "output_truncated": False,
        "lost_reason": None,
        "limits": {"cpu": None, "memory": 64 << 20, "pids": None, "timeout": 2.0},
        "usage": {"cpu_seconds": 0.25, "peak_memory": 1 << 20},
        "oom_killed": False,
        "timed_out": True,
        "run_as": "nobody",
        "confined": True,
        "node": None,
    }
    lost = job_json(status_to_info(_status(state=pb.JOB_STATE_LOST, lost_reason="crash")))
    assert (lost["state"], lost["exit_code"], lost["lost_reason"]) == ("lost", None, "crash")
    running = job_json(status_to_info(_status(state=pb.JOB_STATE_RUNNING)))
    assert (running["state"], running["exit_code"], running["ended_at"]) == ("running", None, None)
    on_node = job_json(status_to_info(_status(node="h2")))
    assert on_node["node"] == "h2"


def test_list_table_aligns_columns_and_quotes_commands() -> None:
    jobs = [
        status_to_info(_status(exit_code=0)),
        status_to_info(_status(job_id=7, owner="charlie", state=pb.JOB_STATE_RUNNING)),
    ]
    lines = list_table(jobs).splitlines()
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_700_000_000))
    assert lines[0].split() == ["ID", "OWNER", "STATE", "EXIT", "STARTED", "COMMAND"]
    assert lines[1].split("  ")[0] == "42"
    assert lines[1].endswith("echo 'hello world'")
    assert started in lines[1]
    assert lines[2].split()[:4] == ["7", "charlie", "running", "-"]
    assert len({line.index("COMMAND" if i == 0 else "echo") for i, line in enumerate(lines)}) == 1


def test_list_table_adds_a_node_column_for_a_clusters_jobs() -> None:
    jobs = [
        status_to_info(_status(exit_code=0, node="h1")),
        status_to_info(_status(job_id=7, state=pb.JOB_STATE_LOST, node="h2")),
    ]
    lines = list_table(jobs).splitlines()
    assert lines[0].split()[:4] == ["ID", "OWNER", "NODE", "STATE"]
    assert lines[1].split()[:4] == ["42", "alice", "h1", "exited"]
    assert lines[2].split()[:5] == ["7", "alice", "h2", "lost", "-"]


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (GRPCError(Status.NOT_FOUND, "job 9 not found"), ExitCode.NOT_FOUND, "Job '9' not found."),
        (
            GRPCError(Status.FAILED_PRECONDITION, "x"),
            ExitCode.NOT_RUNNING,
            "Job '9' is not running.",
        ),
        (GRPCError(Status.PERMISSION_DENIED, "no"), ExitCode.PERMISSION_DENIED, "Permission"),
        (GRPCError(Status.INVALID_ARGUMENT, "nope"), ExitCode.INVALID_ARGUMENT, "Invalid"),
        (GRPCError(Status.RESOURCE_EXHAUSTED, "full"), ExitCode.RESOURCE_EXHAUSTED, "limit"),
        (GRPCError(Status.UNAVAILABLE, "down"), ExitCode.CONNECTION, "unavailable"),
        (GRPCError(Status.INTERNAL, "boom"), ExitCode.INTERNAL, "The server failed: boom."),
        (GRPCError(Status.UNIMPLEMENTED), ExitCode.INTERNAL, "The server failed"),
        (ConnectError("h:1", ConnectFailure.REFUSED), ExitCode.CONNECTION, "Is jobd running?"),
        (ConnectError("h:1", ConnectFailure.TLS_VERIFY, "x"), ExitCode.CONNECTION, "--ca"),
        (ConnectError("h:1", ConnectFailure.REJECTED), ExitCode.CONNECTION, "rejected"),
        (ConnectError("h:1", ConnectFailure.CREDENTIALS, "bad key"), ExitCode.USAGE, "bad key"),
        (StreamTerminatedError("reset"), ExitCode.CONNECTION, "Lost the connection"),
        (ConnectionResetError("reset"), ExitCode.CONNECTION, "Lost the connection"),
        (RuntimeError("bug"), ExitCode.INTERNAL, "jobctl failed (bug)."),
    ],
)
def test_one_table_maps_every_failure(exc: Exception, code: ExitCode, message: str) -> None:
    error = from_exception(exc, server="h:1", job=9)
    assert error.code is code
    assert message in error.message


def test_exit_codes_are_distinct() -> None:
    assert len({int(code) for code in ExitCode}) == len(ExitCode)


def test_start_args_both_forms() -> None:
    long = StartArgs.build("echo", ["hello world"], ["PATH=/usr/bin"], "/tmp", ())
    short = StartArgs.build(None, (), ["PATH=/usr/bin"], "/tmp", ("echo", "hello world"))
    assert long == short == StartArgs("echo", ("hello world",), "/tmp", ("PATH=/usr/bin",))
    assert StartArgs.build(None, (), (), "rel", ("ls",)).dir == str(Path.cwd() / "rel")
    assert StartArgs.build(None, (), (), "", ("ls",)).dir == ""


@pytest.mark.parametrize(
    ("cmd", "args", "envs", "argv"),
    [
        ("echo", (), (), ("echo",)),  # both forms at once
        (None, ("x",), (), ("echo",)),  # --args with the short form
        (None, (), (), ()),  # no command
        ("echo", (), ("NOEQUALS",), ()),
        ("echo", (), ("=x",), ()),
    ],
)
def test_start_args_rejects_bad_usage(
    cmd: str | None, args: tuple[str, ...], envs: tuple[str, ...], argv: tuple[str, ...]
) -> None:
    with pytest.raises(click.UsageError):
        StartArgs.build(cmd, args, envs, "", argv)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:1234", ("localhost", 1234)),
        ("127.0.0.1", ("127.0.0.1", 50051)),
        ("[::1]:9", ("::1", 9)),
    ],
)
def test_parse_server(text: str, expected: tuple[str, int]) -> None:
    assert parse_server(text) == expected


@pytest.mark.parametrize("text", ["", ":1", "h:0", "h:70000", "h:x", "[::1]:x", "::1"])
def test_parse_server_rejects(text: str) -> None:
    with pytest.raises(CliError) as info:
        parse_server(text)
    assert info.value.code is ExitCode.USAGE


def _creds(root: Path, *names: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_text(name)
        (root / name).chmod(0o600)  # keys must be the user's alone
    return root


def test_config_path_honours_xdg(tmp_path: Path) -> None:
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "jobctl/config.toml"
    assert config_path({"HOME": str(tmp_path)}) == tmp_path / ".config/jobctl/config.toml"
    # The XDG spec: a relative value is invalid and ignored.
    relative = {"XDG_CONFIG_HOME": "rel", "HOME": str(tmp_path)}
    assert config_path(relative) == tmp_path / ".config/jobctl/config.toml"


def test_precedence_flags_then_env_then_profile(tmp_path: Path) -> None:
    for who in ("flag", "env", "prof"):
        _creds(tmp_path / who, "ca.pem", "u.pem", "u.key")
    conf = tmp_path / "xdg/jobctl/config.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        '[profiles.default]\nserver = "prof:1"\ncert = "../../prof/u.pem"\nuser = "p"\n'
        '[profiles.other]\nserver = "other:2"\n'
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "JOBCTL_SERVER": "env:3"}
    flags = {"cert": str(tmp_path / "flag/u.pem")}
    settings = resolve(flags, env, None)
    assert (settings.host, settings.port) == ("env", 3)
    assert settings.cert == tmp_path / "flag/u.pem"
    # key and CA: found beside the certificate, as `jobd pki init` lays them out
    assert (settings.key, settings.ca) == (tmp_path / "flag/u.key", tmp_path / "flag/ca.pem")
    # the profile's user goes with the profile's certificate, which the flag replaced
    assert settings.user is None
    only_profile = resolve({}, {"XDG_CONFIG_HOME": env["XDG_CONFIG_HOME"]}, None)
    assert only_profile.server == "prof:1"
    assert only_profile.cert.resolve() == (tmp_path / "prof/u.pem").resolve()
    other = resolve(flags, {**env, "JOBCTL_PROFILE": "other"}, None)
    assert (other.server, other.user) == ("env:3", None)
    flagged = resolve({**flags, "server": "f:4"}, env, "other")
    assert flagged.server == "f:4"


def _config(root: Path, text: str) -> str:
    """Write `text` as the config file under `root`/xdg; the XDG_CONFIG_HOME to find it."""
    conf = root / "xdg/jobctl/config.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text(text)
    return str(root / "xdg")


def test_a_profile_flag_beats_the_environment(tmp_path: Path) -> None:
    """`JOBCTL_CERT` exported (as the README says), `--profile charlie` is still charlie."""
    _creds(tmp_path / "alice", "ca.pem", "alice.pem", "alice.key")
    _creds(tmp_path / "charlie", "ca.pem", "charlie.pem", "charlie.key")
    xdg = _config(
        tmp_path,
        f'[profiles.charlie]\nserver = "c:1"\ncert = "{tmp_path}/charlie/charlie.pem"\n'
        f'[profiles.default]\nserver = "d:2"\n',
    )
    env = {
        "XDG_CONFIG_HOME": xdg,
        "JOBCTL_CERT": str(tmp_path / "alice/alice.pem"),
        "JOBCTL_SERVER": "e:3",
    }
    charlie = resolve({}, env, "charlie")
    assert (charlie.cert, charlie.key) == (
        tmp_path / "charlie/charlie.pem",
        tmp_path / "charlie/charlie.key",
    )
    assert charlie.server == "c:1"
    assert resolve({"server": "f:4"}, env, "charlie").server == "f:4"  # a flag beats it still
    # A profile from the environment (or the default one) comes after the environment.
    for by_env in (resolve({}, {**env, "JOBCTL_PROFILE": "charlie"}, None), resolve({}, env, None)):
        assert (by_env.cert, by_env.server) == (tmp_path / "alice/alice.pem", "e:3")


def test_a_key_others_may_read_is_refused(tmp_path: Path) -> None:
    creds = _creds(tmp_path / "c", "ca.pem", "u.pem", "u.key")
    (creds / "u.key").chmod(0o644)
    with pytest.raises(CliError, match=r"accessible by others \(mode 0644\).*chmod 600") as info:
        resolve({"cert": str(creds / "u.pem")}, {"XDG_CONFIG_HOME": str(tmp_path)}, None)
    assert info.value.code is ExitCode.USAGE


def test_key_goes_with_the_certificate(tmp_path: Path) -> None:
    _creds(tmp_path / "a", "ca.pem", "alice.pem", "alice.key")
    _creds(tmp_path / "b", "bob.pem", "bob.key", "lone.pem")
    xdg = _config(
        tmp_path,
        f'[profiles.default]\ncert = "{tmp_path}/a/alice.pem"\nkey = "{tmp_path}/a/alice.key"\n'
        f'ca = "{tmp_path}/a/ca.pem"\nuser = "alice"\n',
    )
    env = {"XDG_CONFIG_HOME": xdg}
    bob = resolve({}, {**env, "JOBCTL_CERT": str(tmp_path / "b/bob.pem")}, None)
    assert (bob.key, bob.user) == (tmp_path / "b/bob.key", None)
    assert bob.ca == tmp_path / "a/ca.pem"  # the CA is not tied to the certificate
    lone = resolve({"cert": str(tmp_path / "b/lone.pem")}, env, None)
    assert lone.key == tmp_path / "a/alice.key"  # nothing beside it: the profile's key
    given = resolve({"cert": str(tmp_path / "b/bob.pem")}, {**env, "JOBCTL_KEY": "x"}, None)
    assert given.key == tmp_path / "b/bob.key"  # a key from a lower level than the cert: no


def test_config_errors_are_usage_errors(tmp_path: Path) -> None:
    creds = _creds(tmp_path / "c", "ca.pem", "u.pem", "u.key")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    flags = {"cert": str(creds / "u.pem")}
    cases: list[tuple[str | None, str]] = [
        (None, "Profile 'nope' requested but there is no config file"),
        ('[profiles.default]\nserver = "x:1"\n', "No profile 'nope'"),
        ("[profiles.nope]\nsrv = 1\n", "Unknown setting 'srv'"),
        ("[profiles.nope]\nserver = 1\n", "must be a string"),
        ("[profiles.nope\n", "is not valid TOML"),
        (
            '[nope]\nserver = "x:1"\n',
            "Unknown table or key 'nope' in .*: .* as \\[profiles.nope\\]",
        ),
    ]
    conf = tmp_path / "xdg/jobctl/config.toml"
    conf.parent.mkdir(parents=True)
    for text, message in cases:
        if text is None:
            conf.unlink(missing_ok=True)
        else:
            conf.write_text(text)
        with pytest.raises(CliError) as info:
            resolve(flags, env, "nope")
        assert info.value.code is ExitCode.USAGE
        assert re.search(message, info.value.message), info.value.message


def test_missing_credentials_say_how_to_give_them(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    with pytest.raises(CliError, match="No client certificate given: pass -c/--cert, set JOBCTL"):
        resolve({}, env, None)
    with pytest.raises(CliError, match=r"Cannot read client certificate file .*/missing\.pem"):
        resolve({"cert": str(tmp_path / "missing.pem")}, env, None)


@pytest.mark.parametrize("width", [30, 50, 80, 200])
def test_help_lists_each_verb_as_its_own_docstring_does(width: int) -> None:
    """`jobctl --help` lists verbs from summaries, without importing them; they must not drift."""
    loaded = [importlib.import_module(f"jobservice.cli.jobctl.{name}").command for name in VERBS]
    eager = click.Group("jobctl", commands=loaded)
    listings = []
    for group in (cli, eager):
        formatter = click.HelpFormatter(width=width)
        group.format_commands(click.Context(group), formatter)
        listings.append(formatter.getvalue())
    assert listings[0] == listings[1]
    assert all(name in listings[0] for name in ("list", "output", "run", "start", "status", "stop"))


# The plain `status` line (plain_status.py) must read every line it accepts exactly as click does.
_CERT, _DIR = __file__, str(Path(__file__).parent)  # a readable file, a directory
_MISSING = str(Path(__file__).with_name("missing.pem"))
_OPTIONS = ["-s", "--server", "-u", "--user", "-c", "--cert", "-k", "--key", "--ca", "--profile"]
_VALUES = ["127.0.0.1:1", "alice", _CERT, _DIR, _MISSING, "", "-x", "status", "--json", "a=b"]
_ODD = ["-h", "--help", "-V", "--version", "--", "-", "--bogus", "-s=h:1", "-sh:1", "-c" + _CERT]
_TAIL = ["0", "7", "007", "x", " 5", "\u00b2", "\u0663", "-1", "--json", "--json=1", "--", "-h"]


def _click_reading(args: Sequence[str]) -> tuple[Globals, int, bool] | None:
    """What `jobctl status` receives when click parses `args`; None if it is not run cleanly."""
    seen: list[tuple[Globals, int, bool]] = []

    def record(given: Globals, job_id: int, *, as_json: bool) -> int:
        seen.append((given, job_id, as_json))
        return 0

    with pytest.MonkeyPatch.context() as patch:  # the command's action, not its parsing
        patch.setattr(status, "settings_of", lambda ctx: ctx.find_object(Globals))
        patch.setattr(status, "show_status", record)
        try:
            code = cli.main(args=list(args), prog_name="jobctl", standalone_mode=False)
        except Exception:
            return None
    return seen[0] if code == 0 and len(seen) == 1 else None


_GOOD_VALUES = ["127.0.0.1:1", "alice", _CERT, _MISSING, "a=b", "status"]
_option_words = st.one_of(
    st.tuples(st.sampled_from(_OPTIONS), st.sampled_from(_VALUES)).map(list),
    st.builds(lambda o, v: [f"{o}={v}"], st.sampled_from(_OPTIONS), st.sampled_from(_VALUES)),
    st.sampled_from(_ODD).map(lambda word: [word]),
)
_good_option_words = st.one_of(
    st.tuples(st.sampled_from(_OPTIONS), st.sampled_from(_GOOD_VALUES)).map(list),
    st.builds(
        lambda o, v: [f"{o}={v}"],
        st.sampled_from([o for o in _OPTIONS if o.startswith("--")]),
        st.sampled_from(_GOOD_VALUES),
    ),
)


def _line(options: list[list[str]], verb: list[str], tail: list[str]) -> list[str]:
    return [word for option in options for word in option] + verb + tail


_lines = st.one_of(
    # Mostly plain lines, the ones the quick path must get right...
    st.builds(
        _line,
        st.lists(_good_option_words, max_size=5),
        st.just(["status"]),
        st.lists(st.sampled_from(["7", "007", "--json"]), min_size=1, max_size=3),
    ),
    # ...and lines near them, which it must either read as click does or leave to click.
    st.builds(
        _line,
        st.lists(_option_words, max_size=4),
        st.sampled_from([["status"], ["status"], ["stop"], ["list"], []]),
        st.lists(st.sampled_from(_TAIL), max_size=4),
    ),
    st.lists(st.sampled_from([*_OPTIONS, *_VALUES, *_ODD, *_TAIL, "status"]), max_size=8),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=_lines)
def test_a_plain_status_line_is_read_as_click_reads_it(args: list[str]) -> None:
    plain = parse_plain(args, {})
    if plain is not None:
        assert _click_reading(args) == (plain.given, plain.job_id, plain.as_json)


@pytest.mark.parametrize(
    "args",
    [
        ["status", "5"],
        ["-s", "h:1", "status", "--json", "5"],
        ["--server=h:1", "-c", _CERT, "-u", "alice", "status", "007", "--json", "--json"],
        [
            "-c",
            _MISSING,
            "--ca",
            _CERT,
            "--profile",
            "ops",
            "-s",
            "a:1",
            "-s",
            "b:2",
            "status",
            "0",
        ],
    ],
)
def test_plain_status_lines(args: list[str]) -> None:
    plain = parse_plain(args, {})
    assert plain is not None
    assert _click_reading(args) == (plain.given, plain.job_id, plain.as_json)


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--", "5"],
        ["status", "5", "-h"],
        ["status", "5", "6"],
        ["status", "\u00b2"],  # str.isdigit, but not a number click's JOB_ID takes
        ["status"],
        ["list"],
        ["-c", _DIR, "status", "5"],  # click refuses a directory
        ["-s", "status"],
        ["-sh:1", "status", "5"],
        ["-s", "-x", "status", "5"],
        ["--server=", "status", "5"],
        ["--version", "status", "5"],
    ],
)
def test_other_lines_are_left_to_click(args: list[str]) -> None:
    assert parse_plain(args, {}) is None


def test_shell_completion_is_left_to_click() -> None:
    assert parse_plain(["status", "5"], {"_JOBCTL_COMPLETE": "bash_complete"}) is None
