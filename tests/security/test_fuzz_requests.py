"""Bad requests against a real jobd: every field of every RPC, by hand and by hypothesis.

The property: every call is answered, within seconds, with a status that RPC documents (never
INTERNAL or UNKNOWN), and the server keeps serving with a clean log. The fast tier runs a fixed
set of examples per RPC; the soak tier draws many more at random.

Safety: a fuzzed Start can only ever run `true`, `echo` or `false`. Commands with a `/` come
from a fixed list; bare names are looked up on a PATH (forced by a last env entry, which wins)
holding only those three; raw-bytes Start requests end with a command field that does not exist
(the last value of a field wins in protobuf).
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import os
import pwd
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path

import pytest
from google.protobuf.message import Message
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from hostilehelp import assert_log_lines_are_records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobdhelp import Connect, Jobd, RawMessage, credentials, read_output, status_of

from jobservice.api import JobServiceStub, close_channel, open_channel
from jobservice.api.errors import MAX_MESSAGE_CHARS
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core.spec import DEFAULT_PATH, MAX_STRING_BYTES

U64 = 2**64 - 1
ANSWER_WITHIN = 10.0
# What each RPC may answer alice (a Task Manager on her own jobs) for any request at all.
ALLOWED = {
    "Start": {Status.OK, Status.INVALID_ARGUMENT, Status.RESOURCE_EXHAUSTED},
    "Stop": {Status.OK, Status.NOT_FOUND, Status.FAILED_PRECONDITION, Status.INVALID_ARGUMENT},
    "Status": {Status.OK, Status.NOT_FOUND, Status.INVALID_ARGUMENT},
    "List": {Status.OK, Status.INVALID_ARGUMENT},
    "Output": {Status.OK, Status.NOT_FOUND, Status.INVALID_ARGUMENT},
}
SAFE_COMMANDS = ["/bin/true", "/bin/echo", "./true", "", "/", "/etc/passwd", "/nonexistent", "."]


# -- by hand -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ([""], "environment entry '' is not NAME=VALUE"),
        (["="], "environment entry '=' is not NAME=VALUE"),
        (["=VALUE"], "environment entry '=VALUE' is not NAME=VALUE"),
        (["A=1", "", "B=2"], "environment entry '' is not NAME=VALUE"),
    ],
)
async def test_env_entries_that_set_nothing_are_refused(
    shared_jobd: Jobd, connect: Connect, env: list[str], message: str
) -> None:
    alice = await connect(shared_jobd, "alice")
    answer = await status_of(alice.Start(pb.StartRequest(command="/usr/bin/env", env=env)))
    assert answer == (Status.INVALID_ARGUMENT, message)


@pytest.mark.parametrize(
    ("env", "printed"), [([], b""), (["A="], b"A=\n"), (["A=1", "A="], b"A=\n")]
)
async def test_an_empty_environment_or_empty_values_are_kept_exactly(
    shared_jobd: Jobd, connect: Connect, env: list[str], printed: bytes
) -> None:
    alice = await connect(shared_jobd, "alice")
    job_id = (await alice.Start(pb.StartRequest(command="/usr/bin/env", env=env))).job_id
    # What the request leaves unset, PATH and HOME, comes from the account, as with ssh.
    home = pwd.getpwuid(os.geteuid()).pw_dir
    defaults = f"PATH={DEFAULT_PATH}\nHOME={home}\n".encode()
    assert (await read_output(alice, job_id)).data() == printed + defaults


BIG = "x" * (MAX_STRING_BYTES + 1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"args": [BIG]}, f"argument 0 is {MAX_STRING_BYTES + 1} bytes (limit {MAX_STRING_BYTES}"),
        ({"env": ["A=" + BIG]}, "environment entry is"),
        ({"args": ["x" * 120_000] * 9}, "(limit 1048576)"),
        ({"args": ["a"] * 4097}, "too many arguments: 4097 (limit 4096)"),
        ({"env": ["A=1"] * 4097}, "too many environment entries: 4097 (limit 4096)"),
        ({"command": "x" * 4097}, "command is 4097 bytes (limit 4096)"),
        ({"dir": "/" + "d" * 5000}, "directory not found"),
    ],
    ids=["arg-over-exec-limit", "env-over-exec-limit", "total", "args", "env", "command", "dir"],
)
async def test_requests_over_the_documented_limits_are_invalid_argument(
    shared_jobd: Jobd, connect: Connect, fields: dict[str, object], message: str
) -> None:
    alice = await connect(shared_jobd, "alice")
    request = pb.StartRequest(command="/bin/true")
    for name, value in fields.items():
        field = getattr(request, name)
        field.extend(value) if isinstance(value, list) else setattr(request, name, value)
    status, text = await status_of(alice.Start(request))
    assert status is Status.INVALID_ARGUMENT
    assert message in text


async def test_an_error_quoting_a_huge_field_is_short_and_quick(
    shared_jobd: Jobd, connect: Connect
) -> None:
    """Found by the fuzzer: a 600 KB relative `dir`, quoted whole in the error, became a 1.8 MB
    grpc-message header whose (quadratic) HPACK encoding held jobd's event loop for minutes."""
    alice, bob = await connect(shared_jobd, "alice"), await connect(shared_jobd, "bob")
    began = asyncio.get_running_loop().time()
    call = asyncio.ensure_future(
        status_of(alice.Start(pb.StartRequest(command="x", dir="é" * 300_000)))
    )
    await bob.List(pb.ListRequest())  # answered meanwhile
    status, text = await asyncio.wait_for(call, 5)
    assert asyncio.get_running_loop().time() - began < 2
    assert status is Status.INVALID_ARGUMENT
    assert text.startswith("directory 'ééé")
    assert text.endswith("... (truncated)")
    assert len(text) == MAX_MESSAGE_CHARS


