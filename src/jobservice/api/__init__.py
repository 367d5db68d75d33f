"""The gRPC API's public face: what jobctl, the benchmarks and an embedding program import.

    from jobservice.api import open_channel, JobServiceStub, pb      # a client
    from jobservice.api import status_to_info                        # JobStatus -> JobInfo
    from jobservice.api.server import JobServer, ServerConfig        # a server (jobd)

The server side lives in `jobservice.api.server`, not here, so that a client does not import
it: it adds about 18 ms (a fifth) to a cold `jobctl status` (`python -X importtime`). Every
other module of this package is private to it.
"""

from jobservice.api.client import close_channel, open_channel
from jobservice.api.convert import chunk_from_proto, status_to_info
from jobservice.api.errors import (
    ApiError,
    ConnectError,
    ConnectFailure,
    PermissionDenied,
    RequestTimeout,
    RequestTooLarge,
    ServiceUnavailable,
)
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.api.v1.jobservice_grpc import JobServiceStub

__all__ = [
    "ApiError",
    "ConnectError",
    "ConnectFailure",
    "JobServiceStub",
    "PermissionDenied",
    "RequestTimeout",
    "RequestTooLarge",
    "ServiceUnavailable",
    "chunk_from_proto",
    "close_channel",
    "open_channel",
    "pb",
    "status_to_info",
]
