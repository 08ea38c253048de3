"""SM2 key parsing and serialisation: one canonical form (128-hex X||Y, 64-hex d) for the rest of Baosong.

Keys arrive from regulators in every shape (04-prefixed hex, bare X||Y, compressed, PEM, Base64 DER); each is
normalised here once, validated (on the curve, d in range), so no library ever sees an ambiguous string
(gmssl's ``lstrip("04")`` bug came exactly from that).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import textwrap
from functools import lru_cache

from . import asn1, ec
from ._codec import is_hex
from .errors import CryptoError

_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


def _as_text(key: bytes) -> str | None:
    """Bytes that are printable ASCII (PEM/hex/Base64 read from a file) are treated as text."""
    try:
        s = key.decode("ascii")
    except UnicodeDecodeError:
        return None
    return s if s.strip() and all(c.isprintable() or c in "\r\n\t" for c in s) else None


def _pem(text: str) -> tuple[str, bytes]:
    m = _PEM_RE.search(text)
    if not m:
        raise CryptoError("PEM 格式不完整: 缺少匹配的 -----BEGIN/END----- 行 (malformed PEM)")
    body = re.sub(r"\s+", "", m.group(2))
    if ":" in m.group(2):
        raise CryptoError(f"PEM ({m.group(1)}) 带加密头，不支持加密私钥；请先用 openssl 解密导出")
    try:
        return m.group(1), base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CryptoError(f"PEM ({m.group(1)}) 的 Base64 内容无效 (bad Base64 in PEM)") from exc


def _b64(text: str) -> bytes | None:
    s = re.sub(r"\s+", "", text)
    if not s or len(s) % 4:
        return None
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None


def _point_from_octets(octets: bytes, what: str) -> ec.Point:
    if len(octets) == 65 and octets[0] == 4:
        pt = (int.from_bytes(octets[1:33], "big"), int.from_bytes(octets[33:], "big"))
    elif len(octets) == 64:
        pt = (int.from_bytes(octets[:32], "big"), int.from_bytes(octets[32:], "big"))
    elif len(octets) == 33 and octets[0] in (2, 3):
        try:
            pt = ec.decompress(int.from_bytes(octets[1:], "big"), octets[0] == 3)
        except ValueError as exc:
            raise CryptoError(f"SM2 公钥无效: {what} 的压缩点 x 不在 SM2 曲线上") from exc
    else:
        head = octets[:1].hex() or "空"
        raise CryptoError(
            f"无法识别的 SM2 公钥: {what}，{len(octets)} 字节、首字节 {head}"
            "（期望 65 字节 04||X||Y、64 字节 X||Y 或 33 字节 02/03 压缩点）"
        )
    if not ec.is_on_curve(pt):
        raise CryptoError(f"SM2 公钥无效: {what} 不是 SM2 曲线上的点（可能是其他曲线的密钥或被截断）")
    return pt


def _point_from_spki(der: bytes, what: str) -> ec.Point:
    try:
        octets = asn1.decode_spki(der)
    except asn1.DerError as exc:
        raise CryptoError(f"无法识别的 SM2 公钥: {what} 不是 X.509 SubjectPublicKeyInfo ({exc})") from exc
    return _point_from_octets(octets, what)


def public_point(key: str | bytes) -> ec.Point:
    """Parse any accepted public-key form to an affine point on the SM2 curve."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        key = bytes(key)
        text = _as_text(key)
        if text is None:
            if len(key) in (33, 64, 65):  # SPKI DER is 59 or 91 bytes, so lengths do not collide
                return _point_from_octets(key, "原始字节")
            return _point_from_spki(key, f"DER 字节（{len(key)} 字节）")
        key = text
    if not isinstance(key, str):
        raise CryptoError(f"SM2 公钥须为字符串或 bytes，得到 {type(key).__name__}")
    return _public_point_text(key.strip())


@lru_cache(maxsize=64)
def _public_point_text(s: str) -> ec.Point:
    if not s:
        raise CryptoError("SM2 公钥为空 (empty public key)")
    if s.startswith("-----BEGIN"):
        label, der = _pem(s)
        if label != "PUBLIC KEY":
            hint = "；证书请先 openssl x509 -pubkey -noout 导出公钥" if "CERTIFICATE" in label else ""
            raise CryptoError(f"无法识别的 SM2 公钥: PEM 类型是 {label!r}，期望 'PUBLIC KEY'{hint}")
        return _point_from_spki(der, "PEM")
    if is_hex(s) and len(s) in (130, 128, 66):
        return _point_from_octets(bytes.fromhex(s), f"{len(s)} 位 hex")
    der = _b64(s)
    if der is None:
        if is_hex(s):
            raise CryptoError(
                f"无法识别的 SM2 公钥: {len(s)} 位 hex"
                "（期望 130 位 04||X||Y、128 位 X||Y 或 66 位 02/03 压缩格式）"
            )
        raise CryptoError(f"无法识别的 SM2 公钥: {len(s)} 个字符，既不是 hex、PEM 也不是 Base64")
    if len(der) in (33, 64, 65):
        return _point_from_octets(der, "Base64 原始点")
    return _point_from_spki(der, f"Base64（解码 {len(der)} 字节）")


