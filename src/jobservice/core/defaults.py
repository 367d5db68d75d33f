"""What a job gets that its request leaves unset: the account's home and a PATH, as with ssh.

A request with no directory ran in `/`, and one with no environment ran with none at all, so
`jobctl run -- make test` failed twice over (no Makefile in `/`, and make found no `echo` with
no PATH). ssh starts a remote command in the account's home with a small environment made from
the account, never from the server's own; jobd does the same for what a request leaves unset.
"""

from __future__ import annotations

import os

from jobservice.core.confine.account import Account
from jobservice.core.spec import DEFAULT_PATH

__all__ = ["JobDefaults", "defaults_for"]


class JobDefaults:
    """The directory and environment variables a job gets when its request sets none."""

    def __init__(self, home: str) -> None:
        self.dir = home
        self.env = {"PATH": DEFAULT_PATH, "HOME": home}


def defaults_for(account: Account | None = None) -> JobDefaults:
    """Defaults for a job run as `account` (None: the account jobd runs as).

    The home directory is the account's, or `/` when it has none that exists (system accounts
    such as nobody, whose home is /nonexistent).
    """
    if account is None:
        try:
            account = Account.current()
        except KeyError:  # a uid with no entry in the user database
            return JobDefaults("/")
    home = account.home
    return JobDefaults(home if os.path.isabs(home) and os.path.isdir(home) else "/")
