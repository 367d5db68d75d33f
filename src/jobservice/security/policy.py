"""Who may do what to whose jobs: users hold grants, each a role over an entity.

Permissions are ``start/stop`` and ``status/output``. A role is a set of permissions: the
task manager has both, the analyst only ``status/output``. An entity says whose jobs a grant
covers: ``self`` the user's own jobs, ``all`` every job. A user may act on a job when one of
their grants has a role with the permission and an entity covering the job's owner. Starting
a job is always for the caller's own ``self`` (``allows(user, START_STOP, owner=user)``). A
user not in the policy may do nothing.

A policy file is TOML with one table per user and nothing else::

    [users.alice]
    grants = [{ entity = "self", role = "task-manager" }]

    [users.bob]
    grants = [{ entity = "all", role = "analyst" }]

``entity`` is ``"self"`` or ``"all"``; ``role`` is ``"task-manager"`` or ``"analyst"``. A user
needs at least one grant. A user's table may also set the account their jobs run as and their
limits (``run_as``, ``limits``, ``max_limits``: see `jobpolicy`). Unknown keys, names or types
are errors (PolicyError names the file and the key), so a typo never silently grants or
withholds anything.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from jobservice.security.errors import PolicyError
from jobservice.security.jobpolicy import JOB_KEYS, UserJobs, parse_user_jobs

__all__ = ["Entity", "Grant", "Permission", "Policy", "Role"]


class Permission(enum.Enum):
    """An action on a job."""

    START_STOP = "start/stop"
    STATUS_OUTPUT = "status/output"


class Role(enum.Enum):
    """A named set of permissions."""

    TASK_MANAGER = "task-manager"
    ANALYST = "analyst"

    @property
    def permissions(self) -> frozenset[Permission]:
        """The permissions this role carries."""
        return _ROLE_PERMISSIONS[self]


class Entity(enum.Enum):
    """Whose jobs a grant covers."""

    SELF = "self"
    ALL = "all"

    def covers(self, user: str, owner: str) -> bool:
        """Whether a grant of ``user`` over this entity reaches a job owned by ``owner``."""
        return self is Entity.ALL or owner == user


_E = TypeVar("_E", Entity, Role)

_ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {
        Role.TASK_MANAGER: frozenset({Permission.START_STOP, Permission.STATUS_OUTPUT}),
        Role.ANALYST: frozenset({Permission.STATUS_OUTPUT}),
    }
)


@dataclass(frozen=True)
class Grant:
    """One role held over one entity."""

    entity: Entity
    role: Role


@dataclass(frozen=True)
class Policy:
    """The grants of every known user; immutable once built."""

    users: Mapping[str, frozenset[Grant]] = field(default_factory=dict)
    jobs: Mapping[str, UserJobs] = field(default_factory=dict)  # users with job settings

    def __post_init__(self) -> None:
        # A read-only copy, so a caller's dict cannot change the policy afterwards.
        frozen = MappingProxyType({u: frozenset(g) for u, g in self.users.items()})
        object.__setattr__(self, "users", frozen)
        object.__setattr__(self, "jobs", MappingProxyType(dict(self.jobs)))

    @classmethod
    def default(cls) -> Policy:
        """The original design's example table, as in docs/policy.example.toml."""
        return cls(
            {
                "alice": frozenset({Grant(Entity.SELF, Role.TASK_MANAGER)}),
                "bob": frozenset({Grant(Entity.ALL, Role.ANALYST)}),
                "charlie": frozenset({Grant(Entity.ALL, Role.TASK_MANAGER)}),
            }
        )

    @classmethod
    def load(cls, path: Path) -> Policy:
        """Read a policy file (format in the module docstring); PolicyError if malformed."""
        try:
            with Path(path).open("rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
        source = str(path)
        users = _parse_users(data, source)
        jobs = {
            name: parse_user_jobs(entry, source, f"users.{name}")
            for name, entry in data["users"].items()
            if JOB_KEYS & set(entry)
        }
        return cls(users, jobs)

    def is_known(self, user: str) -> bool:
        """Whether the policy names this user at all."""
        return user in self.users

    def jobs_of(self, user: str) -> UserJobs:
        """The user's job settings (run-as account, limits); empty ones defer to the server."""
        return self.jobs.get(user, UserJobs())

    def grants_of(self, user: str) -> frozenset[Grant]:
        """The user's grants; empty for an unknown user."""
        return self.users.get(user, frozenset())

    def allows(self, user: str, permission: Permission, owner: str) -> bool:
        """Whether ``user`` holds ``permission`` on a job owned by ``owner``."""
        return any(
            permission in grant.role.permissions and grant.entity.covers(user, owner)
            for grant in self.grants_of(user)
        )


def _parse_users(data: Mapping[str, Any], source: str) -> dict[str, frozenset[Grant]]:
    """The users table of a parsed policy file, strictly checked."""
    _no_unknown_keys(data, {"users"}, source, "")
    users = data.get("users")
    if not isinstance(users, dict) or not users:
        raise PolicyError(f"{source}: 'users' must be a table with at least one user")
    return {
        _user_name(name, source): _parse_user(entry, source, f"users.{name}")
        for name, entry in users.items()
    }


def _parse_user(entry: Any, source: str, where: str) -> frozenset[Grant]:
    """One ``[users.NAME]`` table."""
    if not isinstance(entry, dict):
        raise PolicyError(f"{source}: '{where}' must be a table with a 'grants' list")
    _no_unknown_keys(entry, {"grants", *JOB_KEYS}, source, where)
    grants = entry.get("grants")
    if not isinstance(grants, list) or not grants:
        raise PolicyError(f"{source}: '{where}.grants' must be a non-empty list of grants")
    return frozenset(_parse_grant(g, source, f"{where}.grants[{i}]") for i, g in enumerate(grants))


def _parse_grant(entry: Any, source: str, where: str) -> Grant:
    """One ``{ entity = ..., role = ... }`` inline table."""
    if not isinstance(entry, dict):
        raise PolicyError(f"{source}: '{where}' must be a table {{ entity = ..., role = ... }}")
    _no_unknown_keys(entry, {"entity", "role"}, source, where)
    return Grant(
        entity=_enum_value(Entity, entry, "entity", source, where),
        role=_enum_value(Role, entry, "role", source, where),
    )


def _enum_value(kind: type[_E], entry: Mapping[str, Any], key: str, source: str, where: str) -> _E:
    """The enum member named by ``entry[key]``."""
    valid = ", ".join(repr(m.value) for m in kind)
    value = entry.get(key)
    if value is None:
        raise PolicyError(f"{source}: '{where}' has no '{key}' (one of {valid})")
    if not isinstance(value, str):
        raise PolicyError(f"{source}: '{where}.{key}' must be a string (one of {valid})")
    try:
        return kind(value)
    except ValueError:
        message = f"{source}: '{where}.{key}': unknown {key} {value!r} (one of {valid})"
        raise PolicyError(message) from None


def _user_name(name: str, source: str) -> str:
    """A user name as certificates can carry it: non-empty, printable, no outer spaces."""
    if not name or not name.isprintable() or name != name.strip():
        raise PolicyError(f"{source}: invalid user name {name!r} in 'users'")
    return name


def _no_unknown_keys(table: Mapping[str, Any], allowed: set[str], source: str, where: str) -> None:
    """Refuse keys the format does not define, so typos are caught rather than ignored."""
    unknown = sorted(set(table) - allowed)
    if unknown:
        place = f"'{where}'" if where else "the top level"
        raise PolicyError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))} in {place} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )
