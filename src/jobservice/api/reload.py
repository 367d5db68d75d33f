"""Live reload (SIGHUP): the policy and the TLS material, each checked before it replaces the old.

Two independent parts, so a mistake in one never holds back the other:

- the policy file (when jobd was given one): parsed and checked whole by `Policy.load`; a file
  that does not load is refused with a log line and the policy in force stays;
- the TLS material, the CA, certificate, key and CRL files together: they make one SSLContext,
  built and checked by the same code as at start; if any file is refused, the context in force
  stays. A new context serves new handshakes only; connections already open keep theirs.

Nothing in flight is dropped, with one exception on purpose: a connection whose client
certificate the new CRL revokes is closed at once, not left to run its streams to their end.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jobservice.security import tls
from jobservice.security.errors import PolicyError, TLSPolicyError
from jobservice.security.policy import Policy

if TYPE_CHECKING:
    from jobservice.api.server import JobServer
    from jobservice.security.crl import RevocationList

__all__ = ["ReloadOutcome", "TLSMaterial", "load_tls", "reload_server"]

log = logging.getLogger("jobservice.reload")


@dataclass(frozen=True)
class TLSMaterial:
    """A server context and the CRL it was built with."""

    context: ssl.SSLContext
    crl: RevocationList | None


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload did with each part: "reloaded", "kept" (refused) or "none" (not used)."""

    policy: str
    tls: str


def load_tls(*, ca: Path, cert: Path, key: Path, crl: Path | None) -> TLSMaterial:
    """The server's TLS material from its files; raises TLSPolicyError (CredentialError) if bad."""
    revocations = None
    if crl is not None:
        # Only with --crl: it brings `cryptography`, which jobd otherwise loads late or never.
        from jobservice.security.crl import load_crl  # noqa: PLC0415

        try:
            ca_pem = Path(ca).read_bytes()
        except OSError as exc:
            raise TLSPolicyError(f"cannot read CA certificate file {ca}: {exc.strerror}") from exc
        revocations = load_crl(crl, ca_pem)
    return TLSMaterial(tls.server_context(ca=ca, cert=cert, key=key, crl=revocations), revocations)


def load_policy(path: Path | None) -> Policy | None:
    """The policy in `path`, or None (logged) if it does not load; None too without a file."""
    if path is None:
        return None
    try:
        return Policy.load(path)
    except PolicyError as exc:
        log.error("reload: kept the policy in force; the new one is refused: %s", exc)
        return None


def reload_tls(*, ca: Path, cert: Path, key: Path, crl: Path | None) -> TLSMaterial | None:
    """New TLS material from the files, or None (logged) if any of them is refused."""
    try:
        return load_tls(ca=ca, cert=cert, key=key, crl=crl)
    except TLSPolicyError as exc:
        log.error("reload: kept the TLS material in force; the new one is refused: %s", exc)
        return None


def reload_server(server: JobServer) -> ReloadOutcome:
    """Reload what `server` was configured from; log, then return, what each part became."""
    config = server.config
    policy = load_policy(config.policy_file)
    if policy is not None:
        try:  # the policy also says how each user's jobs run (account, limits)
            settings = server.bodies.settings.with_policy(policy)
        except ValueError as exc:
            log.error("reload: kept the policy in force; the new one is refused: %s", exc)
            policy = None
        else:
            server.authorizer.use(policy)
            server.bodies.use(settings)
            log.info("reload: policy from %s in force", config.policy_file)
    material = reload_tls(ca=config.ca, cert=config.cert, key=config.key, crl=config.crl)
    if material is not None:
        server.use_tls(material)
        log.info("reload: TLS material in force for new connections")
        if material.crl is not None:
            _close_revoked(server, material.crl)
    outcome = ReloadOutcome(
        policy=_part(config.policy_file is not None, policy is not None),
        tls=_part(True, material is not None),
    )
    log.info("reload complete: policy %s, tls %s", outcome.policy, outcome.tls)
    return outcome


def _part(configured: bool, loaded: bool) -> str:
    if not configured:
        return "none"
    return "reloaded" if loaded else "kept"


def _close_revoked(server: JobServer, crl: RevocationList) -> None:
    """Close every open connection whose client certificate `crl` revokes."""
    from cryptography import x509  # noqa: PLC0415 (loaded already: the CRL needed it)

    def revoked(ssl_object: ssl.SSLObject) -> bool:
        der = ssl_object.getpeercert(binary_form=True)
        return der is not None and crl.revokes(x509.load_der_x509_certificate(der))

    for peer, user in server.close_connections_where(revoked):
        log.warning("closed connection from %s (user %s): certificate revoked", peer, user)
