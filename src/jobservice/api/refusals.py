"""Why a TLS handshake was refused, in one classification, and a log of refusals kept readable.

A client that cannot connect sees little (in TLS 1.3 a rejected certificate is just a closed
connection), so the operator's log must say why: expired, not yet valid, not for clientAuth,
not from our CA, no certificate at all. `classify` is the one place that decides the reason
(metrics count by it too); `RefusalLog` writes one line per reason at most every `interval`
seconds with a count of those left out, since a hostile network can refuse handshakes as fast as
it likes.
"""

from __future__ import annotations

import enum
import logging
import ssl
import time
from collections import Counter

__all__ = ["RefusalLog", "RefusalReason", "classify"]

log = logging.getLogger("jobservice.connections")


class RefusalReason(enum.Enum):
    """Why a handshake failed; the value is the phrase the log shows (a bounded label set)."""

    CERT_EXPIRED = "client certificate has expired"
    CERT_NOT_YET_VALID = "client certificate is not yet valid"
    CERT_PURPOSE = "client certificate is not for clientAuth"
    CERT_REVOKED = "client certificate is revoked (--crl)"
    CERT_UNTRUSTED = "client certificate is not issued by our CA"
    CERT_INVALID = "client certificate failed verification"
    NO_CERT = "client sent no certificate"
    PEER_REFUSED_US = "client refused our certificate (its CA file or the name it dialled?)"
    PROTOCOL = "TLS version, cipher suite or key exchange outside the policy"
    NOT_TLS = "not TLS"
    TIMEOUT = "handshake not finished in time"
    CLOSED = "client left during the handshake"
    OTHER = "TLS handshake failed"


# OpenSSL's X509_V_ERR_* codes (x509_vfy.h), stable across versions.
_VERIFY_CODES = {
    9: RefusalReason.CERT_NOT_YET_VALID,
    10: RefusalReason.CERT_EXPIRED,
    26: RefusalReason.CERT_PURPOSE,  # X509_V_ERR_INVALID_PURPOSE
    23: RefusalReason.CERT_REVOKED,  # X509_V_ERR_CERT_REVOKED
    2: RefusalReason.CERT_UNTRUSTED,  # UNABLE_TO_GET_ISSUER_CERT
    18: RefusalReason.CERT_UNTRUSTED,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: RefusalReason.CERT_UNTRUSTED,  # SELF_SIGNED_CERT_IN_CHAIN
    20: RefusalReason.CERT_UNTRUSTED,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: RefusalReason.CERT_UNTRUSTED,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    7: RefusalReason.CERT_UNTRUSTED,  # CERT_SIGNATURE_FAILURE
}
# OpenSSL's reason strings for the other failures, by what they mean.
_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": RefusalReason.NO_CERT,
    "UNSUPPORTED_PROTOCOL": RefusalReason.PROTOCOL,
    "NO_SHARED_CIPHER": RefusalReason.PROTOCOL,
    "NO_SUITABLE_KEY_SHARE": RefusalReason.PROTOCOL,
    "NO_SHARED_GROUPS": RefusalReason.PROTOCOL,
    "NO_SUITABLE_SIGNATURE_ALGORITHM": RefusalReason.PROTOCOL,
    "NO_PROTOCOLS_AVAILABLE": RefusalReason.PROTOCOL,
    "WRONG_VERSION_NUMBER": RefusalReason.NOT_TLS,
    "HTTP_REQUEST": RefusalReason.NOT_TLS,
    "UNEXPECTED_EOF_WHILE_READING": RefusalReason.CLOSED,
}


def classify(exc: BaseException) -> RefusalReason:
    """The reason a server-side handshake ended with `exc`."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_CODES.get(exc.verify_code, RefusalReason.CERT_INVALID)
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or "")
        if reason.startswith(("TLSV1_ALERT_", "SSLV3_ALERT_")):
            return RefusalReason.PEER_REFUSED_US  # the client's alert: it did not accept us
        return _REASONS.get(reason, RefusalReason.OTHER)
    if isinstance(exc, (TimeoutError, ConnectionAbortedError)):
        return RefusalReason.TIMEOUT  # asyncio's handshake deadline aborts the connection
    if isinstance(exc, (ConnectionError, EOFError)):
        return RefusalReason.CLOSED
    return RefusalReason.OTHER


def _detail(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return str(exc) or type(exc).__name__


class RefusalLog:
    """Logs refused handshakes: per reason, one line every `interval` seconds at most."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[RefusalReason, float] = {}
        self._held = Counter[RefusalReason]()

    def note(self, peer: str, exc: BaseException) -> RefusalReason:
        """Record one refusal from `peer`; log it unless its reason was logged just now."""
        reason = classify(exc)
        now = time.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < self.interval:
            self._held[reason] += 1
            return reason
        self._last[reason] = now
        held = self._held.pop(reason, 0)
        more = f" ({held} more like it in the last {self.interval:g} s not shown)" if held else ""
        log.warning(
            "refused TLS handshake from %s: %s (%s)%s", peer, reason.value, _detail(exc), more
        )
        return reason
