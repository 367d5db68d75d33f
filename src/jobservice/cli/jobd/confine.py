"""`jobd serve`'s confinement flags: the cgroup layout, the run-as account, limits per job."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from jobservice.api.server import JobSettings, default_run_as
from jobservice.cli.limits import CORES, DURATION, SIZE
from jobservice.core import ConfinementUnavailable, JobLimits
from jobservice.core.confine import Confinement, ConfineMode, detect, root_name
from jobservice.core.confine.privileges import set_no_new_privs
from jobservice.security.policy import Policy

__all__ = ["cgroup_options", "confine_options", "confinement_from", "host_confinement"]

log = logging.getLogger("jobservice.jobd")

F = TypeVar("F", bound=Callable[..., Any])


_LIMITS = (
    ("cpu", CORES, "CPU time in cores (0.5: half a core)"),
    ("memory", SIZE, "memory, no swap (256M, 2G)"),
    ("pids", click.IntRange(min=1), "processes at once"),
    ("timeout", DURATION, "wall time (30s, 2h), then the job is stopped"),
)


def confine_options(func: F) -> F:
    """--confine, --cgroup-root, --run-as, --default-LIMIT and --max-LIMIT."""
    for name, kind, what in reversed(_LIMITS):
        func = click.option(
            f"--max-{name}", type=kind, help=f"Maximum per job: {what}. Policy: max_limits."
        )(func)
        func = click.option(
            f"--default-{name}",
            type=kind,
            help=f"Default per job: {what}. Policy: limits. Default: the maximum, else none.",
        )(func)
    func = click.option(
        "--run-as",
        metavar="ACCOUNT",
        help="Unix account jobs run as unless the policy names one for their user (run_as). "
        "Default: nobody when jobd runs as root; else jobd's own (with a warning). root is "
        "refused here.",
    )(func)
    return cgroup_options(func)


def cgroup_options(func: F) -> F:
    """--confine and --cgroup-root: how this host confines jobs (jobd serve and jobd agent)."""
    func = click.option(
        "--cgroup-root",
        type=click.Path(file_okay=False, path_type=Path),
        help="A delegated cgroup v2 group to put jobs under (pure v2 hosts). Default: jobd's "
        "own group (systemd Delegate=yes).",
    )(func)
    return click.option(
        "--confine",
        type=click.Choice([m.value for m in ConfineMode]),
        default=ConfineMode.AUTO.value,
        show_default=True,
        help="Run each job in its own cgroup: when the host allows (auto; else unconfined, "
        "with a warning), always (required; else refuse to start), or never (off).",
    )(func)


def host_confinement(mode: str, data_dir: Path, cgroup_root: Path | None) -> Confinement:
    """no_new_privs for this process (jobs inherit it), then the cgroup layout, named in the log."""
    if not set_no_new_privs():
        log.warning("cannot set no_new_privs: jobs may gain privileges through setuid programs")
    try:
        confinement, reason = detect(ConfineMode(mode), root_name(data_dir), cgroup_root)
    except ConfinementUnavailable as exc:
        raise click.ClickException(f"refusing to start (--confine required): {exc}") from None
    if reason is not None:
        log.warning("confinement: none (%s): jobs run unconfined, without limits", reason)
    else:
        log.info("confinement: %s", confinement.description)
    return confinement


def confinement_from(
    mode: str, data_dir: Path, cgroup_root: Path | None, options: dict[str, Any], policy: Policy
) -> tuple[Confinement, JobSettings]:
    """The cgroup layout (named in the log) and the job settings; no_new_privs for jobd."""
    confinement = host_confinement(mode, data_dir, cgroup_root)
    try:
        return confinement, _job_settings(options, policy, confinement)
    except BaseException:
        confinement.close()  # leave no empty cgroup behind when refusing to start
        raise


def _job_settings(options: dict[str, Any], policy: Policy, confinement: Confinement) -> JobSettings:
    """Defaults, maxima and accounts from the flags and the policy, checked once at start."""

    def limits(prefix: str) -> JobLimits:
        return JobLimits(**{name: options[f"{prefix}_{name}"] for name, _, _ in _LIMITS})

    try:
        return JobSettings.build(
            policy,
            defaults=limits("default"),
            maxima=limits("max"),
            run_as=options["run_as"] or default_run_as(),
            confined=confinement.confined,
        )
    except ValueError as exc:
        raise click.ClickException(f"refusing to start: {exc}") from None
