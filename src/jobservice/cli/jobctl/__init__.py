"""jobctl, the command-line client of jobd: `main` is the console script, app.py the click app."""

from __future__ import annotations

import atexit
import gc
import os
import sys

__all__ = ["PROGRAM_GC_THRESHOLD", "main"]

# Cycle collection after this many new container objects, instead of Python's 700; see below.
PROGRAM_GC_THRESHOLD = 50_000


def _collect_as_a_short_lived_program() -> None:
    """Tune the cycle collector for a process that starts, makes a call or two and exits.

    Start-up creates some 100k objects that live until exit (modules, classes, protobuf and
    h2 tables); at the default threshold the collector traverses them again and again and
    finds nothing to free, and at exit the interpreter's final collections traverse them once
    more. A high threshold keeps collection on (a long `output` stays bounded in memory) but
    rare; freezing every object at exit lets the interpreter skip them (measured in
    docs/cli.md, "Cold start").
    """
    gc.set_threshold(PROGRAM_GC_THRESHOLD)
    atexit.register(gc.freeze)


def main(argv: list[str] | None = None) -> int:
    """Run jobctl and return its exit status; never lets a traceback reach the user.

    With `argv` None jobctl is the program (the console script, `python -m`): it reads
    `sys.argv`, and tunes the process for a short life before anything else is imported.
    """
    if argv is None:
        _collect_as_a_short_lived_program()
    # Imported here, after the tuning; the plain `status` line needs no click at all.
    from jobservice.cli.jobctl.plain_status import parse_plain  # noqa: PLC0415

    plain = parse_plain(sys.argv[1:] if argv is None else argv, os.environ)
    if plain is not None:
        from jobservice.cli.jobctl.outcome import conclude  # noqa: PLC0415

        return conclude(plain.run)
    from jobservice.cli.jobctl.app import run  # noqa: PLC0415

    return run(argv)
