"""The RPC bodies: translate the request, call the library, translate the result.

They run only after `dispatch` has authenticated the caller and authorized the call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

from jobservice.api import convert, metrics, pages
from jobservice.api.errors import StdinBusy
from jobservice.api.jobsettings import JobSettings
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core import InvalidRequest, JobCoordinator, JobInfo, JobNotFound, StdinClosed
from jobservice.core.backend import JobBackend, NodeDirectory
from jobservice.core.defaults import defaults_for
from jobservice.security.identity import Identity

__all__ = ["RpcBodies"]

Visible = Callable[[Identity, JobInfo], bool]


class RpcBodies:
    """The bodies of the RPCs over one JobBackend (run by `dispatch.Dispatcher`): this host's
    JobCoordinator, or a cluster front."""

    def __init__(
        self,
        backend: JobBackend,
        visible: Visible,
        settings: JobSettings | None = None,
        directory: NodeDirectory | None = None,
    ) -> None:
        self._coord = backend
        self._visible = visible
        self._settings = settings or JobSettings()
        self._directory = directory  # set when jobs run on a cluster's nodes
        self._feeding: set[int] = set()  # jobs with a WriteStdin call open: one at a time

    async def prepare(self, job_id: int) -> None:
        """Before a call on `job_id` is authorized: a cluster front learns of a job just started
        through another front (on this host every job is known at once)."""
        if self._directory is not None:
            await self._directory.lookup(job_id)

    @property
    def settings(self) -> JobSettings:
        return self._settings

    def use(self, settings: JobSettings) -> None:
        """Start jobs with `settings` from now on (a reload); running jobs keep theirs."""
        self._settings = settings

    async def start(self, caller: Identity, request: pb.StartRequest) -> pb.StartResponse:
        # The owner is the caller, always: there is no starting a job on another's behalf.
        user = caller.user
        limits = self._settings.limits_for(user, convert.limits_from_proto(request.limits))
        run_as = self._settings.account_for(user)
        if request.node:
            if self._directory is None:
                raise InvalidRequest("this jobd runs jobs on its own host: there is no --node")
            job_id = await self._directory.start_on(
                request.node,
                user,
                request.command,
                request.args,
                dir=request.dir,
                env=request.env,
                limits=limits,
                run_as=run_as,
                stdin=request.stdin,
            )
        elif isinstance(self._coord, JobCoordinator):  # jobs on this host
            # What the request leaves unset comes from the account (its home, a PATH), as ssh.
            defaults = defaults_for(run_as)
            job_id = await self._coord.start(
                user,
                request.command,
                request.args,
                request.dir or defaults.dir,
                request.env,
                limits=limits,
                run_as=run_as,
                env_defaults=defaults.env,
                stdin=request.stdin,
            )
        else:  # a cluster front: the agent's host knows the account's home, and has the pipe
            job_id = await self._coord.start(
                user,
                request.command,
                request.args,
                request.dir,
                request.env,
                limits=limits,
                run_as=run_as,
                stdin=request.stdin,
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
        after = pages.page_start(request.page_token)
        jobs = (info for info in self._coord.jobs_after(after) if self._visible(caller, info))
        return pages.list_page(jobs, request.page_size)

    async def _write_stdin(self, job_id: int, data: bytes) -> None:
        if self._directory is not None:  # the job's pipe is on its node
            await self._directory.write_stdin(job_id, data)
        elif isinstance(self._coord, JobCoordinator):
            await self._coord.write_stdin(job_id, data)
        else:
            raise InvalidRequest("this jobd cannot forward stdin")

    async def _close_stdin(self, job_id: int) -> None:
        if self._directory is not None:
            await self._directory.close_stdin(job_id)
        elif isinstance(self._coord, JobCoordinator):
            self._coord.close_stdin(job_id)

    async def write_stdin(
        self,
        caller: Identity,
        first: pb.StdinChunk,
        more: Callable[[], Awaitable[pb.StdinChunk | None]],
    ) -> pb.WriteStdinResponse:
        """Each chunk's data into the job's stdin, in order; the call's end is end-of-file."""
        job_id, written = first.job_id, 0
        if job_id in self._feeding:  # two writers would interleave, and the first end is EOF
            raise StdinBusy(f"another call is writing to job {job_id}'s stdin")
        self._feeding.add(job_id)
        chunk: pb.StdinChunk | None = first
        try:
            while chunk is not None:
                if chunk.job_id not in (0, job_id):
                    raise InvalidRequest("every message of a WriteStdin call is for one job")
                if chunk.data:
                    await self._write_stdin(job_id, chunk.data)  # waits for room
                    written += len(chunk.data)
                chunk = await more()
        finally:
            # However the call ends (finished, cancelled, refused), the writer is gone: EOF.
            self._feeding.discard(job_id)
            with contextlib.suppress(StdinClosed, JobNotFound, InvalidRequest):
                await self._close_stdin(job_id)
        return pb.WriteStdinResponse(bytes_written=written)

    async def output(
        self, caller: Identity, request: pb.OutputRequest
    ) -> AsyncGenerator[pb.OutputResponse | convert.EncodedMessage, None]:
        """Every chunk from the requested offset, live to the end, then the final status.

        Chunks come already encoded (the bulk of jobd's work while streaming otherwise).
        """
        streams = convert.selection_from_proto(request.streams)
        async with self._coord.subscribe(request.job_id, streams, request.offset) as output:
            async for chunk in output:
                metrics.output_streamed(len(chunk.data))
                yield convert.encode_output_chunk(chunk)
        final = await self._coord.wait(request.job_id)
        yield pb.OutputResponse(final_status=convert.info_to_proto(final))

    async def nodes(self, caller: Identity, request: pb.NodesRequest) -> pb.NodesResponse:
        nodes = self._directory.nodes() if self._directory is not None else []
        return pb.NodesResponse(nodes=[convert.node_to_proto(node) for node in nodes])
