"""The api's errors, and the one table from library, security and api errors to gRPC codes.

    ApiError                   the root of every error the api package raises
    ├── ConnectError           a client could not open a connection (`reason`: which step)
    ├── PermissionDenied       the caller's role does not allow this RPC on this job
    ├── ServiceUnavailable     the server is shutting down or at a connection-level limit
    ├── RequestTooLarge        a request message is over the server's size limit
    └── RequestTimeout         a request message did not arrive within the server's deadline

An OSError saying the host is short of file descriptors, memory or disk becomes UNAVAILABLE
(the call may succeed later), logged like SpawnFailed. Everything else not in the table becomes
INTERNAL with a generic message; the traceback goes to the server's log only, so internals never
reach a client. Messages are cut to MAX_MESSAGE_CHARS.
"""

from __future__ import annotations

import enum
import errno
import logging
from typing import TypeGuard

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobservice.core.errors import (
    ConfinementUnavailable,
    CoordinatorClosed,
    InvalidRequest,
    JobNotFound,
    JobNotRunning,
    JobStillRunning,
    LimitExceeded,
    SpawnFailed,
    StdinClosed,
)
from jobservice.security.errors import AuthenticationError

__all__ = [
    "INTERNAL_MESSAGE",
    "MAX_MESSAGE_CHARS",
    "STATUS_TABLE",
    "ApiError",
    "ConnectError",
    "ConnectFailure",
    "PermissionDenied",
    "RequestTimeout",
    "RequestTooLarge",
    "ServiceUnavailable",
    "StdinBusy",
    "to_grpc_error",
]

log = logging.getLogger("jobservice.api")

INTERNAL_MESSAGE = "internal error"
# A status message travels as an HTTP/2 header, and hpack's Huffman encoder is quadratic in the
# length of a value: a 600 KB message (an error quoting a huge request field) held jobd's event
# loop for minutes. Messages quote what the caller sent; the start of it says enough.
MAX_MESSAGE_CHARS = 1024


class ApiError(Exception):
    """The root of the api package's errors."""


class ConnectFailure(enum.Enum):
    """Why a connection could not be opened; the value is the phrase shown to people."""

    INVALID_TARGET = "invalid server address"
    CREDENTIALS = "unusable credentials"
    REFUSED = "connection refused"
    UNREACHABLE = "server unreachable"
    TLS_VERIFY = "server certificate verification failed"
    NAME_MISMATCH = "the server's certificate is not for the name dialled"
    TLS_HANDSHAKE = "TLS handshake failed"
    REJECTED = "server closed the connection (client certificate or TLS policy rejected)"
    POLICY = "TLS policy check failed"
    TIMEOUT = "timed out"


class ConnectError(ApiError):
    """A connection to jobd could not be opened; `reason` says which step failed."""

    def __init__(self, target: str, reason: ConnectFailure, detail: str = "") -> None:
        message = f"cannot connect to {target}: {reason.value}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.target = target
        self.reason = reason
        self.detail = detail


class PermissionDenied(ApiError):
    """The caller is known, may see the job, but its role does not allow this RPC."""


class StdinBusy(ApiError):
    """Another WriteStdin call is feeding this job's stdin; one writer at a time."""


class ServiceUnavailable(ApiError):
    """The server cannot take this call now (shutting down); the client may retry elsewhere."""


class RequestTooLarge(ApiError):
    """A request message is longer than the server accepts; it is refused before being read."""


class RequestTimeout(ApiError):
    """A call's request message did not arrive within the server's request deadline."""


# Most specific first: the first row whose class matches wins. Each of these exceptions' str()
# is written to be shown to a caller.
STATUS_TABLE: tuple[tuple[type[Exception], Status], ...] = (
    (InvalidRequest, Status.INVALID_ARGUMENT),
    (JobNotFound, Status.NOT_FOUND),
    (JobNotRunning, Status.FAILED_PRECONDITION),
    (JobStillRunning, Status.FAILED_PRECONDITION),
    (ConfinementUnavailable, Status.FAILED_PRECONDITION),
    (StdinClosed, Status.FAILED_PRECONDITION),
    (LimitExceeded, Status.RESOURCE_EXHAUSTED),
    (RequestTooLarge, Status.RESOURCE_EXHAUSTED),
    (RequestTimeout, Status.RESOURCE_EXHAUSTED),
    (SpawnFailed, Status.UNAVAILABLE),
    (CoordinatorClosed, Status.UNAVAILABLE),
    (ServiceUnavailable, Status.UNAVAILABLE),
    (StdinBusy, Status.FAILED_PRECONDITION),
    (PermissionDenied, Status.PERMISSION_DENIED),
    (AuthenticationError, Status.UNAUTHENTICATED),
)


# The host, not the request, is short of something: the call may succeed later.
_HOST_SHORTAGE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSPC, errno.EAGAIN})


def to_grpc_error(exc: Exception) -> GRPCError:
    """The GRPCError a client sees for `exc`; unexpected errors are logged with a traceback."""
    if isinstance(exc, GRPCError):
        return exc
    if isinstance(exc, SpawnFailed) or _host_shortage(exc):
        # The caller did nothing wrong and the operator needs to know why calls fail.
        log.warning("answered UNAVAILABLE: %s", exc)
    if _host_shortage(exc):
        return GRPCError(Status.UNAVAILABLE, f"the server is short of resources: {exc.strerror}")
    for cls, status in STATUS_TABLE:
        if isinstance(exc, cls):
            return GRPCError(status, _bounded(str(exc)))
    log.error("unexpected error, answered as INTERNAL", exc_info=exc)
    return GRPCError(Status.INTERNAL, INTERNAL_MESSAGE)


def _host_shortage(exc: Exception) -> TypeGuard[OSError]:
    return isinstance(exc, OSError) and exc.errno in _HOST_SHORTAGE


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 15] + "... (truncated)"
