"""The budgets of jobd's HTTP/2 connections: resets by either side, frames that open no request.

Three attacks shaped this module, each costing a client one small frame and the server much more:
rapid reset (CVE-2023-44487: open a stream, reset it, repeat), "MadeYouReset" (2025: make the
*server* reset a stream by breaking the protocol on it, e.g. an empty DATA frame after
END_STREAM, so that a budget of client resets never sees it), and floods of frames that open no
request and use no flow-control window (PING, SETTINGS, WINDOW_UPDATE, PRIORITY, empty DATA),
whose acknowledgements are written even while the client reads nothing. As nginx, Envoy and
Go's net/http2 do, each connection gets a budget of such frames and is closed with
ENHANCE_YOUR_CALM when it overspends. The hooks into grpclib that see requests and resets are
in `_upstream.grpclib_h2`; this module holds the numbers and reads frame headers itself.
"""

from __future__ import annotations

__all__ = [
    "CONTROL_BURST",
    "CONTROL_EARNED_PER_KIB",
    "CONTROL_RATE",
    "REPLIES_WHILE_PAUSED",
    "RESET_BURST",
    "RESET_RATE",
    "FrameMeter",
]

# Streams reset while the server still works on them, by either side: a burst, then a rate.
# A client cancelling its own calls resets a few; thousands a second is an attack.
RESET_BURST = 200
RESET_RATE = 50.0  # per second
# Frames that cost the server work but open no request and use no window: a burst, a rate, and
# a share earned by the data the server sent (a reader acknowledges it with WINDOW_UPDATEs, and
# grpcio's bandwidth probe with PINGs). Envoy allows 10 WINDOW_UPDATEs per DATA frame sent and
# nginx about 10,000 frames per connection; a gRPC client sends a handful a second at rest.
CONTROL_BURST = 1000
CONTROL_RATE = 100.0  # per second
CONTROL_EARNED_PER_KIB = 0.25  # 4 frames per 16 KiB DATA frame sent
# PINGs and SETTINGS each make the server queue an acknowledgement, written even while the
# transport is paused because the client does not read (Go closes at 10,000 queued control
# frames). Past this many during one pause, the connection is dropped without a word: it could
# not be read anyway.
REPLIES_WHILE_PAUSED = 256

_PREFACE_SIZE = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", before the first frame
_HEADER_SIZE = 9
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
_PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 0x6, 0x7, 0x8, 0x9
_END_STREAM = 0x1
_ACK = 0x1
# Frames that neither open a request nor carry flow-controlled data (unknown types included:
# RFC 9113 has them ignored, which still costs a parse). Not RST_STREAM: resetting a stream in
# service counts in the reset budget, and a client's h2 answers every DATA frame that reaches a
# stream it has cancelled with one (a fast follower that cancels sends thousands, legitimately),
# which jobd's h2 ignores without a word.
_FREE = frozenset(range(256)) - {_DATA, _HEADERS, _RST_STREAM, _GOAWAY, _CONTINUATION}


class FrameMeter:
    """Reads the frame headers of a client's byte stream, as it arrives, to count what is free.

    It sees every frame, including those h2 answers itself without telling its user (an
    RST_STREAM for each frame on a stream it reset), and costs a few microseconds per frame.
    """

    def __init__(self) -> None:
        self._skip = _PREFACE_SIZE
        self._head = b""

    def scan(self, data: bytes) -> tuple[int, int]:
        """(free frames, frames the server must acknowledge) that begin in `data`."""
        free = replies = 0
        at, end = 0, len(data)
        while at < end:
            if self._skip:
                step = min(self._skip, end - at)
                self._skip -= step
                at += step
                continue
            want = _HEADER_SIZE - len(self._head)
            self._head += data[at : at + want]
            at += want
            if len(self._head) < _HEADER_SIZE:
                break
            head, self._head = self._head, b""
            length = int.from_bytes(head[:3], "big")
            kind, flags = head[3], head[4]
            self._skip = length
            if kind in _FREE or (kind == _DATA and not length and not flags & _END_STREAM):
                free += 1
            if kind in (_PING, _SETTINGS) and not flags & _ACK:
                replies += 1
        return free, replies
