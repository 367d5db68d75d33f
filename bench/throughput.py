"""Output throughput: a finished job's output read by `jobctl output`, vs pipe, TLS and OpenSSH."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable

from bench.harness import (
    MB,
    PROCS,
    PY,
    Context,
    Jobd,
    Row,
    Section,
    alternate,
    child_env,
    children_cpu,
    median,
    start_job,
    timed_run,
    wait_exited,
)

__all__ = ["run"]

# The figure for OpenSSH on these machines, the target when sshd is unavailable.
_SSH_FIGURE = 630.0


async def _make_job(stub: object, size: int) -> int:
    job_id = await start_job(stub, ["head", "-c", str(size), "/dev/zero"])
    await wait_exited(stub, job_id)
    return job_id


def run(ctx: Context) -> Section:
    size = ctx.scale.output_bytes
    section = Section("throughput", f"Output throughput: {size >> 20} MiB to /dev/null")
    jobd = Jobd.start(ctx.ws, "throughput")
    tls_server = PROCS.popen(
        [PY, "-m", "bench.tlspeer", "serve", str(ctx.ws.pki), str(size)],
        stdout=subprocess.PIPE,
        env=child_env(ctx.ws),
    )
    try:
        assert tls_server.stdout is not None
        port = int(tls_server.stdout.readline())
        job_id: int = jobd.run(_make_job, size)
        variants = _variants(ctx, jobd, job_id, port, section)
        seconds = alternate(variants, ctx.scale.rounds)
    finally:
        PROCS.end(tls_server)
        jobd.stop()
    rates = {name: [size / MB / s for s in runs] for name, runs in seconds.items()}
    section.rows = _rows(rates, ctx)
    section.plot["rates"] = rates
    cpu, per_gb = section.plot["cpu"], size / 1e9
    section.rows[0].note += (
        f"; CPU-s per GB: jobctl {median(cpu['jobctl']) / per_gb:.2f}, "
        f"jobd {median(cpu['jobd']) / per_gb:.2f}; wall {1000 / section.rows[0].value:.2f} s per GB"
    )
    return section


def _variants(
    ctx: Context, jobd: Jobd, job_id: int, port: int, section: Section
) -> list[tuple[str, Callable[[], float]]]:
    size = ctx.scale.output_bytes
    pipe = ["sh", "-c", f"head -c {size} /dev/zero | cat > /dev/null"]
    tls = [PY, "-m", "bench.tlspeer", "fetch", str(ctx.ws.pki), str(port), str(size)]
    jobctl = [*ctx.ws.jobctl(jobd), "output", str(job_id)]
    cpu: dict[str, list[float]] = {"jobctl": [], "jobd": []}
    section.plot["cpu"] = cpu

    def jobctl_run() -> float:
        """One `jobctl output`, noting the CPU seconds it and jobd spent on it."""
        mine, server = children_cpu(), jobd.cpu_seconds()
        seconds = timed_run(jobctl)
        cpu["jobctl"].append(children_cpu() - mine)
        cpu["jobd"].append(jobd.cpu_seconds() - server)
        return seconds

    variants: list[tuple[str, Callable[[], float]]] = [
        ("jobctl", jobctl_run),
        ("pipe", lambda: timed_run(pipe)),
        ("tls", lambda: timed_run(tls, env=child_env(ctx.ws))),
    ]
    section.commands += [
        f"{shlex.join(jobctl)} > /dev/null   # job: head -c {size} /dev/zero, finished",
        shlex.join(pipe),
        f"python -m bench.tlspeer fetch PKI PORT {size} > /dev/null"
        f"   # against: python -m bench.tlspeer serve PKI {size}",
    ]
    if ctx.ssh is not None:
        ssh = [*ctx.ssh, f"head -c {size} /dev/zero"]
        variants.append(("ssh", lambda: timed_run(ssh)))
        section.commands.append(f"{shlex.join(ssh)} > /dev/null")
    return variants


def _rows(rates: dict[str, list[float]], ctx: Context) -> list[Row]:
    pipe = Row("raw pipe: head | cat", "MB/s", rates["pipe"])
    tls = Row("Python TLS 1.3 AES-256-GCM socket (limit)", "MB/s", rates["tls"])
    tls.reference, tls.ref_value = "pipe", pipe.value
    jobctl = Row("jobctl output (finished job)", "MB/s", rates["jobctl"])
    rows = [jobctl]
    if "ssh" in rates:
        ssh = Row("ssh -c aes256-gcm (private sshd)", "MB/s", rates["ssh"])
        ssh.reference, ssh.ref_value = "TLS limit", tls.value
        jobctl.reference, jobctl.ref_value = "ssh", ssh.value
        jobctl.target, jobctl.met = ">= ssh", jobctl.value >= ssh.value
        rows.append(ssh)
    else:
        jobctl.reference, jobctl.ref_value = "TLS limit", tls.value
        jobctl.target = f">= {_SSH_FIGURE:.0f} MB/s (issue's ssh figure)"
        jobctl.met = jobctl.value >= _SSH_FIGURE
    jobctl.note = f"{jobctl.value / tls.value:.2f}x of the TLS limit"
    return [*rows, tls, pipe]
