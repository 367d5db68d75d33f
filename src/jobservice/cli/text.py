"""Words from others shown as a shell would read them back, control characters escaped.

A job's command comes from another user. Printed as it is, an escape sequence in it would act on
the reader's terminal (rewrite rows, set the window title). `jobctl list` shows each word as a
shell word, and a word with a control character in bash's $'...' form, as `ps` escapes them
and so that it can be pasted back. Other text from the server: `logsafe.escape_controls`.
"""

from __future__ import annotations

import re

from jobservice.logsafe import CONTROLS, escape_one

__all__ = ["shell_join"]

# In a shell word, tab too: it would break a table's columns.
_WORD_CONTROLS = re.compile(f"{CONTROLS.pattern[:-1]}\t]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\e"}


def shell_join(words: list[str] | tuple[str, ...]) -> str:
    """`words` as one line a shell reads back as the same words; controls as bash's $'\\e'."""
    import shlex  # noqa: PLC0415 (only `list` needs it: docs/cli.md "Cold start")

    return " ".join(_ansi_c_quote(w) if _WORD_CONTROLS.search(w) else shlex.quote(w) for w in words)


def _ansi_c_quote(word: str) -> str:
    """bash's $'...' form: every control escaped, and backslash and quote too."""
    body = word.replace("\\", "\\\\").replace("'", "\\'")
    return "$'" + _WORD_CONTROLS.sub(lambda m: _NAMED.get(m.group(), escape_one(m)), body) + "'"
