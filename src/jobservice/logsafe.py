"""Log lines that cannot be forged: one record per line, whatever text a caller put in one.

Log records quote values that callers control (commands, owners, certificate names, error
texts). A newline in one would start what looks like a record of its own, a forged audit line;
a terminal escape would act on the operator's terminal. So `SafeFormatter` writes every control
character in a message as an escape and indents every further line of a traceback: a line that
starts at column 0 is always the start of a real record. `quote_field` keeps one field of a
structured line (the audit line) one field. Standard library only, so that every layer, the
library's own included, can use it.
"""

from __future__ import annotations

import json
import logging
import re

__all__ = [
    "CONTROLS",
    "LOG_FIELDS",
    "SafeFormatter",
    "escape_controls",
    "escape_one",
    "quote_field",
]

# A record logged with `extra={LOG_FIELDS: {...}}` carries structured fields (the audit line's):
# the text format shows its message, a JSON log writes each field as a key of its own.
LOG_FIELDS = "fields"

# C0 controls except tab, DEL, C1 controls, the Unicode line and paragraph separators, and the
# bidirectional controls: overrides, isolates and marks (which reorder what a reader sees of
# the text around them: U+202E shows "txt.exe" as "exe.txt").
CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_INDENT = "    "
_PLAIN = re.compile(r"[\w.@+-]+", re.ASCII)


def quote_field(value: str) -> str:
    """`value` as is when it is one plain word, else JSON-quoted: one log field stays one.

    Spaces are written `\\u0020` (still JSON), so that no field a caller supplies can hold
    `audit user=charlie` and match a grep for charlie's audit lines; JSON's own escapes cover
    controls and every non-ASCII character (bidirectional controls included).
    """
    return value if _PLAIN.fullmatch(value) else json.dumps(value).replace(" ", "\\u0020")


def escape_controls(text: str) -> str:
    """`text` with each control character written as \\xNN or \\uNNNN."""
    return CONTROLS.sub(escape_one, text)


def escape_one(match: re.Match[str]) -> str:
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
