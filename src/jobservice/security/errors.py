"""The security layer's exceptions: one hierarchy, each class a distinct failure.

SecurityError
├── TLSPolicyError        the TLS policy cannot be put in force, or a connection breaks it
│   └── CredentialError   a CA, certificate or key file is missing, unreadable or mismatched
├── AuthenticationError   a peer certificate does not yield exactly one acceptable identity
├── PolicyError           an authorization policy file is malformed
└── PKIError              a development PKI cannot be created as asked
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CredentialError",
    "PKIError",
    "PolicyError",
    "SecurityError",
    "TLSPolicyError",
]


class SecurityError(Exception):
    """Base of every error the security layer raises on purpose; str() names the cause."""


class TLSPolicyError(SecurityError):
    """The TLS policy did not take effect, or a negotiated connection falls outside it."""


class CredentialError(TLSPolicyError):
    """A CA, certificate or key file cannot be used to build a context; names the file."""


class AuthenticationError(SecurityError):
    """The peer's certificate does not carry an identity this service accepts."""


class PolicyError(SecurityError):
    """An authorization policy file is malformed; the message names the file and key."""


class PKIError(SecurityError):
    """A development PKI could not be created as asked (bad name, refusing to overwrite)."""