async def test_an_argument_at_the_exec_limit_runs(shared_jobd: Jobd, connect: Connect) -> None:
    alice = await connect(shared_jobd, "alice")
    script = 'printf %s "${#1}"'
    request = pb.StartRequest(command="/bin/sh", args=["-c", script, "sh", "y" * MAX_STRING_BYTES])
    job_id = (await alice.Start(request)).job_id
    assert (await read_output(alice, job_id)).data() == str(MAX_STRING_BYTES).encode()


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


JOB_IDS = {
    "2^63-1": varint(2**63 - 1),
    "2^63": varint(2**63),
    "uint64-max": varint(U64),
    "int64 -1": varint(-1 & U64),  # how an int64 -1 is written: ten bytes, read back as 2^64-1
}


@pytest.mark.parametrize("rpc", ["Status", "Stop", "Output"])
@pytest.mark.parametrize("name", list(JOB_IDS))
async def test_huge_and_negative_job_ids_are_not_found(
    shared_jobd: Jobd, pki: Path, rpc: str, name: str
) -> None:
    expected = (2**63 - 1) if name == "2^63-1" else 2**63 if name == "2^63" else U64
    async with channel_to(shared_jobd, pki) as channel:
        answer = await raw_call(channel, rpc, b"\x08" + JOB_IDS[name])
    assert answer == (Status.NOT_FOUND, f"job {expected} not found")


@pytest.mark.parametrize(
    ("rpc", "data"),
    [
        ("Status", b"\x08" + b"\xff" * 10 + b"\x01"),  # an 11-byte varint: over 64 bits
        ("Output", b"\x08\x00\x10" + varint(-1 & U64)),  # selection -1
        ("Output", b"\x08\x00\x10\x63"),  # selection 99
        ("Output", b"\x08\x00\x18" + b"\x80" * 9),  # offset varint cut short
    ],
    ids=["overlong-varint", "selection--1", "selection-99", "truncated-varint"],
)
async def test_malformed_fields_are_invalid_argument(
    shared_jobd: Jobd, pki: Path, rpc: str, data: bytes
) -> None:
    async with channel_to(shared_jobd, pki) as channel:
        status, _ = await raw_call(channel, rpc, data)
    assert status is Status.INVALID_ARGUMENT


