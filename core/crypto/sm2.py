"""SM2 public-key encryption and signatures (GB/T 32918 / GM/T 0003) on the recommended curve.

Curve arithmetic is ours (``ec``), SM3 for Z, KDF and C3 is ``cryptography``'s (OpenSSL), and k always comes
from ``secrets``.  Every wire choice (order, 04 prefix, ASN.1, output encoding, DER/raw signatures, user id)
comes from an explicit profile.
"""

from __future__ import annotations

import hmac
import secrets
from functools import lru_cache

from . import asn1, ec, sm3
from ._codec import decode_input, encode_output
from .errors import CryptoError
from .keys import private_scalar, public_point
from .profiles import SM2Profile, SM2SignProfile

_MAX_TRIES = 64  # a retry is needed ~1/256 of the time for 1-byte messages (all-zero KDF output)
_CURVE_BYTES = b"".join(v.to_bytes(32, "big") for v in (ec.A, ec.B, ec.GX, ec.GY))


def _b32(v: int) -> bytes:
    return v.to_bytes(32, "big")


def _random_k() -> int:
    return secrets.randbelow(ec.N - 1) + 1  # [1, n-1]


# --- encryption ------------------------------------------------------------------------------------

def _encrypt_parts(msg: bytes, pub: ec.Point, k: int | None = None) -> tuple[ec.Point, bytes, bytes]:
    """(C1, C3, C2).  ``k`` is only for known-answer tests; production always draws a fresh one."""
    if not msg:
        # GB/T 32918.4 requires t = KDF(x2||y2, klen) not all zero; for klen = 0 that can never hold.
        raise CryptoError("SM2 加密失败: 明文为空，SM2 不能加密 0 字节 (empty plaintext is not supported)")
    for _ in range(_MAX_TRIES):
        # The fast (variable-time) methods: k here protects this one message, not a key, and SM2 encryption
        # runs for every upload (see ec.py's notes).
        kk = _random_k() if k is None else k
        c1 = ec.mul_g(kk)
        s = ec.mul_point(pub, kk, reuse=True)
        if c1 is None or s is None:  # impossible for a valid key (cofactor 1), kept for safety
            continue
        x2, y2 = _b32(s[0]), _b32(s[1])
        t = sm3.sm3_kdf(x2 + y2, len(msg))
        if not any(t):
            if k is not None:
                raise CryptoError("SM2 加密失败: 给定 k 的 KDF 输出全零")
            continue  # standard: pick a new k
        c2 = (int.from_bytes(msg, "big") ^ int.from_bytes(t, "big")).to_bytes(len(msg), "big")
        c3 = sm3.sm3_digest(x2 + msg + y2)
        return c1, c3, c2
    raise CryptoError(f"SM2 加密失败: 连续 {_MAX_TRIES} 次点运算/KDF 失败（公钥异常？）")


def _assemble(c1: ec.Point, c3: bytes, c2: bytes, profile: SM2Profile) -> bytes:
    if profile.format == "asn1":
        return asn1.encode_sm2_ciphertext(c1[0], c1[1], c3, c2)
    c1b = (b"\x04" if profile.c1_prefix else b"") + _b32(c1[0]) + _b32(c1[1])
    return c1b + c3 + c2 if profile.order == "C1C3C2" else c1b + c2 + c3


def sm2_encrypt(plaintext: bytes, public_key: str, profile: SM2Profile) -> str:
    if not isinstance(plaintext, (bytes, bytearray, memoryview)):
        raise CryptoError(
            f"SM2 加密需要 bytes 明文，得到 {type(plaintext).__name__}（请先 .encode('utf-8')）"
        )
    pub = public_point(public_key)
    c1, c3, c2 = _encrypt_parts(bytes(plaintext), pub)
    return encode_output(_assemble(c1, c3, c2, profile), profile.output)


