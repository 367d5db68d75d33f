"""JobCoordinator: the library's public face; starts, stops, reports and streams jobs."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import functools
import logging
import math
import signal
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from jobservice.core.confine.account import Account
from jobservice.core.confine.base import Confinement, JobCgroup
from jobservice.core.confine.none import Unconfined
from jobservice.core.confine.spawner import Spawner, SpawnerGone
from jobservice.core.errors import (
    CoordinatorClosed,
    InvalidRequest,
    JobNotFound,
    JobNotRunning,
    LimitExceeded,
    SpawnFailed,
    StdinClosed,
)
from jobservice.core.ids import MAX_JOB_ID, first_free_id
from jobservice.core.janitor import Janitor
from jobservice.core.job import FinishedJob, Job, close_in_thread
from jobservice.core.journal import Journal
from jobservice.core.model import NO_LIMITS, JobInfo, JobLimits, JobState, Limits, Stream, Usage
from jobservice.core.observer import JobObserver
from jobservice.core.output_log import MAGIC, OutputLog, scan_log
from jobservice.core.process import ProcessGroup, abandon, spawn, spawn_confined
from jobservice.core.recovery import CgroupKiller, kill_leftovers, leader_of
from jobservice.core.retention import Retention
from jobservice.core.spec import JobSpec, make_spec
from jobservice.core.stdin import StdinPipe
from jobservice.core.store import Ended, JobRecord, JobStore
from jobservice.core.subscription import Subscription
from jobservice.logsafe import quote_field

__all__ = ["JobCoordinator"]

log = logging.getLogger("jobservice.core")

LOST_REASON = "jobd stopped without a clean shutdown while the job ran; its remains were killed"
# A start whose id turns out to be taken on disk (a stray ID.log) moves on to the next id; this
# many times at most, so a directory full of planted files cannot keep a start looping.
_ID_ATTEMPTS = 64


class _IdTaken(Exception):
    """The output log for this id already exists: the id cannot be used."""


class JobCoordinator:
    """Runs jobs on this host and serves their output to any number of subscribers.

    Create and use it inside one running asyncio event loop; every method is safe to call from
    concurrent tasks. Output goes to `data_dir/logs/ID.log` (see `output_log` for the format), so
    memory stays flat whatever the jobs print. `owner` is an opaque label for the caller's use.

    With a `store`, every job is recorded there (see `core.store`): at construction the
    coordinator lists every recorded job again, kills what is left of jobs that were running
    when the previous process died (`cgroup_killer` first, if given) and marks them LOST, and
    continues ids after the highest ever recorded. Without one, jobs live as long as it does.

    `retention` says when finished jobs are removed (by default never; see `Retention`); the
    age rule is applied at construction and by `keep_tidy`, which the owner of the coordinator
    runs as a task; `clock` (seconds since the epoch) is there for tests.

    With a `confinement` (see `confine.detect`), each job runs in its own cgroup, and a job
    left running by a dead server is killed through its cgroup first.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        stop_grace: float = 5.0,
        limits: Limits | None = None,
        store: JobStore | None = None,
        cgroup_killer: CgroupKiller | None = None,
        retention: Retention | None = None,
        clock: Callable[[], float] = time.time,
        confinement: Confinement | None = None,
        observer: JobObserver | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self._observer = observer
        self.confinement = confinement or Unconfined("no confinement configured")
        # Starts every job in a cgroup or as another account (started on first use).
        self.spawner = Spawner()
        if self.confinement.confined:
            cgroup_killer = cgroup_killer or self.confinement.kill_job
        self._timeouts: set[asyncio.Task[None]] = set()
        self.stop_grace = stop_grace
        self._data_dir = Path(data_dir)
        self._logs = self._data_dir / "logs"
        self._logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._jobs: dict[int, Job | FinishedJob] = {}
        self._running: Counter[str] = Counter()
        self._next_id = first_free_id(self._logs)
        self._finished: defaultdict[str, deque[int]] = defaultdict(deque)  # ids, oldest first
        self._closed = False
        self._journal = Journal(store) if store is not None else None
        self._clock = clock
        self._janitor = Janitor(self._jobs, self._journal, retention or Retention(), clock)
        if store is not None:
            self._restore(store, cgroup_killer)
        else:
            self._kill_unrecorded()
        self._janitor.sweep_at_start()

    async def start(
        self,
        owner: str,
        command: str,
        args: Sequence[str] = (),
        dir: str = "",
        env: Sequence[str] = (),
        *,
        limits: JobLimits = NO_LIMITS,
        run_as: Account | None = None,
        env_defaults: Mapping[str, str] | None = None,
        stdin: bool = False,
    ) -> int:
        """Spawn `command args...` in `dir` with exactly `env` (NAME=VALUE); return its id.

        `limits` bound the job (cpu, memory and pids need a confining coordinator); `run_as` is
        the Unix account it runs as (default: this process's). `env_defaults`, the caller's
        own, are set for the names `env` leaves unset. With `stdin`, the job reads a pipe that
        `write_stdin` feeds and `close_stdin` ends, instead of /dev/null. Raises InvalidRequest
        (or CommandNotFound, CommandNotExecutable, DirectoryNotFound), LimitExceeded,
        ConfinementUnavailable, SpawnFailed or CoordinatorClosed. A command that starts and
        then fails is not an error here: its exit status says so.
        """
        if self._closed:
            raise CoordinatorClosed()
        as_other = run_as is not None and not run_as.is_current()
        spec = make_spec(
            command,
            args,
            dir,
            env,
            self.limits,
            env_defaults=env_defaults,
            stdin=stdin,
            as_other=as_other,
        )
        check_job_limits(limits)
        self._check_capacity(owner)
        # Reserve the owner's slot and the id before the first await, so that concurrent starts
        # neither share an id nor overshoot a limit.
        self._running[owner] += 1
        try:
            job = await self._spawn_new(owner, spec, limits, run_as)
        except BaseException:
            self._release(owner)
            raise
        self._jobs[job.id] = job
        job.finished.add_done_callback(lambda _: self._retire(job))
        if self._observer is not None:  # before any await: its end cannot come first
            self._tell(self._observer.job_started, job.info())
        if limits.timeout is not None:
            timer = asyncio.get_running_loop().call_later(limits.timeout, self._time_out, job)
            job.finished.add_done_callback(lambda _: timer.cancel())
        if self._journal is not None:
            await self._record_start(job, spec)
        pid, command = job.process.pid, quote_field(spec.command)
        log.info("job %d started by %s: pid %d: %s", job.id, quote_field(owner), pid, command)
        return job.id

    async def _spawn_new(
        self, owner: str, spec: JobSpec, limits: JobLimits, run_as: Account | None
    ) -> Job:
        """Spawn under the next free id, passing over ids whose output log already exists."""
        for _ in range(_ID_ATTEMPTS):
            job_id = self._next_id
            if job_id > MAX_JOB_ID:  # checked before anything is spawned
                raise LimitExceeded(f"no job id is left (the last is {MAX_JOB_ID})")
            self._next_id += 1
            try:
                return await self._spawn(job_id, owner, spec, limits, run_as)
            except _IdTaken:
                log.warning("%s already exists: job id %d skipped", self._log_path(job_id), job_id)
            except BaseException as e:
                if not isinstance(e, asyncio.CancelledError) and self._next_id == job_id + 1:
                    self._next_id = job_id  # nothing started since: a failed start uses up no id
                raise
        raise SpawnFailed(
            f"{_ID_ATTEMPTS} job ids in a row have a stray output log in {self._logs}"
        )

    async def _record_start(self, job: Job, spec: JobSpec) -> None:
        """Make the job durable before its id is given out; a job that cannot be is killed."""
        assert self._journal is not None
        process = job.process
        record = JobRecord(
            info=job.info(),
            output_path=f"{self._logs.name}/{job.id}.log",  # relative to the data directory
            env_names=tuple(spec.env),
            leader=leader_of(process.pid, (process.stdout_fd, process.stderr_fd)),
        )
        try:
            await self._journal.write(record)
        except Exception as exc:
            process.signal(signal.SIGKILL)
            await asyncio.shield(job.finished)
            if self._jobs.pop(job.id, None) is not None:
                self._janitor.usage.remove(job.owner, job.output.size)
            raise SpawnFailed(f"cannot record the job: {exc}") from None

    def _record_end(self, info: JobInfo) -> asyncio.Future[None]:
        """Make a job's end durable before it shows (Job's `before_end`)."""
        assert self._journal is not None
        job = self._jobs.get(info.id)
        size = job.output.size if job is not None else 0
        done = self._journal.submit(Ended(info, size))
        done.add_done_callback(functools.partial(_log_end_failure, info.id))
        return done

    async def _spawn(
        self, job_id: int, owner: str, spec: JobSpec, limits: JobLimits, run_as: Account | None
    ) -> Job:
        """Create the job's log and cgroup, then its process."""
        path = self._log_path(job_id)
        # Creating a file can take a millisecond while the disk writes back other jobs' output,
        # and a cgroup (a directory in each hierarchy) about as long, mostly waiting in the
        # kernel; in a thread they do not hold up every other call on the event loop.
        admit = functools.partial(self._janitor.admit, owner)

        def prepare() -> tuple[OutputLog, JobCgroup | None]:
            output = OutputLog(path, self.limits.max_output_bytes, admit)
            try:
                return output, self.confinement.create(job_id, limits)
            except BaseException as e:
                _discard(output)
                if isinstance(e, OSError):
                    reason = e.strerror or e
                    raise SpawnFailed(f"cannot create the job's cgroup: {reason}") from None
                raise

        creating = asyncio.ensure_future(asyncio.to_thread(prepare))
        try:
            output, cgroup = await asyncio.shield(creating)
        except asyncio.CancelledError:
            creating.add_done_callback(_discard_prepared)  # the thread finishes on its own
            raise
        except FileExistsError:
            raise _IdTaken() from None
        except OSError as e:  # a full disk, no file descriptor left: the host's trouble
            raise SpawnFailed(f"cannot create the job's output log: {e.strerror or e}") from None
        try:
            if self._closed:
                raise CoordinatorClosed()
            process = await self._start_process(job_id, spec, cgroup, run_as)
        except BaseException:
            _discard(output)
            if cgroup is not None:
                # Busy only when a cancelled start's process is in it: then `_abandon` removes it.
                with contextlib.suppress(OSError):
                    cgroup.remove()
            raise
        self._janitor.usage.add(owner, output.size)
        before_end = self._record_end if self._journal is not None else None
        name = run_as.name if run_as is not None else ""
        return Job(
            job_id,
            owner,
            spec,
            output,
            process,
            before_end=before_end,
            limits=limits,
            run_as=name,
            close_cgroup=self._close_cgroup,
        )

    async def _start_process(
        self, job_id: int, spec: JobSpec, cgroup: JobCgroup | None, run_as: Account | None
    ) -> ProcessGroup:
        """Fork it ourselves when it runs as us, unconfined; else through the spawner."""
        if run_as is not None and run_as.is_current():
            run_as = None
        if cgroup is None and run_as is None:
            return spawn(spec)
        starting = asyncio.ensure_future(spawn_confined(self.spawner, spec, cgroup, run_as))
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The start goes on in the spawner; nobody will watch what it starts: kill it.
            starting.add_done_callback(functools.partial(self._abandon, job_id))
            raise

    def _abandon(self, job_id: int, starting: asyncio.Future[ProcessGroup]) -> None:
        """Kill and reap a job whose start was cancelled, then remove its cgroup (in a thread)."""
        if starting.cancelled() or starting.exception() is not None:
            return

        def abandoned() -> None:
            abandon(starting.result())
            self.confinement.kill_job(job_id)

        asyncio.get_running_loop().run_in_executor(None, abandoned)

    async def _close_cgroup(self, cgroup: JobCgroup) -> tuple[Usage, bool]:
        """Read an ended job's usage and rmdir its groups, in the spawner (off the event loop,
        and no thread of ours waits in the kernel)."""
        cgroup.release()
        try:
            contents = await self.spawner.finish(cgroup.usage_files, cgroup.dirs)
        except SpawnerGone:  # closed, or died: the thread way still works
            return await close_in_thread(cgroup)
        return cgroup.usage_from(contents)

    async def stop(self, job_id: int) -> JobInfo:
        """SIGTERM the job's process group, SIGKILL it after the grace period; return when done."""
        job = self._get(job_id)
        if not isinstance(job, Job) or job.process.reaped:
            raise JobNotRunning(job_id)
        job.process.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(job.exited), self.stop_grace)
        except TimeoutError:
            log.info("job %d ignored SIGTERM for %.1fs; killing it", job_id, self.stop_grace)
            job.process.kill()
        await asyncio.shield(job.finished)
        return job.info()

    async def write_stdin(self, job_id: int, data: bytes) -> None:
        """Write `data` to the job's stdin; returns once the pipe has taken it all (backpressure).

        Raises JobNotFound, or StdinClosed if the job has no stdin open (started without it,
        closed, ended).
        """
        await self._stdin(job_id).write(data)

    def close_stdin(self, job_id: int) -> None:
        """End-of-file on the job's stdin. Raises JobNotFound or StdinClosed."""
        self._stdin(job_id).close()

    def _stdin(self, job_id: int) -> StdinPipe:
        job = self._get(job_id)
        stdin = job.stdin if isinstance(job, Job) else None
        if stdin is None or stdin.closed:
            raise StdinClosed(job_id)
        return stdin

    def owner(self, job_id: int) -> str | None:
        """The job's owner, or None if there is no such job: one lookup either way."""
        job = self._jobs.get(job_id)
        return job.owner if job is not None else None  # an attribute of either kind of job

    def status(self, job_id: int) -> JobInfo:
        """A snapshot of the job. Raises JobNotFound."""
        return self._get(job_id).info()

    def list(self) -> list[JobInfo]:
        """Every job, oldest (lowest id) first."""
        return list(self.jobs_after(-1))

    def jobs_after(self, job_id: int) -> Iterator[JobInfo]:
        """The jobs with an id above `job_id`, oldest first, one snapshot at a time.

        By id, not by the table's order: concurrent starts join the table in the order their
        spawns end, not in the order of their ids (List's pages, resumed after the last id
        seen, would repeat some jobs and skip others). Sorting the nearly sorted ids costs
        about 1 ms per 100,000 jobs.
        """
        ids = sorted(self._jobs)
        for known_id in ids[bisect.bisect_right(ids, job_id) :]:
            job = self._jobs.get(known_id)
            if job is not None:  # removed since the page began
                yield job.info()

    def subscribe(
        self, job_id: int, streams: Stream = Stream.BOTH, offset: int = 0
    ) -> Subscription:
        """Follow the job's output from `offset` (in its combined output) to its end.

        Raises JobNotFound at once, before any iteration, so callers can answer early.
        """
        job = self._get(job_id)
        if not streams & Stream.BOTH:
            raise InvalidRequest("select stdout, stderr or both")
        if offset < 0:
            raise InvalidRequest("offset must not be negative")
        return Subscription(job.output, streams, offset)

    async def wait(self, job_id: int) -> JobInfo:
        """Wait until the job has exited and its output is drained; return its final status."""
        job = self._get(job_id)
        if isinstance(job, Job):
            await asyncio.shield(job.finished)
        return job.info()

    async def remove(self, job_id: int) -> None:
        """Delete a finished job's record and output. Raises JobNotFound, JobStillRunning."""
        await self._janitor.remove(job_id)

    async def keep_tidy(self) -> None:
        """Remove finished jobs as they pass `retention.keep_for`, until cancelled."""
        await self._janitor.run()

    async def close(self) -> None:
        """Take no new jobs and stop every running one with the normal stop procedure."""
        self._closed = True
        running = [i for i, job in self._jobs.items() if isinstance(job, Job)]
        results = await asyncio.gather(*(self.stop(i) for i in running), return_exceptions=True)
        for job_id, result in zip(running, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, JobNotRunning):
                log.error("stopping job %d at shutdown failed: %r", job_id, result)
        # A job whose process has ended may still be winding up (removing its cgroup in a
        # thread, recording its end): wait for it too, so that nothing is left behind.
        ending = [job.finished for job in self._jobs.values() if isinstance(job, Job)]
        await asyncio.gather(*(asyncio.shield(f) for f in ending), return_exceptions=True)
        await self._janitor.close()
        if self._journal is not None:
            await self._journal.close()
        self.spawner.close()
        self.confinement.close()

    def _restore(self, store: JobStore, cgroup_killer: CgroupKiller | None) -> None:
        """List every recorded job again; those recorded as running did not survive: LOST."""
        assert self._journal is not None
        stored = store.load()
        lost: list[Ended] = []
        for record in stored.records:
            info, path = record.info, self._data_dir / record.output_path
            size = record.log_size
            if info.is_running:
                if record.leader is not None:
                    kill_leftovers(info.id, record.leader, cgroup_killer)
                info, size = self._lost(info, path)
                lost.append(Ended(info, size))
            output = OutputLog.finished(path, size, info.output_bytes, info.output_truncated)
            self._keep_finished(info, output, trim=False)
            self._janitor.usage.add(info.owner, size)
        self._next_id = max(self._next_id, stored.next_id)
        self._kill_unrecorded()
        if lost:
            self._journal.write_now(lost)
            log.warning("%d job(s) were running when jobd last stopped: now lost", len(lost))
            if self._observer is not None:
                for ended in lost:
                    self._tell(self._observer.job_ended, ended.info)

    def _kill_unrecorded(self) -> None:
        """Kill every job group under this server's root that no running record names: its
        job was spawned but not yet recorded when the server died, its group outlived its end,
        or, without a store, it ran under a server that is gone. Nothing else would end it."""
        for job_id in self.confinement.job_ids():
            if self.confinement.kill_job(job_id):
                log.warning("job %d: its cgroup was left without a running record: killed", job_id)

    def _lost(self, info: JobInfo, path: Path) -> tuple[JobInfo, int]:
        """The final record of a job whose server died under it; its output up to then stays."""
        try:
            size, data_bytes = scan_log(path)
        except (OSError, ValueError) as exc:
            log.error("job %d: output log unreadable: %s", info.id, exc)
            size, data_bytes = len(MAGIC), 0
        info = dataclasses.replace(
            info,
            state=JobState.LOST,
            ended_at=self._clock(),
            output_bytes=data_bytes,
            lost_reason=LOST_REASON,
        )
        return info, size

    def _time_out(self, job: Job) -> None:
        """The job's timeout: the normal stop procedure, and its status says why."""
        if job.process.reaped:
            return
        job.timed_out = True
        log.info("job %d timed out after %ss; stopping it", job.id, job.limits.timeout)
        task = asyncio.ensure_future(self._stop_quietly(job.id))
        self._timeouts.add(task)
        task.add_done_callback(self._timeouts.discard)

    async def _stop_quietly(self, job_id: int) -> None:
        with contextlib.suppress(JobNotRunning):
            await self.stop(job_id)

    def _retire(self, job: Job) -> None:
        """Free a finished job's slot and keep only its final record (bounded) and log."""
        self._release(job.owner)
        info = job.info()
        self._keep_finished(info, job.output)
        if self._observer is not None:
            self._tell(self._observer.job_ended, info)

    @staticmethod
    def _tell(event: Callable[[JobInfo], None], info: JobInfo) -> None:
        """Tell the observer; its failure is logged, and is never the coordinator's."""
        try:
            event(info)
        except Exception:
            log.exception("job observer failed on job %d", info.id)

    def _keep_finished(self, info: JobInfo, output: OutputLog, *, trim: bool = True) -> None:
        """Keep a finished job's record, its arguments cut to the limit; past the owner's
        `max_finished_jobs_per_owner`, remove their oldest jobs (record and log, as retention)."""
        kept = kept_args(info.args, self.limits.max_kept_args_bytes)
        if kept is not info.args:
            info = dataclasses.replace(info, args=kept)
        self._jobs[info.id] = FinishedJob(info, output)
        finished = self._finished[info.owner]
        finished.append(info.id)
        limit = self.limits.max_finished_jobs_per_owner
        if trim and limit and len(finished) > limit:
            # Retention and `remove` take jobs out of the table too: count only those left.
            live = deque(job_id for job_id in finished if job_id in self._jobs)
            self._finished[info.owner] = live
            doomed = [live.popleft() for _ in range(len(live) - limit)]
            if doomed:
                self._janitor.drop(doomed, f"{quote_field(info.owner)} has over {limit} jobs")

    def _release(self, owner: str) -> None:
        """Give back one of `owner`'s running slots; owners with none leave the table."""
        self._running[owner] -= 1
        if not self._running[owner]:
            del self._running[owner]

    def _log_path(self, job_id: int) -> Path:
        return self._logs / f"{job_id}.log"

    def _get(self, job_id: int) -> Job | FinishedJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def _check_capacity(self, owner: str) -> None:
        self.limits.check_running(owner, self._running[owner], sum(self._running.values()))


