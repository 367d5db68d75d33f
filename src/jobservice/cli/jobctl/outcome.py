"""How a jobctl run ends: its exit status, and every failure as one line on stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from jobservice.cli.jobctl.exitcodes import CliError, ExitCode

__all__ = ["conclude", "echo_error", "quiet_stdout"]


def conclude(command: Callable[[], int]) -> int:
    """Run `command` and return its exit status; never lets a traceback reach the user.

    Both ways of running a command share this: through click, and the plain `status` line
    that skips click (plain_status.py).
    """
    try:
        code = command()
        sys.stdout.flush()
    except CliError as exc:
        if exc.code is ExitCode.BROKEN_PIPE:
            quiet_stdout()
        elif exc.message:
            echo_error(exc.message)
        return int(exc.code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        quiet_stdout()
        return int(ExitCode.BROKEN_PIPE)
    except Exception as exc:  # a bug in jobctl: still one readable line, unless debugging
        if os.environ.get("JOBCTL_DEBUG"):
            raise
        echo_error(f"jobctl: internal error: {exc!r} (JOBCTL_DEBUG=1 shows details)")
        return int(ExitCode.INTERNAL)
    return code


def echo_error(message: str) -> None:
    """`message` on stderr, as click writes it (escape sequences dropped unless a terminal)."""
    import click  # noqa: PLC0415 (already loaded unless this is the plain `status` line)

    click.echo(message, err=True)


def quiet_stdout() -> None:
    """stdout's reader has gone (`| head`): point stdout at /dev/null so the exit flush is quiet.

    This is the recipe from the Python docs' "Note on SIGPIPE".
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
