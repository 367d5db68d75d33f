"""gRPC health checking and server reflection on jobd's port, for the standard tools.

`grpc.health.v1.Health` (Check, Watch) and `grpc.reflection.v1` / `v1alpha` (ServerReflectionInfo)
come from grpclib. They are served behind the same door as the job API, `JobService.admit`: the
caller's certificate must name a user of the policy (any role will do: health and the API's
description tell nothing about jobs), each call leaves an audit line and counts in the metrics,
and errors leave through the one table. A valid certificate whose user is in no policy gets
PERMISSION_DENIED here as everywhere.

Health is SERVING for the whole server ("") and for `jobservice.v1.JobService` while jobd serves,
and NOT_SERVING from the moment it starts shutting down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from grpclib.const import Handler
from grpclib.health.check import ServiceStatus
from grpclib.health.service import Health
from grpclib.reflection.service import ServerReflection
from grpclib.server import Stream

from jobservice.api.errors import PermissionDenied
from jobservice.security.identity import Identity

__all__ = ["Admit", "StandardServices"]

# `JobService.admit(rpc, stream, check)`: authenticate, audit, count and map errors around a call.
Admit = Callable[
    [str, Stream[Any, Any], Callable[[Identity], None]], AbstractAsyncContextManager[Identity]
]


class StandardServices:
    """Health and reflection for `services`, each call admitted by `admit` for known users."""

    def __init__(self, services: list[Any], admit: Admit, is_known: Callable[[str], bool]) -> None:
        self.status = ServiceStatus()
        self.status.set(True)
        health = Health({service: [self.status] for service in services})
        self._admit = admit
        self._is_known = is_known
        self.services = [
            _Guarded(service, self._guard)
            for service in ServerReflection.extend([*services, health])[len(services) :]
        ]

    def stopping(self) -> None:
        """Health says NOT_SERVING from now on (Watch streams are told at once)."""
        self.status.set(False)

    def _check(self, caller: Identity) -> None:
        if not self._is_known(caller.user):
            raise PermissionDenied(f"user {caller.user!r} has no role on this server")

    def _guard(
        self, rpc: str, func: Callable[[Stream[Any, Any]], Awaitable[None]]
    ) -> Callable[[Stream[Any, Any]], Awaitable[None]]:
        async def guarded(stream: Stream[Any, Any]) -> None:
            async with self._admit(rpc, stream, self._check):
                await func(stream)

        return guarded


class _Guarded:
    """A grpclib service whose every handler runs inside `guard`."""

    def __init__(self, service: Any, guard: Callable[..., Any]) -> None:
        self._mapping = {
            path: Handler(
                guard(_rpc_name(path), h.func), h.cardinality, h.request_type, h.reply_type
            )
            for path, h in service.__mapping__().items()
        }

    def __mapping__(self) -> Mapping[str, Handler]:
        return self._mapping


def _rpc_name(path: str) -> str:
    """`/grpc.health.v1.Health/Check` -> `Health.Check` (the audit and metrics name)."""
    _, service, method = path.split("/")
    return f"{service.rsplit('.', 1)[-1]}.{method}"
