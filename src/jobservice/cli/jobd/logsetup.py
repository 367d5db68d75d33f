"""jobd's logging: every record to stderr through the forgery-proof `SafeFormatter`."""

from __future__ import annotations

import logging
import sys

from jobservice.logsafe import SafeFormatter

__all__ = ["configure_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(verbose: bool) -> None:
    """Log to stderr through SafeFormatter; debug with `verbose`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.captureWarnings(True)  # as records too: no line on stderr that is not one
    for noisy in ("hpack", "h2"):  # frame-level chatter is not what -v is for
        logging.getLogger(noisy).setLevel(logging.INFO)
    # grpclib reports a client that hangs up mid-call (a follower's Ctrl-C) as "Request was
    # cancelled: Stream reset by remote party", which reads as a server error; the audit line
    # already says result=CANCELLED. Its warnings and errors still show.
    logging.getLogger("grpclib.server").setLevel(logging.WARNING)
