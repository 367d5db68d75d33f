"""The Unix account a job runs as, resolved once from the user database."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

__all__ = ["Account"]


@dataclass(frozen=True, slots=True)
class Account:
    """A Unix account: name, ids and home (issue 13 makes the home a job's default directory)."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str) -> Account:
        """The account called `name` (or with that numeric uid); KeyError if there is none."""
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    @classmethod
    def current(cls) -> Account:
        """The account this process runs as."""
        return cls.lookup(str(os.geteuid()))

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def is_current(self) -> bool:
        """Whether it is this process's own account (nothing to switch)."""
        return self.uid == os.geteuid() and self.gid == os.getegid()
