"""jobd's log lines: one record per line, whatever the text a client managed to put in one.

Log records quote values that clients control (commands, certificate names, error texts). A
newline in one would start what looks like a record of its own, a forged audit line; a terminal
escape would act on the operator's terminal. So every control character in a message is written
as an escape, and every further line of a traceback is indented: a line that starts at column 0
is always the start of a real record.
"""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["SafeFormatter", "configure_logging", "escape_controls"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# C0 controls except tab, DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_INDENT = "    "


def escape_controls(text: str) -> str:
    """`text` with each control character written as \\xNN or \\uNNNN."""
    return _CONTROLS.sub(_escape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class SafeFormatter(logging.Formatter):
    """A Formatter whose output never has a line that its record did not start."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join(_INDENT + escape_controls(line) for line in text.splitlines())


def configure_logging(verbose: bool) -> None:
    """Log to stderr through SafeFormatter; debug with `verbose`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.captureWarnings(True)  # as records too: no line on stderr that is not one
    for noisy in ("hpack", "h2"):  # frame-level chatter is not what -v is for
        logging.getLogger(noisy).setLevel(logging.INFO)