async def test_an_offset_past_the_end_gives_only_the_final_status(
    shared_jobd: Jobd, connect: Connect
) -> None:
    alice = await connect(shared_jobd, "alice")
    job_id = (await alice.Start(pb.StartRequest(command="/bin/echo", args=["hi"]))).job_id
    output = await read_output(alice, job_id, offset=U64)
    assert output.chunks == []
    assert output.final is not None
    assert output.final.exit_code == 0


# -- by hypothesis -------------------------------------------------------------------------


async def raw_call(channel: Channel, rpc: str, data: bytes) -> tuple[Status, str]:
    """Send `data` as the request of `rpc`; the status the call ends with.

    An Output stream that is accepted (headers sent) but still open after a moment, following a
    running job, counts as answered OK and is cancelled.
    """
    cardinality = Cardinality.UNARY_STREAM if rpc == "Output" else Cardinality.UNARY_UNARY
    reply = getattr(pb, f"{rpc}Response")
    stream = channel.request(
        f"/jobservice.v1.JobService/{rpc}", cardinality, RawMessage, reply, timeout=ANSWER_WITHIN
    )
    try:
        async with stream:
            await stream.send_message(RawMessage(data), end=True)
            await stream.recv_initial_metadata()
            try:
                async with asyncio.timeout(1.0):
                    async for _ in stream:
                        pass
            except TimeoutError:
                await stream.cancel()  # following a running job: answered, and open
    except GRPCError as exc:
        return exc.status, exc.message or ""
    except TimeoutError:
        pytest.fail(f"{rpc} with {data[:64]!r} was not answered within {ANSWER_WITHIN} s")
    return Status.OK, ""


async def open_alice(server: Jobd, pki: Path) -> Channel:
    c = credentials(pki, "alice")
    return await open_channel(server.target, ca=c.ca, cert=c.cert, key=c.key)


@contextlib.asynccontextmanager
async def channel_to(server: Jobd, pki: Path) -> AsyncIterator[Channel]:
    """alice's verified channel to `server`, closed on the way out."""
    channel = await open_alice(server, pki)
    try:
        yield channel
    finally:
        await close_channel(channel)


@pytest.fixture(scope="module")
def fuzz_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The only directory on a fuzzed job's PATH: true, echo and false."""
    directory = tmp_path_factory.mktemp("fuzz-bin")
    for name in ("true", "echo", "false"):
        (directory / name).symlink_to(f"/bin/{name}")
    return directory


def texts(max_size: int) -> st.SearchStrategy[str]:
    # Any Unicode text, NUL and controls included, and now and then a long run of one character.
    long_runs = st.builds(
        operator.mul, st.sampled_from(["x", "é", "\0", "="]), st.integers(0, 300_000)
    )
    return st.one_of(st.text(max_size=max_size), long_runs)


def start_requests(fuzz_bin: Path) -> st.SearchStrategy[pb.StartRequest]:
    bare_names = st.text(max_size=20).filter(lambda name: "/" not in name)
    commands = st.one_of(st.sampled_from(SAFE_COMMANDS), bare_names, st.sampled_from(["true"]))
    dirs = st.one_of(
        st.sampled_from(["", "/", "/bin", "relative", "/nonexistent", "/etc/passwd"]), texts(20)
    )
    env_entries = st.one_of(
        texts(20), st.builds("{}={}".format, st.text(max_size=8), st.text(max_size=8))
    )
    return st.builds(
        lambda command, args, dir, env: pb.StartRequest(
            command=command, args=args, dir=dir, env=[*env, f"PATH={fuzz_bin}"]
        ),
        commands,
        st.lists(texts(30), max_size=6),
        dirs,
        st.lists(env_entries, max_size=6),
    )


def job_ids(known: list[int]) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(known), st.integers(0, U64))


