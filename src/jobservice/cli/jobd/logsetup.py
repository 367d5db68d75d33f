"""jobd's logging: every record to stderr, as forgery-proof text lines or as JSON objects."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from jobservice.logsafe import LOG_FIELDS, SafeFormatter

__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging"]

LOG_FORMATS = ("text", "json")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a record's fields as keys.

    The audit line's fields (user, rpc, job, result, peer, ms) come as keys of their own, for
    ingestion. `json.dumps` escapes every control character and, with `ensure_ascii`, U+2028
    and U+2029, so a value a client chose cannot start a line here either.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, LOG_FIELDS, None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure_logging(verbose: bool, log_format: str = "text") -> None:
    """Log to stderr as `log_format` (one of LOG_FORMATS); debug with `verbose`."""
    handler = logging.StreamHandler(sys.stderr)
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else SafeFormatter(_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.captureWarnings(True)  # as records too: no line on stderr that is not one
    for noisy in ("hpack", "h2"):  # frame-level chatter is not what -v is for
        logging.getLogger(noisy).setLevel(logging.INFO)
    # grpclib reports a client that hangs up mid-call (a follower's Ctrl-C) as "Request was
    # cancelled: Stream reset by remote party", which reads as a server error; the audit line
    # already says result=CANCELLED. Its warnings and errors still show.
    logging.getLogger("grpclib.server").setLevel(logging.WARNING)
