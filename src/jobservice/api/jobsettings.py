"""How each user's jobs run: the Unix account, and limits completed with defaults, under maxima.

The server's flags give the defaults, maxima and run-as account; a user's policy table may
replace any of them (`security.jobpolicy`). A limit a request leaves unset takes the default,
or the maximum when there is no default, so no job runs unbounded where a maximum is set.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from jobservice.core import ConfinementUnavailable, InvalidRequest, JobLimits
from jobservice.core.confine import Account
from jobservice.core.model import NO_LIMITS
from jobservice.security.jobpolicy import UserJobs
from jobservice.security.policy import Policy
from jobservice.units import format_duration, format_size

__all__ = ["JobSettings", "default_run_as"]

log = logging.getLogger("jobservice.api")

_FORMAT: dict[str, Callable[[float], str]] = {
    "cpu": lambda v: f"{v:g} cores",
    "memory": lambda v: format_size(int(v)),
    "pids": lambda v: f"{v} processes",
    "timeout": lambda v: format_duration(float(v)),
}
_CGROUP_FIELDS = ("cpu", "memory", "pids")
_NONE = UserJobs()


def default_run_as() -> str | None:
    """`nobody` when jobd runs as root, else None (jobs run as jobd's own account)."""
    return "nobody" if os.geteuid() == 0 else None


@dataclass(frozen=True)
class JobSettings:
    """Server-wide limits and account, per-user overrides, resolved once at start."""

    defaults: JobLimits = NO_LIMITS
    maxima: JobLimits = NO_LIMITS
    run_as: Account | None = None  # None: jobd's own account
    confined: bool = False
    users: Mapping[str, UserJobs] = field(default_factory=dict)
    accounts: Mapping[str, Account] = field(default_factory=dict)  # per-user run_as, resolved

    @classmethod
    def build(
        cls,
        policy: Policy,
        *,
        defaults: JobLimits = NO_LIMITS,
        maxima: JobLimits = NO_LIMITS,
        run_as: str | None = None,
        confined: bool = False,
    ) -> JobSettings:
        """Resolve every account and check every default against its maximum; ValueError."""
        users = dict(policy.jobs)
        root = os.geteuid() == 0
        if not root:
            log.warning(
                "jobd is not root: jobs run as its own account (%s) and are not separated "
                "from it; run jobd as root with --run-as to separate them",
                Account.current().name,
            )
            run_as = None
            users = {u: dataclasses.replace(j, run_as=None) for u, j in users.items()}
        default = _account(run_as, "--run-as") if run_as else None
        if default is not None and default.is_root:
            raise ValueError(
                "--run-as root would run every job as root; name root for a user in the "
                'policy (run_as = "root") if that is really meant'
            )
        accounts = {
            user: _account(jobs.run_as, f"the policy's run_as for {user}")
            for user, jobs in users.items()
            if jobs.run_as
        }
        settings = cls(defaults, maxima, default, confined, users, accounts)
        for user in (None, *users):
            settings._check_defaults(user)
        return settings

    def with_policy(self, policy: Policy) -> JobSettings:
        """The same server-wide settings with `policy`'s per-user ones (a reload); ValueError."""
        return JobSettings.build(
            policy,
            defaults=self.defaults,
            maxima=self.maxima,
            run_as=self.run_as.name if self.run_as is not None else None,
            confined=self.confined,
        )

    def account_for(self, user: str) -> Account | None:
        """The account `user`'s jobs run as (None: jobd's own)."""
        return self.accounts.get(user, self.run_as)

    def limits_for(self, user: str, requested: JobLimits) -> JobLimits:
        """`requested` completed with defaults; InvalidRequest naming a maximum it is over."""
        if not self.confined and requested.needs_cgroup:
            raise ConfinementUnavailable(
                "this server runs jobs unconfined (no cgroups), so it cannot apply cpu, "
                "memory or pids limits; only a timeout"
            )
        values = {}
        for name in ("cpu", "memory", "pids", "timeout"):
            default, maximum = self._bounds(user, name)
            value = getattr(requested, name)
            if value is None:
                value = default if default is not None else maximum
            if maximum is not None and value is not None and value > maximum:
                shown = _FORMAT[name]
                raise InvalidRequest(
                    f"{name} limit {shown(value)} is over the maximum of {shown(maximum)}"
                )
            values[name] = value
        return JobLimits(**values)

    def _bounds(self, user: str | None, name: str) -> tuple[float | None, float | None]:
        if not self.confined and name in _CGROUP_FIELDS:
            return None, None  # nothing can enforce them; the warning at start said so
        jobs = self.users.get(user, _NONE) if user is not None else _NONE
        default = getattr(jobs.defaults, name)
        maximum = getattr(jobs.maxima, name)
        if default is None:
            default = getattr(self.defaults, name)
        if maximum is None:
            maximum = getattr(self.maxima, name)
        return default, maximum

    def _check_defaults(self, user: str | None) -> None:
        for name in ("cpu", "memory", "pids", "timeout"):
            default, maximum = self._bounds(user, name)
            if default is not None and maximum is not None and default > maximum:
                whose = f"for {user}" if user else "(server)"
                raise ValueError(f"default {name} limit {whose} is over its maximum")


def _account(name: str, what: str) -> Account:
    try:
        return Account.lookup(name)
    except KeyError:
        raise ValueError(f"{what}: no Unix account {name!r} on this host") from None
