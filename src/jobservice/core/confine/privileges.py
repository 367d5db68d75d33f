"""no_new_privs for this process, so that no job it starts can gain privileges through exec."""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["set_no_new_privs"]

_PR_SET_NO_NEW_PRIVS = 38


def set_no_new_privs() -> bool:
    """Set PR_SET_NO_NEW_PRIVS on this process; every child inherits it and cannot undo it.

    A server that starts jobs never needs a setuid program itself, and setting it here (once,
    before the first job) costs no job anything. Returns whether the kernel accepted it.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    result: int = libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return result == 0
