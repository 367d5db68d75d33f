"""jobd's files kept from other accounts: the data directory tightened, key files checked.

Jobs will run as other accounts (run-as), and a job must not read other users' output, rewrite
it, or read a key: the data directory and its logs are jobd's alone (0700; logs and the
database are created 0600), the server key should be 0600, and the CA key does not belong on
the server at all (with it, any identity can be minted).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["check_key_files", "make_private"]

log = logging.getLogger("jobservice.jobd")

_OTHERS = 0o077  # any permission for the group or other accounts


def make_private(data_dir: Path) -> None:
    """Take every group and other permission off the data directory and its logs directory."""
    for directory in (data_dir, data_dir / "logs"):
        try:
            mode = stat.S_IMODE(directory.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & _OTHERS:
            os.chmod(directory, mode & ~_OTHERS)
            log.warning(
                "%s was open to other accounts (mode %o): now %o, so that no job running as "
                "another account can read or change jobd's files",
                directory,
                mode,
                mode & ~_OTHERS,
            )


def check_key_files(key: Path, ca: Path) -> None:
    """Warn about a server key others may read and a CA key lying beside the CA certificate."""
    try:
        mode = stat.S_IMODE(key.stat().st_mode)
    except OSError:
        return  # loading it will say what is wrong
    if mode & _OTHERS:
        log.warning("server key %s is open to other accounts (mode %o): chmod 600 it", key, mode)
    beside = ca.parent / "ca.key"
    if beside.exists():
        log.warning(
            "a CA key lies beside the CA certificate (%s): whoever reads it can mint any "
            "identity; keep it off this host (jobd needs only the CA certificate)",
            beside,
        )
