"""The TLS policy, one for server and client: TLS 1.3, AES-256-GCM-SHA384, P-384, mutual certs.

Every context this module builds:

- speaks TLS 1.3 only (minimum and maximum version);
- offers and accepts exactly one cipher suite, ``TLS_AES_256_GCM_SHA384``, enforced in the
  handshake and verified on the built context (a context where it did not take is refused);
- does key exchange with ECDHE over P-384 only, and accepts only ECDSA P-384 / SHA-384
  handshake signatures;
- requires the peer's certificate, trusting only the CA file it is given (never the system
  store); the client also checks the server's name against its certificate;
- has no compression, renegotiation or session tickets (nothing to resume, every connection
  is fully authenticated);
- advertises ALPN ``h2``, which grpclib needs.

``check_negotiated`` is the second line: the API layer calls it on every connection right
after the handshake, before any HTTP/2 byte, and drops the connection unless the outcome is
TLS 1.3 with the one cipher suite.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from jobservice._upstream import UpstreamChanged, openssl
from jobservice.security.errors import CredentialError, TLSPolicyError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

    from jobservice.security.crl import RevocationList

__all__ = [
    "ALPN_PROTOCOLS",
    "ECDH_GROUP",
    "SIGNATURE_ALGORITHM",
    "TLS_CIPHER",
    "TLS_VERSION",
    "check_negotiated",
    "client_context",
    "server_context",
    "set_alpn_h2",
]

TLS_CIPHER = "TLS_AES_256_GCM_SHA384"
TLS_VERSION = "TLSv1.3"
ECDH_GROUP = "secp384r1"  # OpenSSL's name for P-384
SIGNATURE_ALGORITHM = "ecdsa_secp384r1_sha384"
ALPN_PROTOCOLS = ("h2",)


def server_context(
    *, ca: Path, cert: Path, key: Path, crl: RevocationList | None = None
) -> ssl.SSLContext:
    """A server context that requires a client certificate issued by ``ca``, not in ``crl``.

    With a CRL (checked by ``crl.load_crl``), a revoked client certificate fails the handshake.
    """
    ctx = _base_context(ssl.PROTOCOL_TLS_SERVER, ca=ca, cert=cert, key=key)
    if crl is not None:
        _load_crl(ctx, crl)
    ctx.check_hostname = False  # clients have no host name; identity is their certificate's CN
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0  # in TLS 1.3 OP_NO_TICKET alone still sends stateful tickets
    return ctx


def client_context(*, ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """A client context that presents ``cert`` and checks the server's name and CA."""
    ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT, ca=ca, cert=cert, key=key)
    ctx.check_hostname = True
    return ctx


def check_negotiated(ssl_obj: ssl.SSLObject | ssl.SSLSocket) -> None:
    """Raise TLSPolicyError unless this connection negotiated TLS 1.3 with TLS_CIPHER."""
    version = ssl_obj.version()
    cipher = ssl_obj.cipher()
    suite = cipher[0] if cipher is not None else None
    if version != TLS_VERSION or suite != TLS_CIPHER:
        raise TLSPolicyError(
            f"connection negotiated {version or 'no protocol'} with {suite or 'no cipher'}; "
            f"only {TLS_VERSION} with {TLS_CIPHER} is allowed"
        )


def set_alpn_h2(ctx: ssl.SSLContext) -> None:
    """Advertise HTTP/2 through ALPN, as grpclib requires (the builders already do this)."""
    ctx.set_alpn_protocols(list(ALPN_PROTOCOLS))


def _base_context(protocol: ssl._SSLMethod, *, ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """The policy both sides share; the caller adds what is specific to its side."""
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.verify_mode = ssl.CERT_REQUIRED
    # Strict RFC 5280 checks on the peer's chain (Python 3.13 makes this the default).
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    _restrict_cipher_suites(ctx)
    _restrict_handshake_crypto(ctx)
    _load_trust(ctx, ca)
    _load_own_credentials(ctx, cert, key)
    set_alpn_h2(ctx)
    return ctx


def _restrict_cipher_suites(ctx: ssl.SSLContext) -> None:
    """Allow exactly TLS_CIPHER in TLS 1.3 handshakes, and prove it took.

    ``ssl.SSLContext.set_ciphers`` only governs TLS 1.2 and older; Python exposes no binding
    for OpenSSL's ``SSL_CTX_set_ciphersuites``, which governs TLS 1.3. So it is called on this
    context's own ``SSL_CTX`` (``_upstream.openssl``). (An OpenSSL config file with ``Ciphersuites =
    TLS_AES_256_GCM_SHA384`` in force through OPENSSL_CONF would work too, but it is
    process-global and only applies if set before ``ssl`` is first imported; a per-context call
    cannot be defeated by import order.) The result is checked through Python's own view of the
    context, ``get_ciphers()``, and any difference raises TLSPolicyError so a server refuses to
    start rather than run with a weaker policy.
    """
    ctx.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")  # TLS <= 1.2 is off; keep its list minimal
    if not _native(openssl.set_ciphersuites, ctx, TLS_CIPHER):
        raise TLSPolicyError(f"OpenSSL refused to restrict TLS 1.3 cipher suites to {TLS_CIPHER}")
    tls13 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == TLS_VERSION]
    if tls13 != [TLS_CIPHER]:
        raise TLSPolicyError(
            f"TLS 1.3 cipher suites are {tls13} after restricting them to {TLS_CIPHER}"
        )


