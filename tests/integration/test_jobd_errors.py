"""The error table, and malformed or oversized requests sent over the wire to a real jobd."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from jobdhelp import Jobd, RawMessage, credentials

from jobservice.api import close_channel, open_channel
from jobservice.api.errors import INTERNAL_MESSAGE, PermissionDenied, to_grpc_error
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core import errors as core
from jobservice.security.errors import AuthenticationError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (core.InvalidRequest("command must not be empty"), Status.INVALID_ARGUMENT),
        (core.CommandNotFound("command not found: x"), Status.INVALID_ARGUMENT),
        (core.CommandNotExecutable("cannot execute x"), Status.INVALID_ARGUMENT),
        (core.DirectoryNotFound("directory not found: /x"), Status.INVALID_ARGUMENT),
        (core.JobNotFound(4), Status.NOT_FOUND),
        (core.JobNotRunning(4), Status.FAILED_PRECONDITION),
        (core.LimitExceeded("too many"), Status.RESOURCE_EXHAUSTED),
        (core.SpawnFailed("fork failed"), Status.UNAVAILABLE),
        (core.CoordinatorClosed(), Status.UNAVAILABLE),
        (PermissionDenied("user 'bob' may not call Start"), Status.PERMISSION_DENIED),
        (AuthenticationError("not for client authentication"), Status.UNAUTHENTICATED),
    ],
)
def test_known_errors_map_to_their_status_with_their_message(
    error: Exception, status: Status
) -> None:
    mapped = to_grpc_error(error)
    assert (mapped.status, mapped.message) == (status, str(error))


def test_unexpected_errors_are_internal_and_leak_nothing(caplog: pytest.LogCaptureFixture) -> None:
    secret = "/var/lib/secret-path: disk on fire"
    try:
        raise RuntimeError(secret)
    except RuntimeError as exc:
        with caplog.at_level(logging.ERROR):
            mapped = to_grpc_error(exc)
    assert (mapped.status, mapped.message) == (Status.INTERNAL, INTERNAL_MESSAGE)
    assert secret not in repr(mapped)
    assert secret in caplog.text  # the server's log has the traceback
    assert "Traceback" in caplog.text
    assert to_grpc_error(core.JobError("unclassified")).status is Status.INTERNAL


def test_grpc_errors_pass_through_unchanged() -> None:
    error = GRPCError(Status.DEADLINE_EXCEEDED, "late")
    assert to_grpc_error(error) is error


async def raw_call(channel: Channel, rpc: str, data: bytes) -> tuple[Status, str]:
    stream = channel.request(
        f"/jobservice.v1.JobService/{rpc}",
        Cardinality.UNARY_UNARY,
        RawMessage,
        pb.StatusResponse,
        timeout=10,
    )
    try:
        async with stream:
            await stream.send_message(RawMessage(data), end=True)
            await stream.recv_message()
    except GRPCError as exc:
        return exc.status, exc.message or ""
    return Status.OK, ""


def start_request_with(command: bytes) -> bytes:
    """A StartRequest whose `command` field (1, length-delimited) holds these raw bytes."""
    assert len(command) < 128
    return bytes([0x0A, len(command)]) + command


@pytest.mark.parametrize(
    ("rpc", "data", "status", "message"),
    [
        ("Start", start_request_with(b"ok"), Status.INVALID_ARGUMENT, "command not found"),
        ("Start", start_request_with(b"\xff\xfe"), Status.INVALID_ARGUMENT, "malformed"),
        ("Start", b"\x0a\x7f\x01", Status.INVALID_ARGUMENT, "malformed"),  # length past the end
        ("Status", b"\xff\xff\xff", Status.INVALID_ARGUMENT, "malformed"),
        ("Start", b"\x0a\x82\x80\x80\x01" + b"x" * (2 << 20), Status.RESOURCE_EXHAUSTED, "limit"),
    ],
)
async def test_malformed_requests_are_refused(
    shared_jobd: Jobd, pki: Path, rpc: str, data: bytes, status: Status, message: str
) -> None:
    creds = credentials(pki, "alice")
    channel = await open_channel(shared_jobd.target, ca=creds.ca, cert=creds.cert, key=creds.key)
    try:
        answer = await raw_call(channel, rpc, data)
    finally:
        await close_channel(channel)
    assert answer[0] is status
    assert message in answer[1]
    assert "Traceback" not in shared_jobd.log
