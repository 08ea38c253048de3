"""The few DER structures SM2 needs (ciphertext, signature, SPKI, PKCS#8, SEC1), hand-rolled.

``cryptography`` cannot load SM2 keys (no SM2 curve), so keys and GM/T 0009 structures are parsed here.
Decoding is strict on structure and lengths but tolerant of non-minimal INTEGER encodings some Java
stacks emit; encoding is always minimal DER (what OpenSSL expects).
"""

from __future__ import annotations

from .errors import CryptoError

INTEGER, BIT_STRING, OCTET_STRING, NULL, OID, SEQUENCE = 0x02, 0x03, 0x04, 0x05, 0x06, 0x30

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2 = "1.2.156.10197.1.301"


class DerError(ValueError):
    pass


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _len(len(value)) + value


def enc_int(v: int) -> bytes:
    if v < 0:
        raise ValueError("negative INTEGER")
    b = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")  # minimal, with a 00 when the top bit is set
    return tlv(INTEGER, b)


def enc_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([parts[0] * 40 + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body.extend(reversed(chunk))
    return tlv(OID, bytes(body))


def seq(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """(tag, value, next position); raises DerError on truncation or indefinite length."""
    if pos + 2 > len(data):
        raise DerError("truncated")
    tag = data[pos]
    ln = data[pos + 1]
    pos += 2
    if ln & 0x80:
        nb = ln & 0x7F
        if nb == 0 or nb > 4 or pos + nb > len(data):
            raise DerError("bad length")
        ln = int.from_bytes(data[pos:pos + nb], "big")
        pos += nb
    if pos + ln > len(data):
        raise DerError("truncated")
    return tag, data[pos:pos + ln], pos + ln


def read_all(data: bytes) -> list[tuple[int, bytes]]:
    """The TLVs making up ``data`` exactly (no trailing garbage)."""
    out = []
    pos = 0
    while pos < len(data):
        tag, val, pos = read_tlv(data, pos)
        out.append((tag, val))
    return out


def read_single(data: bytes, tag: int) -> bytes:
    t, v, end = read_tlv(data, 0)
    if t != tag or end != len(data):
        raise DerError(f"expected tag {tag:#x} spanning the input")
    return v


def dec_int(value: bytes) -> int:
    if not value or value[0] & 0x80:
        raise DerError("negative or empty INTEGER")
    return int.from_bytes(value, "big")


def dec_oid(value: bytes) -> str:
    if not value:
        raise DerError("empty OID")
    parts = [value[0] // 40, value[0] % 40] if value[0] < 80 else [2, value[0] - 80]
    n = 0
    for b in value[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(n)
            n = 0
    return ".".join(map(str, parts))


# --- GM/T 0009 SM2 ciphertext and signature -------------------------------------------------------

def encode_sm2_ciphertext(x: int, y: int, c3: bytes, c2: bytes) -> bytes:
    return seq(enc_int(x), enc_int(y), tlv(OCTET_STRING, c3), tlv(OCTET_STRING, c2))


def decode_sm2_ciphertext(der: bytes) -> tuple[int, int, bytes, bytes]:
    try:
        items = read_all(read_single(der, SEQUENCE))
        if [t for t, _ in items] != [INTEGER, INTEGER, OCTET_STRING, OCTET_STRING]:
            raise DerError("fields are not INTEGER, INTEGER, OCTET STRING, OCTET STRING")
        x, y = dec_int(items[0][1]), dec_int(items[1][1])
        c3, c2 = items[2][1], items[3][1]
    except DerError as exc:
        raise CryptoError(
            f"SM2 解密失败: 不是 GM/T 0009 ASN.1 密文 ({exc})；对方可能发送的是 C1C3C2/C1C2C3 原始拼接格式"
        ) from exc
    if len(c3) != 32:
        raise CryptoError(f"SM2 解密失败: ASN.1 密文中的 C3 为 {len(c3)} 字节，期望 32（字段顺序不符？）")
    return x, y, c3, c2


def encode_signature(r: int, s: int) -> bytes:
    return seq(enc_int(r), enc_int(s))


def decode_signature(der: bytes) -> tuple[int, int]:
    items = read_all(read_single(der, SEQUENCE))
    if [t for t, _ in items] != [INTEGER, INTEGER]:
        raise DerError("signature is not SEQUENCE{INTEGER, INTEGER}")
    return dec_int(items[0][1]), dec_int(items[1][1])


# --- keys ------------------------------------------------------------------------------------------

def _alg_id() -> bytes:
    return seq(enc_oid(OID_EC_PUBLIC_KEY), enc_oid(OID_SM2))


def encode_spki(point: bytes) -> bytes:
    """X.509 SubjectPublicKeyInfo with id-ecPublicKey + the SM2 curve OID (OpenSSL 3's form)."""
    return seq(_alg_id(), tlv(BIT_STRING, b"\x00" + point))


def _check_alg(alg: bytes) -> None:
    items = read_all(alg)
    oids = [dec_oid(v) for t, v in items if t == OID]
    # OpenSSL 1.1.1 could also write the SM2 OID as the algorithm itself.
    if not oids or oids[0] not in (OID_EC_PUBLIC_KEY, OID_SM2):
        raise DerError(f"algorithm {oids[0] if oids else '?'} is not an EC/SM2 key")
    if oids[0] == OID_EC_PUBLIC_KEY and (len(oids) < 2 or oids[1] != OID_SM2):
        curve = oids[1] if len(oids) > 1 else "explicit parameters"
        raise DerError(f"EC key on curve {curve}, not SM2 ({OID_SM2})")


def decode_spki(der: bytes) -> bytes:
    """The EC point octets (04||X||Y or compressed) from SubjectPublicKeyInfo."""
    items = read_all(read_single(der, SEQUENCE))
    if len(items) != 2 or items[0][0] != SEQUENCE or items[1][0] != BIT_STRING:
        raise DerError("not a SubjectPublicKeyInfo")
    _check_alg(items[0][1])
    bits = items[1][1]
    if not bits or bits[0] != 0:
        raise DerError("bad BIT STRING")
    return bits[1:]


def encode_ec_private(d: int, point: bytes, with_params: bool) -> bytes:
    body = [enc_int(1), tlv(OCTET_STRING, d.to_bytes(32, "big"))]
    if with_params:
        body.append(tlv(0xA0, enc_oid(OID_SM2)))
    body.append(tlv(0xA1, tlv(BIT_STRING, b"\x00" + point)))
    return seq(*body)


def encode_pkcs8(d: int, point: bytes) -> bytes:
    return seq(enc_int(0), _alg_id(), tlv(OCTET_STRING, encode_ec_private(d, point, with_params=False)))


def decode_ec_private(der: bytes) -> int:
    """SEC1 ECPrivateKey -> d."""
    items = read_all(read_single(der, SEQUENCE))
    if len(items) < 2 or items[0] != (INTEGER, b"\x01") or items[1][0] != OCTET_STRING:
        raise DerError("not an ECPrivateKey")
    for t, v in items[2:]:
        if t == 0xA0:
            oid = dec_oid(read_single(v, OID))
            if oid != OID_SM2:
                raise DerError(f"EC key on curve {oid}, not SM2 ({OID_SM2})")
    return int.from_bytes(items[1][1], "big")


def decode_pkcs8(der: bytes) -> int:
    items = read_all(read_single(der, SEQUENCE))
    if len(items) < 3 or items[0][0] != INTEGER or items[1][0] != SEQUENCE or items[2][0] != OCTET_STRING:
        raise DerError("not a PKCS#8 PrivateKeyInfo")
    _check_alg(items[1][1])
    return decode_ec_private(items[2][1])
