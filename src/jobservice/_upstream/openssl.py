"""OpenSSL calls that Python's `ssl` has no binding for, made on an SSLContext's own SSL_CTX.

Private: CPython's PySSLContext layout (the `SSL_CTX *` right after the object header), read
with ctypes; it is trusted only once OpenSSL's view of the pointer's options equals Python's
view of the context's. The OpenSSL functions are public C API of the library `_ssl` links.
"""

from __future__ import annotations

import _ssl
import ctypes
import functools
import ssl

from jobservice._upstream import UpstreamChanged

__all__ = ["private_key_group", "set_ciphersuites", "set_sigalgs_list", "ssl_ctx_pointer"]

# OpenSSL's SSL_CTX_ctrl command number (ssl.h, stable since 1.0.2) for SSL_CTX_set1_sigalgs_list.
_SSL_CTRL_SET_SIGALGS_LIST = 98


def set_ciphersuites(ctx: ssl.SSLContext, suites: str) -> bool:
    """`SSL_CTX_set_ciphersuites`: the TLS 1.3 suites (`set_ciphers` governs TLS <= 1.2 only)."""
    setter = _libssl().SSL_CTX_set_ciphersuites
    setter.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    setter.restype = ctypes.c_int
    return bool(setter(ssl_ctx_pointer(ctx), suites.encode()) == 1)


def set_sigalgs_list(ctx: ssl.SSLContext, sigalgs: str) -> bool:
    """`SSL_CTX_set1_sigalgs_list`: the handshake signature algorithms; True once installed."""
    ctrl = _libssl().SSL_CTX_ctrl
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    ctrl.restype = ctypes.c_long
    return bool(ctrl(ssl_ctx_pointer(ctx), _SSL_CTRL_SET_SIGALGS_LIST, 0, sigalgs.encode()) == 1)


def private_key_group(ctx: ssl.SSLContext) -> str | None:
    """The curve of the EC private key loaded into `ctx` ("" if none, or not EC).

    None when the linked OpenSSL is older than 3 and lacks the functions to tell.
    """
    lib = _libssl()
    try:
        get_key, is_a, group_name = (
            lib.SSL_CTX_get0_privatekey,
            lib.EVP_PKEY_is_a,
            lib.EVP_PKEY_get_group_name,
        )
    except AttributeError:
        return None
    get_key.argtypes = [ctypes.c_void_p]
    get_key.restype = ctypes.c_void_p
    is_a.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    is_a.restype = ctypes.c_int
    group_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    group_name.restype = ctypes.c_int
    pkey = get_key(ssl_ctx_pointer(ctx))
    if not pkey or is_a(pkey, b"EC") != 1:
        return ""
    name = ctypes.create_string_buffer(64)
    if group_name(pkey, name, ctypes.sizeof(name), None) != 1:
        return ""
    return name.value.decode("ascii", "replace")


@functools.cache
def _libssl() -> ctypes.CDLL:
    """The OpenSSL that `ssl` itself is linked against (symbols resolve through _ssl)."""
    return ctypes.CDLL(_ssl.__file__)


def ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    """The `SSL_CTX *` inside a Python SSLContext, checked before anything is written to it.

    CPython's PySSLContext struct starts with its object header followed by the `SSL_CTX *`.
    Before trusting that layout, the options OpenSSL reports for the pointer must equal the
    options Python reports for the context, so a layout change fails here, not in OpenSSL.
    """
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer:
        raise UpstreamChanged("cannot locate the OpenSSL context inside ssl.SSLContext")
    get_options = _libssl().SSL_CTX_get_options
    get_options.argtypes = [ctypes.c_void_p]
    get_options.restype = ctypes.c_uint64
    if get_options(pointer) != ctx.options:
        raise UpstreamChanged("ssl.SSLContext layout is not the expected one; cannot set policy")
    return pointer
