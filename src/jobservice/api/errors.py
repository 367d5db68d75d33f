"""The one table from library and security errors to gRPC status codes.

    PermissionDenied (api)     the caller's role does not allow this RPC on this job
    ServiceUnavailable (api)   the server is shutting down or at a connection-level limit

Everything not in the table becomes INTERNAL with a generic message; the traceback goes to the
server's log only, so internals never reach a client.
"""

from __future__ import annotations

import logging

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobservice.core.errors import (
    CoordinatorClosed,
    InvalidRequest,
    JobNotFound,
    JobNotRunning,
    LimitExceeded,
    SpawnFailed,
)
from jobservice.security.errors import AuthenticationError

__all__ = [
    "INTERNAL_MESSAGE",
    "STATUS_TABLE",
    "PermissionDenied",
    "ServiceUnavailable",
    "to_grpc_error",
]

log = logging.getLogger("jobservice.api")

INTERNAL_MESSAGE = "internal error"


class PermissionDenied(Exception):
    """The caller is known, may see the job, but its role does not allow this RPC."""


class ServiceUnavailable(Exception):
    """The server cannot take this call now (shutting down); the client may retry elsewhere."""


# Most specific first: the first row whose class matches wins. Each of these exceptions' str()
# is written to be shown to a caller.
STATUS_TABLE: tuple[tuple[type[Exception], Status], ...] = (
    (InvalidRequest, Status.INVALID_ARGUMENT),
    (JobNotFound, Status.NOT_FOUND),
    (JobNotRunning, Status.FAILED_PRECONDITION),
    (LimitExceeded, Status.RESOURCE_EXHAUSTED),
    (SpawnFailed, Status.UNAVAILABLE),
    (CoordinatorClosed, Status.UNAVAILABLE),
    (ServiceUnavailable, Status.UNAVAILABLE),
    (PermissionDenied, Status.PERMISSION_DENIED),
    (AuthenticationError, Status.UNAUTHENTICATED),
)


def to_grpc_error(exc: Exception) -> GRPCError:
    """The GRPCError a client sees for `exc`; unexpected errors are logged with a traceback."""
    if isinstance(exc, GRPCError):
        return exc
    for cls, status in STATUS_TABLE:
        if isinstance(exc, cls):
            return GRPCError(status, str(exc))
    log.error("unexpected error, answered as INTERNAL", exc_info=exc)
    return GRPCError(Status.INTERNAL, INTERNAL_MESSAGE)