# Below these a limit cannot work as meant: the CFS quota's floor is 1 ms per 100 ms period, and
# a job needs a few MiB just to exec.
MIN_CPU = 0.01
MIN_MEMORY = 4 << 20
# What the kernel takes: pids.max up to PID_MAX_LIMIT (64-bit), and a CFS quota of this many
# cores is far below its maximum (~2^44 us per 100 ms period) and above any host's count.
MAX_PIDS = 4 << 20
MAX_CPU = 65536.0


def check_job_limits(limits: JobLimits) -> None:
    """Raise InvalidRequest for a limit no job could run under."""
    if limits.cpu is not None and not limits.cpu >= MIN_CPU:
        raise InvalidRequest(f"cpu limit must be at least {MIN_CPU} cores")
    if limits.cpu is not None and not math.isfinite(limits.cpu):
        raise InvalidRequest("cpu limit must be a finite number of cores (unset: no limit)")
    if limits.cpu is not None and limits.cpu > MAX_CPU:
        raise InvalidRequest(f"cpu limit must be at most {MAX_CPU:.0f} cores")
    if limits.memory is not None and limits.memory < MIN_MEMORY:
        raise InvalidRequest(f"memory limit must be at least {MIN_MEMORY} bytes (4 MiB)")
    if limits.pids is not None and limits.pids < 1:
        raise InvalidRequest("pids limit must be at least 1")
    if limits.pids is not None and limits.pids > MAX_PIDS:
        raise InvalidRequest(f"pids limit must be at most {MAX_PIDS} (the kernel's maximum)")
    if limits.timeout is not None and not limits.timeout > 0:
        raise InvalidRequest("timeout must be positive")


def _log_end_failure(job_id: int, done: asyncio.Future[None]) -> None:
    """The job shows as ended all the same; a restart will say it was lost."""
    if not done.cancelled() and done.exception() is not None:
        log.error("job %d: cannot record its end: %s", job_id, done.exception())


def kept_args(args: tuple[str, ...], budget: int) -> tuple[str, ...]:
    """`args` if they fit `budget` bytes (UTF-8), else those that fit and a note of the rest."""
    used = 0
    for n, arg in enumerate(args):
        used += len(arg.encode(errors="surrogatepass"))
        if used > budget:
            rest = sum(len(a.encode(errors="surrogatepass")) for a in args[n:])
            return (*args[:n], f"...({len(args) - n} more arguments, {rest} bytes, not kept)")
    return args


def _discard(output: OutputLog) -> None:
    output.close()
    output.path.unlink(missing_ok=True)


def _discard_prepared(creating: asyncio.Future[tuple[OutputLog, JobCgroup | None]]) -> None:
    if not creating.cancelled() and creating.exception() is None:
        output, cgroup = creating.result()
        _discard(output)
        if cgroup is not None:
            cgroup.remove()