def requests_for(rpc: str, fuzz_bin: Path, known: list[int]) -> st.SearchStrategy[Message]:
    if rpc == "Start":
        return start_requests(fuzz_bin)
    if rpc in ("Stop", "Status"):
        message = pb.StopRequest if rpc == "Stop" else pb.StatusRequest
        return st.builds(lambda job_id: message(job_id=job_id), job_ids(known))
    if rpc == "Output":
        return st.builds(
            lambda job_id, streams, offset: pb.OutputRequest(
                job_id=job_id, streams=streams, offset=offset
            ),
            job_ids(known),
            st.integers(-(2**31), 2**31 - 1),
            st.one_of(st.integers(0, 64), st.integers(0, U64)),
        )
    return st.just(pb.ListRequest())


def raw_requests(rpc: str) -> st.SearchStrategy[bytes]:
    data = st.binary(max_size=96)
    if rpc == "Start":  # whatever it decodes to, the command is one that does not exist
        return st.builds(lambda b: b + b"\x0a\x11/nonexistent/fuzz", data)
    return data


RPCS = list(ALLOWED)


def fuzz(
    server: Jobd,
    pki: Path,
    examples: int,
    strategy: st.SearchStrategy[bytes],
    check: Callable[[Channel, bytes], Coroutine[None, None, None]],
    *,
    fixed: bool,
) -> None:
    """Run `check` on `examples` drawn from `strategy` over one channel, then check the server."""
    with asyncio.Runner() as runner:
        channel = runner.run(open_alice(server, pki))

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=fixed,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(strategy)
        def one(data: bytes) -> None:
            runner.run(check(channel, data))

        try:
            one()
            # Still serving, and every call was answered by design, not by accident.
            assert runner.run(raw_call(channel, "List", b""))[0] is Status.OK
        finally:
            runner.run(close_channel(channel))
    assert "Traceback" not in server.log
    assert "internal error" not in server.log
    assert_log_lines_are_records(server.log)


def known_jobs(server: Jobd, pki: Path) -> list[int]:
    """A finished job and a running one (a long sleep) for the id strategies to hit."""

    async def start_two() -> list[int]:
        async with channel_to(server, pki) as channel:
            stub = JobServiceStub(channel)
            done = (await stub.Start(pb.StartRequest(command="/bin/true"))).job_id
            running = await stub.Start(pb.StartRequest(command="/bin/sleep", args=["20"]))
            return [done, running.job_id]

    return asyncio.run(start_two())


def structured_check(rpc: str) -> Callable[[Channel, bytes], Coroutine[None, None, None]]:
    async def check(channel: Channel, data: bytes) -> None:
        status, message = await raw_call(channel, rpc, data)
        assert status in ALLOWED[rpc], f"{rpc} answered {status.name}: {message!r}"

    return check


@pytest.fixture
def known(shared_jobd: Jobd, pki: Path) -> list[int]:
    return known_jobs(shared_jobd, pki)


def serialized(strategy: st.SearchStrategy[Message]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda message: message.SerializeToString())


@pytest.mark.parametrize("rpc", RPCS)
def test_any_request_gets_a_documented_answer(
    shared_jobd: Jobd, pki: Path, fuzz_bin: Path, known: list[int], rpc: str
) -> None:
    strategy = serialized(requests_for(rpc, fuzz_bin, known))
    fuzz(shared_jobd, pki, 100, strategy, structured_check(rpc), fixed=True)


@pytest.mark.parametrize("rpc", RPCS)
def test_any_bytes_get_a_documented_answer(shared_jobd: Jobd, pki: Path, rpc: str) -> None:
    fuzz(shared_jobd, pki, 100, raw_requests(rpc), structured_check(rpc), fixed=True)


@pytest.mark.soak
@pytest.mark.parametrize("rpc", RPCS)
def test_any_request_gets_a_documented_answer_soak(
    shared_jobd: Jobd, pki: Path, fuzz_bin: Path, known: list[int], rpc: str
) -> None:
    strategy = serialized(requests_for(rpc, fuzz_bin, known))
    fuzz(shared_jobd, pki, 1500, strategy, structured_check(rpc), fixed=False)
    fuzz(shared_jobd, pki, 1500, raw_requests(rpc), structured_check(rpc), fixed=False)