def _split(raw: bytes, profile: SM2Profile) -> tuple[ec.Point, bytes, bytes]:
    """(C1, C3, C2) from the wire form, with errors that point at the setting most likely wrong."""
    if profile.format == "asn1":
        x, y, c3, c2 = asn1.decode_sm2_ciphertext(raw)
        c1 = (x, y)
        if not ec.is_on_curve(c1):
            raise CryptoError("SM2 解密失败: C1 不是 SM2 曲线上的点（密文被篡改或格式不符）")
    else:
        looks_der = raw[:1] == b"\x30" and len(raw) > 2 and raw[1] in (len(raw) - 2, 0x81, 0x82)
        hint = "（看起来像 ASN.1 DER 密文：format 应为 asn1？）" if looks_der else ""
        if profile.c1_prefix:
            if raw[:1] != b"\x04":
                why = hint or "（对方不带 04？c1_prefix 应为 false）"
                head = raw[:1].hex() or "空"
                raise CryptoError(f"SM2 解密失败: 密文首字节是 {head}，不是 C1 的 04 前缀{why}")
            raw = raw[1:]
        if len(raw) < 64 + 32 + 1:
            raise CryptoError(f"SM2 解密失败: 密文过短（{len(raw)} 字节），不足 C1(64)+C3(32)+C2{hint}")
        c1 = (int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"))
        body = raw[64:]
        if profile.order == "C1C3C2":
            c3, c2 = body[:32], body[32:]
        else:
            c2, c3 = body[:-32], body[-32:]
        if not ec.is_on_curve(c1):
            if hint:
                extra = hint
            elif not profile.c1_prefix:
                extra = "（对方带 04 前缀？c1_prefix 应为 true）"
            else:
                extra = "（密文被篡改或格式不符）"
            raise CryptoError(f"SM2 解密失败: C1 不是 SM2 曲线上的点{extra}")
    if not c2:
        raise CryptoError("SM2 解密失败: C2 为空 (empty C2)")
    return c1, c3, c2


def _try_open(x2: bytes, y2: bytes, c3: bytes, c2: bytes) -> bytes | None:
    t = sm3.sm3_kdf(x2 + y2, len(c2))
    if not any(t):
        return None
    msg = (int.from_bytes(c2, "big") ^ int.from_bytes(t, "big")).to_bytes(len(c2), "big")
    return msg if hmac.compare_digest(sm3.sm3_digest(x2 + msg + y2), c3) else None


def sm2_decrypt(ciphertext: str, private_key: str, profile: SM2Profile) -> bytes:
    d = private_scalar(private_key)
    raw = decode_input(ciphertext, profile.output, "SM2 密文")
    if not raw:
        raise CryptoError("SM2 解密失败: 密文为空 (empty ciphertext)")
    c1, c3, c2 = _split(raw, profile)
    s = ec.mul_point_secret(c1, d)
    if s is None:
        raise CryptoError("SM2 解密失败: [d]C1 为无穷远点 (invalid C1)")
    x2, y2 = _b32(s[0]), _b32(s[1])
    msg = _try_open(x2, y2, c3, c2)
    if msg is not None:
        return msg
    hint = ""
    if profile.format == "raw":
        # Diagnose only (never silently accept): would the other order have opened it?
        body = c3 + c2 if profile.order == "C1C3C2" else c2 + c3
        other = "C1C2C3" if profile.order == "C1C3C2" else "C1C3C2"
        o3, o2 = (body[-32:], body[:-32]) if other == "C1C2C3" else (body[:32], body[32:])
        if o2 and _try_open(x2, y2, o3, o2) is not None:
            hint = f"；按 {other} 顺序可通过校验，请把 order 设为 {other}"
    raise CryptoError(
        "SM2 解密失败: C3 校验不符（密钥错误或密文顺序 C1C3C2/C1C2C3 不符）"
        f" / C3 mismatch (wrong key, wrong order or tampered ciphertext){hint}"
    )


# --- signatures ------------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def sm2_z(user_id: bytes, pub: ec.Point) -> bytes:
    """Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)."""
    entl = (len(user_id) * 8).to_bytes(2, "big")
    return sm3.sm3_digest(entl + user_id + _CURVE_BYTES + _b32(pub[0]) + _b32(pub[1]))


def _digest(message: bytes, pub: ec.Point, profile: SM2SignProfile) -> int:
    if profile.legacy_no_z:
        return int.from_bytes(sm3.sm3_digest(message), "big")
    return int.from_bytes(sm3.sm3_digest(sm2_z(profile.user_id.encode("utf-8"), pub) + message), "big")


def _sign_e(e: int, d: int, k: int | None = None) -> tuple[int, int]:
    """(r, s) for digest e.  ``k`` is only for known-answer tests."""
    inv = ec.inverse_secret(1 + d, ec.N)  # d is secret: no Euclid whose steps follow it
    for _ in range(_MAX_TRIES):
        kk = _random_k() if k is None else k
        pt = ec.mul_g_secret(kk)  # k reveals d: constant-operation ladder
        assert pt is not None
        r = (e + pt[0]) % ec.N
        if r == 0 or r + kk == ec.N:
            continue
        s = inv * (kk - r * d) % ec.N
        if s == 0:
            continue
        return r, s
    raise CryptoError("SM2 签名失败: 无法得到有效的 (r, s)")


def sm2_sign(message: bytes, private_key: str, profile: SM2SignProfile, public_key: str | None = None) -> str:
    if not isinstance(message, (bytes, bytearray, memoryview)):
        raise CryptoError(f"SM2 签名需要 bytes 消息，得到 {type(message).__name__}（请先 .encode('utf-8')）")
    d = private_scalar(private_key)
    pub = ec.mul_g_secret(d)
    if public_key is not None and public_point(public_key) != pub:
        # Z includes the public key: a mismatched pair would give signatures nobody can verify.
        raise CryptoError("SM2 签名失败: 给定的公钥与私钥不匹配 (public key does not match private key)")
    r, s = _sign_e(_digest(bytes(message), pub, profile), d)
    sig = asn1.encode_signature(r, s) if profile.encoding == "der" else _b32(r) + _b32(s)
    return encode_output(sig, profile.output)


def _decode_sig(signature: str, profile: SM2SignProfile) -> tuple[int, int] | None:
    try:
        raw = decode_input(signature, profile.output, "SM2 签名")
    except CryptoError:
        return None
    if profile.encoding == "raw":
        if len(raw) != 64:
            return None
        return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    try:
        return asn1.decode_signature(raw)
    except asn1.DerError:
        return None


def sm2_verify(message: bytes, signature: str, public_key: str, profile: SM2SignProfile) -> bool:
    """True iff the signature is valid.  A malformed signature is simply invalid (False); a malformed
    public key is a configuration error (CryptoError)."""
    pub = public_point(public_key)
    rs = _decode_sig(signature, profile)
    if rs is None:
        return False
    r, s = rs
    if not (1 <= r < ec.N and 1 <= s < ec.N):
        return False
    t = (r + s) % ec.N
    if t == 0:
        return False
    pt = ec.mul_add(s, t, pub)
    if pt is None:
        return False
    return (_digest(bytes(message), pub, profile) + pt[0]) % ec.N == r