def normalize_public_key(key: str | bytes) -> str:
    """-> 128 lower-case hex X||Y (no 04)."""
    x, y = public_point(key)
    return f"{x:064x}{y:064x}"


def _check_scalar(d: int, what: str) -> int:
    if not 1 <= d <= ec.N - 2:
        raise CryptoError(f"SM2 私钥无效: {what} 的值不在 [1, n-2] 范围内")
    return d


def _scalar_from_der(der: bytes, what: str) -> int:
    errors = []
    for decoder in (asn1.decode_pkcs8, asn1.decode_ec_private):
        try:
            return _check_scalar(decoder(der), what)
        except asn1.DerError as exc:
            errors.append(str(exc))
    raise CryptoError(
        f"无法识别的 SM2 私钥: {what} 既不是 PKCS#8 也不是 SEC1 EC PRIVATE KEY ({'; '.join(errors)})"
    )


def private_scalar(key: str | bytes) -> int:
    if isinstance(key, (bytes, bytearray, memoryview)):
        key = bytes(key)
        text = _as_text(key)
        if text is None:
            if len(key) == 32:
                return _check_scalar(int.from_bytes(key, "big"), "32 字节原始私钥")
            return _scalar_from_der(key, f"DER 字节（{len(key)} 字节）")
        key = text
    if not isinstance(key, str):
        raise CryptoError(f"SM2 私钥须为字符串或 bytes，得到 {type(key).__name__}")
    return _private_scalar_text(key.strip())


@lru_cache(maxsize=64)
def _private_scalar_text(s: str) -> int:
    if not s:
        raise CryptoError("SM2 私钥为空 (empty private key)")
    if s.startswith("-----BEGIN"):
        label, der = _pem(s)
        if label == "PRIVATE KEY":
            return _scalar_from_der(der, "PKCS#8 PEM")
        if label in ("EC PRIVATE KEY", "SM2 PRIVATE KEY"):  # OpenSSL 3 `openssl ec` writes the SM2 label
            return _scalar_from_der(der, "SEC1 PEM")
        if label == "ENCRYPTED PRIVATE KEY":
            raise CryptoError("不支持加密的 PKCS#8 私钥 (ENCRYPTED PRIVATE KEY)；请先 openssl pkcs8 解密导出")
        raise CryptoError(
            f"无法识别的 SM2 私钥: PEM 类型是 {label!r}，期望 'PRIVATE KEY' 或 'EC PRIVATE KEY'"
        )
    if is_hex(s):
        if len(s) == 66 and s.startswith("00"):  # Java BigInteger.toByteArray() sign byte
            s = s[2:]
        if len(s) != 64:
            raise CryptoError(
                f"无法识别的 SM2 私钥: {len(s)} 位 hex，期望 64 位"
                "（若来自 Java BigInteger.toString(16)，可能丢了前导 0，请左补 0 到 64 位）"
            )
        return _check_scalar(int(s, 16), "64 位 hex")
    der = _b64(s)
    if der is None:
        raise CryptoError(f"无法识别的 SM2 私钥: {len(s)} 个字符，既不是 hex、PEM 也不是 Base64")
    if len(der) == 32:
        return _check_scalar(int.from_bytes(der, "big"), "Base64 原始私钥")
    return _scalar_from_der(der, f"Base64（解码 {len(der)} 字节）")


def normalize_private_key(key: str | bytes) -> str:
    """-> 64 lower-case hex."""
    return f"{private_scalar(key):064x}"


@lru_cache(maxsize=64)
def point_from_scalar(d: int) -> ec.Point:
    pt = ec.mul_g_secret(d)  # d is a private key: the constant-operation ladder
    assert pt is not None  # d in [1, n-2]
    return pt


def public_key_from_private(private_key: str) -> str:
    """-> "04" + 128 hex."""
    x, y = point_from_scalar(private_scalar(private_key))
    return f"04{x:064x}{y:064x}"


def generate_sm2_keypair() -> tuple[str, str]:
    """(private key 64 hex, public key "04" + 128 hex); d uniform in [1, n-2] from ``secrets``."""
    d = secrets.randbelow(ec.N - 2) + 1
    x, y = point_from_scalar(d)
    return f"{d:064x}", f"04{x:064x}{y:064x}"


def _pem_wrap(label: str, der: bytes) -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def _uncompressed(pt: ec.Point) -> bytes:
    return b"\x04" + pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


def public_key_pem(public_key: str) -> str:
    """SubjectPublicKeyInfo PEM (id-ecPublicKey + SM2 curve OID), readable by OpenSSL 3."""
    return _pem_wrap("PUBLIC KEY", asn1.encode_spki(_uncompressed(public_point(public_key))))


def private_key_pem(private_key: str) -> str:
    """PKCS#8 PEM (with the public key inside the ECPrivateKey, as OpenSSL writes it)."""
    d = private_scalar(private_key)
    return _pem_wrap("PRIVATE KEY", asn1.encode_pkcs8(d, _uncompressed(point_from_scalar(d))))