def _restrict_handshake_crypto(ctx: ssl.SSLContext) -> None:
    """Key exchange over P-384 only; handshake signatures ECDSA P-384 with SHA-384 only."""
    # Under OpenSSL 3 this sets the context's supported-groups list to exactly this group.
    ctx.set_ecdh_curve(ECDH_GROUP)
    # No Python binding either; True means OpenSSL parsed and installed the list.
    if not _native(openssl.set_sigalgs_list, ctx, SIGNATURE_ALGORITHM):
        raise TLSPolicyError(f"OpenSSL refused the signature algorithm list {SIGNATURE_ALGORITHM}")


def _native(call: Callable[[ssl.SSLContext, str], bool], ctx: ssl.SSLContext, arg: str) -> bool:
    """`call(ctx, arg)`, with a change in CPython's SSLContext layout as a TLSPolicyError."""
    try:
        return call(ctx, arg)
    except UpstreamChanged as exc:
        raise TLSPolicyError(str(exc)) from None


def _load_trust(ctx: ssl.SSLContext, ca: Path) -> None:
    """Trust exactly the certificates in ``ca``, which must include a CA certificate."""
    pem = _read(ca, "CA certificate")
    try:
        ctx.load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise CredentialError(f"CA certificate file {ca} holds no usable PEM certificate") from exc
    if ctx.cert_store_stats()["x509_ca"] == 0:
        raise CredentialError(f"CA certificate file {ca} holds no CA certificate (CA:TRUE)")


def _load_crl(ctx: ssl.SSLContext, crl: RevocationList) -> None:
    """Make OpenSSL refuse client certificates that ``crl`` revokes."""
    # `cadata` takes certificates only; a CRL loads from a file. The PEM that was checked is
    # written to a private one, so OpenSSL reads exactly it, whatever the CRL file holds now.
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as copy:
        copy.write(crl.pem)
        copy.flush()
        ctx.load_verify_locations(cafile=copy.name)
    # Leaf only: the CA is the trust anchor itself, and there is no intermediate to check.
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def _load_own_credentials(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Load this side's certificate and key, with errors that name the file at fault.

    Good files never import ``cryptography``: on the client it costs more than the rest of a
    ``jobctl`` call's TLS work (docs/cli.md, "Cold start"), and in ``jobd`` it would be ~9 MiB
    of idle memory. This relies on OpenSSL, which refuses a key that does not match the
    certificate, on a password callback that refuses any encrypted key, and on the loaded
    key's curve read back through OpenSSL. Only when one of those fails does it run the
    ``cryptography`` diagnosis, so both sides refuse the same files with the same messages.
    """
    try:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key), password=_no_password(key))
    except (OSError, ssl.SSLError) as exc:
        _diagnose(cert, key)  # raises a precise CredentialError if it finds the fault
        raise CredentialError(f"cannot load certificate {cert} with key {key}: {exc}") from exc
    verdict = _loaded_key_is_p384(ctx)
    if verdict is not True:
        _diagnose(cert, key)  # decides alone when OpenSSL cannot tell (None)
        if verdict is False:
            _not_p384(key)


def _no_password(key: Path) -> Callable[[], NoReturn]:
    """A password callback for OpenSSL that refuses: no prompt on a terminal, no encrypted key.

    OpenSSL calls it only for an encrypted key; ``load_cert_chain`` then raises its error.
    """

    def refuse() -> NoReturn:
        raise CredentialError(f"key file {key} is encrypted; an unencrypted one is needed")

    return refuse


def _not_p384(key: Path) -> NoReturn:
    raise CredentialError(f"key file {key} is not an ECDSA P-384 key, as the policy requires")


def _loaded_key_is_p384(ctx: ssl.SSLContext) -> bool | None:
    """Whether the private key OpenSSL loaded into ``ctx`` is an EC key on P-384.

    Read through the same OpenSSL that will use it, with the OpenSSL 3 API; None when that
    OpenSSL is older and lacks these functions.
    """
    try:
        group = openssl.private_key_group(ctx)
    except UpstreamChanged as exc:
        raise TLSPolicyError(str(exc)) from None
    return None if group is None else group == ECDH_GROUP


def _diagnose(cert: Path, key: Path) -> None:
    """Raise a CredentialError naming what is wrong with ``cert`` and ``key``, if anything.

    Checked in this order: the certificate is readable PEM, the key is readable, unencrypted PEM,
    the key is ECDSA P-384, the key belongs to the certificate.
    """
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 (see above)

    certificate = _parse_certificate(cert)
    private_key = _parse_private_key(key)
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP384R1
    ):
        _not_p384(key)
    if certificate.public_key() != private_key.public_key():
        raise CredentialError(f"key file {key} does not match certificate file {cert}")


def _parse_certificate(path: Path) -> x509.Certificate:
    """The first PEM certificate in ``path``."""
    from cryptography import x509  # noqa: PLC0415 (only to diagnose, see _load_own_credentials)

    try:
        return x509.load_pem_x509_certificate(_read(path, "certificate"))
    except ValueError as exc:
        raise CredentialError(f"certificate file {path} holds no valid PEM certificate") from exc


def _parse_private_key(path: Path) -> PrivateKeyTypes:
    """The unencrypted PEM private key in ``path``."""
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415 (as above)
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    try:
        return serialization.load_pem_private_key(_read(path, "private key"), password=None)
    except TypeError as exc:  # cryptography's signal for an encrypted key and no password
        raise CredentialError(
            f"key file {path} is encrypted; an unencrypted one is needed"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CredentialError(f"key file {path} holds no valid PEM private key") from exc


def _read(path: Path, what: str) -> bytes:
    """The bytes of a credential file, or a CredentialError naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CredentialError(f"cannot read {what} file {path}: {exc.strerror or exc}") from exc
