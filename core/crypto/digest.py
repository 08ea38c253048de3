"""Message digests and HMACs by name, for regulators that sign requests with one (e.g. IHS ``sign``).

One table of algorithms, so a signing recipe stored as data names its digest and nothing else:
MD5, SHA-1, SHA-256 (``hashlib``), SM3 (GB/T 32905, through ``sm3``), HMAC-SHA256 (``hmac``) and
HMAC-SM3 (RFC 2104 over SM3, through ``sm3.hmac_sm3``).
"""

from __future__ import annotations

import hashlib
import hmac

from .errors import CryptoError
from .sm3 import hmac_sm3, sm3_digest

PLAIN_DIGESTS = ("MD5", "SHA-1", "SHA-256", "SM3")
KEYED_DIGESTS = ("HMAC-SHA256", "HMAC-SM3")
DIGESTS = PLAIN_DIGESTS + KEYED_DIGESTS


def is_keyed(name: str) -> bool:
    """True for the HMACs: the key is the HMAC key, not (necessarily) part of the message."""
    return name in KEYED_DIGESTS


def digest(name: str, message: bytes, key: bytes | None = None) -> bytes:
    """The raw digest of ``message`` with the named algorithm; ``key`` is required for the HMACs."""
    message = bytes(message)
    if name == "MD5":
        return hashlib.md5(message, usedforsecurity=False).digest()
    if name == "SHA-1":
        return hashlib.sha1(message, usedforsecurity=False).digest()
    if name == "SHA-256":
        return hashlib.sha256(message).digest()
    if name == "SM3":
        return sm3_digest(message)
    if name in KEYED_DIGESTS:
        if key is None:
            raise CryptoError(f"{name} 需要密钥")
        if name == "HMAC-SHA256":
            return hmac.new(bytes(key), message, hashlib.sha256).digest()
        return bytes.fromhex(hmac_sm3(bytes(key), message))
    raise CryptoError(f"未知的摘要算法 {name!r}（可选：{', '.join(DIGESTS)}）")
