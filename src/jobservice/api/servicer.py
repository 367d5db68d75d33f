"""The RPC bodies: translate the request, call the library, translate the result.

They run only after `dispatch` has authenticated the caller and authorized the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

from jobservice.api import convert
from jobservice.api.jobsettings import JobSettings
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core import JobCoordinator, JobInfo
from jobservice.security.identity import Identity

__all__ = ["RpcBodies"]

Visible = Callable[[Identity, JobInfo], bool]


class RpcBodies:
    """The bodies of the six RPCs over one JobCoordinator (run by `dispatch.Dispatcher`)."""

    def __init__(
        self, coordinator: JobCoordinator, visible: Visible, settings: JobSettings | None = None
    ) -> None:
        self._coord = coordinator
        self._visible = visible
        self._settings = settings or JobSettings()

    async def start(self, caller: Identity, request: pb.StartRequest) -> pb.StartResponse:
        # The owner is the caller, always: there is no starting a job on another's behalf.
        user = caller.user
        limits = self._settings.limits_for(user, convert.limits_from_proto(request.limits))
        job_id = await self._coord.start(
            user,
            request.command,
            request.args,
            request.dir,
            request.env,
            limits=limits,
            run_as=self._settings.account_for(user),
        )
        status = convert.info_to_proto(self._coord.status(job_id))
        return pb.StartResponse(job_id=job_id, status=status)

    async def stop(self, caller: Identity, request: pb.StopRequest) -> pb.StopResponse:
        # Shielded: a client that hangs up mid-stop must not cut the procedure short between
        # its SIGTERM and its SIGKILL, leaving a job that ignored SIGTERM running.
        info = await asyncio.shield(self._coord.stop(request.job_id))
        return pb.StopResponse(status=convert.info_to_proto(info))

    async def remove(self, caller: Identity, request: pb.RemoveRequest) -> pb.RemoveResponse:
        # Shielded: once begun, a removal completes even if the client hangs up.
        await asyncio.shield(self._coord.remove(request.job_id))
        return pb.RemoveResponse()

    async def status(self, caller: Identity, request: pb.StatusRequest) -> pb.StatusResponse:
        info = self._coord.status(request.job_id)
        return pb.StatusResponse(status=convert.info_to_proto(info))

    async def list(self, caller: Identity, request: pb.ListRequest) -> pb.ListResponse:
        jobs = [info for info in self._coord.list() if self._visible(caller, info)]
        return pb.ListResponse(jobs=[convert.info_to_proto(info) for info in jobs])

    async def output(
        self, caller: Identity, request: pb.OutputRequest
    ) -> AsyncGenerator[pb.OutputResponse | convert.EncodedMessage, None]:
        """Every chunk from the requested offset, live to the end, then the final status.

        Chunks come already encoded (the bulk of jobd's work while streaming otherwise).
        """
        streams = convert.selection_from_proto(request.streams)
        async with self._coord.subscribe(request.job_id, streams, request.offset) as output:
            async for chunk in output:
                yield convert.encode_output_chunk(chunk)
        final = await self._coord.wait(request.job_id)
        yield pb.OutputResponse(final_status=convert.info_to_proto(final))
