"""The authorization policy: the full allows() matrix, and strict loading of policy files."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from jobservice.security.errors import PolicyError
from jobservice.security.policy import Entity, Grant, Permission, Policy, Role

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "policy.example.toml"
START, SEE = Permission.START_STOP, Permission.STATUS_OUTPUT

# (user, permission, whose job) -> allowed, for every combination; "own" means owner == user.
EXPECTED = {
    ("alice", START, "own"): True,
    ("alice", START, "other"): False,
    ("alice", SEE, "own"): True,
    ("alice", SEE, "other"): False,
    ("bob", START, "own"): False,
    ("bob", START, "other"): False,
    ("bob", SEE, "own"): True,
    ("bob", SEE, "other"): True,
    ("charlie", START, "own"): True,
    ("charlie", START, "other"): True,
    ("charlie", SEE, "own"): True,
    ("charlie", SEE, "other"): True,
    ("mallory", START, "own"): False,
    ("mallory", START, "other"): False,
    ("mallory", SEE, "own"): False,
    ("mallory", SEE, "other"): False,
}


def test_matrix_is_complete() -> None:
    users = ["alice", "bob", "charlie", "mallory"]
    assert set(EXPECTED) == set(itertools.product(users, Permission, ["own", "other"]))


@pytest.mark.parametrize(("user", "permission", "whose"), list(EXPECTED))
def test_default_policy_matrix(user: str, permission: Permission, whose: str) -> None:
    policy = Policy.default()
    # Check "other" against every other user, including one the policy does not know.
    owners = (
        [user] if whose == "own" else [u for u in ("alice", "bob", "charlie", "zed") if u != user]
    )
    for owner in owners:
        assert policy.allows(user, permission, owner) is EXPECTED[(user, permission, whose)], owner


def test_known_users() -> None:
    policy = Policy.default()
    assert [u for u in ("alice", "bob", "charlie") if policy.is_known(u)] == [
        "alice",
        "bob",
        "charlie",
    ]
    assert not policy.is_known("mallory")
    assert not policy.is_known("")
    assert not policy.is_known("Alice")  # exact match: CNs are case-sensitive
    assert policy.grants_of("mallory") == frozenset()


def test_roles_and_entities() -> None:
    assert Role.TASK_MANAGER.permissions == {START, SEE}
    assert Role.ANALYST.permissions == {SEE}
    assert Entity.ALL.covers("bob", "alice")
    assert Entity.SELF.covers("alice", "alice")
    assert not Entity.SELF.covers("alice", "bob")


def test_several_grants_combine() -> None:
    policy = Policy(
        {
            "dana": frozenset(
                {Grant(Entity.SELF, Role.TASK_MANAGER), Grant(Entity.ALL, Role.ANALYST)}
            )
        }
    )
    assert policy.allows("dana", START, "dana")
    assert policy.allows("dana", SEE, "alice")
    assert not policy.allows("dana", START, "alice")


def test_policy_is_immutable() -> None:
    users = {"alice": frozenset({Grant(Entity.SELF, Role.TASK_MANAGER)})}
    policy = Policy(users)
    users["mallory"] = frozenset({Grant(Entity.ALL, Role.TASK_MANAGER)})
    assert not policy.is_known("mallory")
    with pytest.raises(TypeError):
        policy.users["mallory"] = frozenset()  # type: ignore[index]


def test_example_file_equals_the_default() -> None:
    assert Policy.load(EXAMPLE) == Policy.default()


def _load(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return Policy.load(path)


def test_load_a_good_file(tmp_path: Path) -> None:
    policy = _load(
        tmp_path,
        """
        [users.alice]
        grants = [{ entity = "self", role = "task-manager" }]

        [users."ops@example.org"]
        grants = [
            { entity = "all", role = "analyst" },
            { entity = "self", role = "task-manager" },
        ]
        """,
    )
    assert policy.grants_of("ops@example.org") == {
        Grant(Entity.ALL, Role.ANALYST),
        Grant(Entity.SELF, Role.TASK_MANAGER),
    }
    assert policy.allows("ops@example.org", SEE, "alice")
    assert not policy.allows("ops@example.org", START, "alice")
    assert not policy.is_known("bob")  # a file replaces the default table, it does not extend it


_GRANT = '{ entity = "self", role = "task-manager" }'
BAD_FILES = {
    "not-toml": ("[users.alice\n", "not valid TOML"),
    "empty-file": ("", "'users' must be a table with at least one user"),
    "no-users": ("[users]\n", "'users' must be a table with at least one user"),
    "users-not-a-table": ('users = "alice"\n', "'users' must be a table"),
    "unknown-top-level-key": (
        f"roles = 1\n[users.alice]\ngrants = [{_GRANT}]\n",
        "unknown key(s) 'roles' in the top level",
    ),
    "user-not-a-table": ("[users]\nalice = 1\n", "'users.alice' must be a table"),
    "unknown-user-key": (
        f"[users.alice]\ngrants = [{_GRANT}]\nadmin = true\n",
        "unknown key(s) 'admin' in 'users.alice'",
    ),
    "misspelt-grants": (
        f"[users.alice]\ngrant = [{_GRANT}]\n",
        "unknown key(s) 'grant' in 'users.alice'",
    ),
    "no-grants": ("[users.alice]\n", "'users.alice.grants' must be a non-empty list"),
    "empty-grants": (
        "[users.alice]\ngrants = []\n",
        "'users.alice.grants' must be a non-empty list",
    ),
    "grants-not-a-list": (
        f"[users.alice]\ngrants = {_GRANT}\n",
        "'users.alice.grants' must be a non-empty list",
    ),
    "grant-not-a-table": (
        '[users.alice]\ngrants = ["task-manager"]\n',
        "'users.alice.grants[0]' must be a table",
    ),
    "unknown-grant-key": (
        '[users.alice]\ngrants = [{ entity = "self", role = "analyst", scope = "x" }]\n',
        "unknown key(s) 'scope' in 'users.alice.grants[0]'",
    ),
    "missing-role": (
        '[users.alice]\ngrants = [{ entity = "self" }]\n',
        "'users.alice.grants[0]' has no 'role'",
    ),
    "missing-entity": (
        '[users.alice]\ngrants = [{ role = "analyst" }]\n',
        "'users.alice.grants[0]' has no 'entity'",
    ),
    "unknown-role": (
        '[users.bob]\ngrants = [{ entity = "all", role = "admin" }]\n',
        "'users.bob.grants[0].role': unknown role 'admin' (one of 'task-manager', 'analyst')",
    ),
    "unknown-entity": (
        '[users.bob]\ngrants = [{ entity = "everyone", role = "analyst" }]\n',
        "'users.bob.grants[0].entity': unknown entity 'everyone' (one of 'self', 'all')",
    ),
    "role-wrong-case": (
        '[users.bob]\ngrants = [{ entity = "all", role = "Analyst" }]\n',
        "unknown role 'Analyst'",
    ),
    "role-wrong-type": (
        '[users.bob]\ngrants = [{ entity = "all", role = 1 }]\n',
        "'users.bob.grants[0].role' must be a string",
    ),
    "second-grant-bad": (
        f'[users.bob]\ngrants = [{_GRANT}, {{ entity = "all", role = "root" }}]\n',
        "'users.bob.grants[1].role': unknown role 'root'",
    ),
    "empty-user-name": (f'[users.""]\ngrants = [{_GRANT}]\n', "invalid user name ''"),
    "control-char-user-name": (
        f'[users."al\\u0000ice"]\ngrants = [{_GRANT}]\n',
        "invalid user name",
    ),
    "padded-user-name": (f'[users." alice"]\ngrants = [{_GRANT}]\n', "invalid user name ' alice'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_refused_naming_file_and_key(tmp_path: Path, case: str) -> None:
    text, message = BAD_FILES[case]
    with pytest.raises(PolicyError) as info:
        _load(tmp_path, text)
    assert str(info.value).startswith(str(tmp_path / "policy.toml")), info.value
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"cannot read policy file .*No such file"):
        Policy.load(tmp_path / "absent.toml")
