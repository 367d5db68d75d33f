"""`jobd agent --run-as`: a start that names no account never runs as the agent's own root."""

from __future__ import annotations

import os

import click
import pytest

from jobservice.cli.jobd.agent import _default_account

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent's default needs root")


def test_a_root_agent_runs_unnamed_starts_as_nobody() -> None:
    account = _default_account(None)
    assert account is not None
    assert account.name == "nobody"
    assert not account.is_root


def test_run_as_names_the_account() -> None:
    account = _default_account("daemon")
    assert account is not None
    assert account.name == "daemon"


@pytest.mark.parametrize("name", ["root", "0"])
def test_run_as_root_is_refused(name: str) -> None:
    with pytest.raises(click.BadParameter, match="root would run every unnamed job as root"):
        _default_account(name)


def test_an_unknown_account_is_refused() -> None:
    with pytest.raises(click.BadParameter, match="no account 'no-such-user-i15'"):
        _default_account("no-such-user-i15")
