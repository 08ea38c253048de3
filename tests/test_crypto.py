"""core.crypto: known answers, profiles, key formats, edge cases and error messages (no external tools)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import core.crypto as cc
from core.crypto import (
    IV_IS_KEY,
    CryptoError,
    SM2Profile,
    SM2SignProfile,
    SM4Profile,
    asn1,
    detect_sm2_profile,
    detect_sm4_profile,
    ec,
    generate_sm2_keypair,
    hmac_sm3,
    normalize_private_key,
    normalize_public_key,
    private_key_pem,
    public_key_from_private,
    public_key_pem,
    self_test,
    selftest,
    sm2,
    sm2_decrypt,
    sm2_encrypt,
    sm2_sign,
    sm2_verify,
    sm3_digest,
    sm3_hex,
    sm4_decrypt,
    sm4_encrypt,
)

VECTORS = json.loads((Path(__file__).parent / "crypto_vectors" / "openssl_sm2_sm4.json").read_text("utf-8"))

SM4_KEY = "0123456789abcdeffedcba9876543210"
STD_D_HEX = f"{selftest.STD_D:064x}"
STD_PUB = "04" + selftest.STD_PUB.lower()

ALL_SM2_PROFILES = [SM2Profile(format="asn1", output=o) for o in ("hex", "HEX", "base64")] + [
    SM2Profile(order=order, c1_prefix=p, format="raw", output=o)
    for order in ("C1C3C2", "C1C2C3")
    for p in (True, False)
    for o in ("hex", "HEX", "base64")
]
ALL_SM4_PROFILES = [
    SM4Profile(mode=m, padding=pad, key_format="hex", output=o, iv=iv)
    for m, iv in (("ECB", None), ("CBC", None), ("CBC", "00" * 16), ("CBC", bytes(range(16)).hex()))
    for pad in ("pkcs7", "zero", "none")
    for o in ("hex", "HEX", "base64")
]


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return generate_sm2_keypair()


def _key_with_x_starting(chars: str) -> tuple[str, str]:
    while True:
        d, p = generate_sm2_keypair()
        if p[2] in chars:
            return d, p


# --- known answers -----------------------------------------------------------------------------------

def test_sm4_gbt32907_single_block():
    prof = SM4Profile(mode="ECB", padding="none", key_format="hex", output="hex")
    assert sm4_encrypt(bytes.fromhex(SM4_KEY), SM4_KEY, prof) == "681edf34d206965e86b3e94f536e4246"
    assert sm4_decrypt("681EDF34D206965E86B3E94F536E4246", SM4_KEY, prof) == bytes.fromhex(SM4_KEY)


def test_sm4_gbt32907_million_iterations():
    # Same engine as sm4_encrypt (cryptography's SM4-ECB) with one reused encryptor: ~0.3 s, so not "slow".
    enc = Cipher(algorithms.SM4(bytes.fromhex(SM4_KEY)), modes.ECB()).encryptor()
    block = bytes.fromhex(SM4_KEY)
    for _ in range(1_000_000):
        block = enc.update(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


def test_sm3_known_answers():
    assert sm3_hex(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    abcd_64 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    assert sm3_digest(b"abcd" * 16).hex() == abcd_64
    assert sm3_hex(b"") == "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"


def test_hmac_sm3_matches_rfc2104_construction():
    # Independent construction: H((K^opad) || H((K^ipad) || m)) with the 64-byte SM3 block.
    for key in (b"k", b"k" * 64, b"k" * 100):
        msg = b"baosong hmac"
        k = sm3_digest(key) if len(key) > 64 else key
        k = k.ljust(64, b"\0")
        inner = sm3_digest(bytes(b ^ 0x36 for b in k) + msg)
        expect = sm3_digest(bytes(b ^ 0x5C for b in k) + inner).hex()
        assert hmac_sm3(key, msg) == expect


def test_sm2_standard_signature_example():
    pub = ec.mul_g(selftest.STD_D)
    assert public_key_from_private(STD_D_HEX) == STD_PUB
    assert sm2.sm2_z(b"1234567812345678", pub).hex().upper() == selftest.STD_ZA
    e = int.from_bytes(sm3_digest(bytes.fromhex(selftest.STD_ZA) + b"message digest"), "big")
    assert e == 0xF0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640
    assert sm2._sign_e(e, selftest.STD_D, selftest.STD_K) == (selftest.STD_R, selftest.STD_S)
    raw_sig = f"{selftest.STD_R:064x}{selftest.STD_S:064x}"
    assert sm2_verify(b"message digest", raw_sig, STD_PUB, SM2SignProfile(encoding="raw"))
    der_sig = asn1.encode_signature(selftest.STD_R, selftest.STD_S).hex()
    assert sm2_verify(b"message digest", der_sig, STD_PUB, SM2SignProfile())


def test_sm2_standard_encryption_example_every_profile():
    pub = ec.mul_g(selftest.STD_D)
    c1, c3, c2 = sm2._encrypt_parts(b"encryption standard", pub, selftest.STD_K)
    assert c3.hex().upper() == selftest.STD_C3 and c2.hex().upper() == selftest.STD_C2
    assert f"04{c1[0]:064X}{c1[1]:064X}" == selftest.STD_C1
    for prof in ALL_SM2_PROFILES:
        ct = cc._codec.encode_output(sm2._assemble(c1, c3, c2, prof), prof.output)
        assert sm2_decrypt(ct, STD_D_HEX, prof) == b"encryption standard", prof
    # The GM/T 0009 serialisation used by OpenSSL/Tongsuo's own test of this example:
    der = sm2._assemble(c1, c3, c2, SM2Profile(format="asn1"))
    assert der.hex().upper().startswith("307C022004EBFC71")
    assert "02210" + "0E858F9D8" in der.hex().upper()


def test_self_test_passes():
    self_test()


@pytest.mark.parametrize(
    "target, bad",
    [
        ("core.crypto.sm3.sm3_hex", lambda data: "00" * 32),
        ("core.crypto.ec.mul_g", lambda k: (1, 2)),
        ("core.crypto.sm4._cipher", lambda key, mode, iv: Cipher(algorithms.SM4(bytes(16)), modes.ECB())),
        ("core.crypto.sm3.sm3_kdf", lambda z, klen: b"\x01" * klen),
    ],
)
def test_self_test_fails_loudly_when_a_primitive_is_wrong(monkeypatch, target, bad):
    monkeypatch.setattr(target, bad)
    with pytest.raises(CryptoError, match="^加密自检失败"):
        self_test()


def test_self_test_wraps_unexpected_exceptions(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("library broke")

    monkeypatch.setattr("core.crypto.sm3.sm3_digest", boom)
    with pytest.raises(CryptoError, match="加密自检失败: .*library broke"):
        self_test()


# --- SM4 ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prof", ALL_SM4_PROFILES, ids=lambda p: p.describe())
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 50 * 1024])
def test_sm4_round_trip(prof, size):
    msg = bytes((i * 7 + 1) % 256 or 1 for i in range(size))  # no trailing zero bytes (zero padding)
    if prof.padding == "none" and size % 16:
        with pytest.raises(CryptoError, match="无填充"):
            sm4_encrypt(msg, SM4_KEY, prof)
        return
    ct = sm4_encrypt(msg, SM4_KEY, prof)
    assert sm4_decrypt(ct, SM4_KEY, prof) == msg
    if prof.output == "hex":
        assert ct == ct.lower()
    elif prof.output == "HEX":
        assert ct == ct.upper()
    else:
        base64.b64decode(ct, validate=True)


def test_sm4_padding_rules():
    ecb = SM4Profile(padding="pkcs7")
    assert len(bytes.fromhex(sm4_encrypt(b"x" * 16, SM4_KEY, ecb))) == 32  # full padding block
    zero = SM4Profile(padding="zero")
    assert len(bytes.fromhex(sm4_encrypt(b"x" * 16, SM4_KEY, zero))) == 16  # Hutool: none when aligned
    assert sm4_encrypt(b"", SM4_KEY, zero) == ""
    # BouncyCastle ZeroBytePadding adds a whole zero block when aligned: still decrypts.
    bc = sm4_encrypt(b"x" * 16 + b"\0" * 16, SM4_KEY, SM4Profile(padding="none"))
    assert sm4_decrypt(bc, SM4_KEY, zero) == b"x" * 16


def test_sm4_cbc_random_iv_is_prepended_and_random():
    prof = SM4Profile(mode="CBC", iv=None)
    a, b = sm4_encrypt(b"same", SM4_KEY, prof), sm4_encrypt(b"same", SM4_KEY, prof)
    assert a != b and len(bytes.fromhex(a)) == 32
    iv, body = bytes.fromhex(a)[:16], bytes.fromhex(a)[16:]
    fixed = SM4Profile(mode="CBC", iv=iv.hex())
    assert sm4_decrypt(body.hex(), SM4_KEY, fixed) == b"same"


def test_sm4_key_formats():
    text_key = "Baosong-Key-16by"
    b64_key = base64.b64encode(bytes.fromhex(SM4_KEY)).decode()
    hexp = SM4Profile(key_format="hex")
    ref = sm4_encrypt(b"payload", SM4_KEY, hexp)
    assert sm4_encrypt(b"payload", b64_key, SM4Profile(key_format="base64")) == ref
    assert sm4_encrypt(b"payload", SM4_KEY.upper(), hexp) == ref
    t = sm4_encrypt(b"payload", text_key, SM4Profile(key_format="text"))
    assert t == sm4_encrypt(b"payload", text_key.encode().hex(), hexp)
    with pytest.raises(CryptoError, match="期望 32 位 hex，得到 16"):
        sm4_encrypt(b"x", text_key, hexp)
    with pytest.raises(CryptoError, match="期望 16 字节文本，得到 32"):
        sm4_encrypt(b"x", SM4_KEY, SM4Profile(key_format="text"))
    with pytest.raises(CryptoError, match="Base64"):
        sm4_encrypt(b"x", "!!!", SM4Profile(key_format="base64"))


def test_sm4_wrong_key_and_bad_padding_raise():
    prof = SM4Profile()
    ct = sm4_encrypt(b'{"a": 1}', SM4_KEY, prof)
    wrong = "f" * 32
    with pytest.raises(CryptoError, match="PKCS7 填充校验失败"):
        sm4_decrypt(ct, wrong, prof)
    # A valid decryption that does not end in PKCS7 bytes (e.g. peer used zero padding):
    zero_ct = sm4_encrypt(b"abc", SM4_KEY, SM4Profile(padding="zero"))
    with pytest.raises(CryptoError, match="PKCS7 填充校验失败"):
        sm4_decrypt(zero_ct, SM4_KEY, prof)
    with pytest.raises(CryptoError, match="不是 16 的倍数"):
        sm4_decrypt(ct[:-2], SM4_KEY, prof)
    with pytest.raises(CryptoError, match="不是合法的 hex"):
        sm4_decrypt(base64.b64encode(bytes.fromhex(ct)).decode(), SM4_KEY, prof)
    with pytest.raises(CryptoError, match="密文为空"):
        sm4_decrypt("", SM4_KEY, prof)
    with pytest.raises(CryptoError, match="bytes 明文"):
        sm4_encrypt("text", SM4_KEY, prof)  # type: ignore[arg-type]


def test_sm4_openssl_vectors_committed():
    msg = VECTORS["plaintext_utf8"].encode()
    ecb = SM4Profile()
    assert sm4_encrypt(msg, VECTORS["sm4_key_hex"], ecb) == VECTORS["sm4_ecb_pkcs7_hex"]
    cbc = SM4Profile(mode="CBC", iv=VECTORS["sm4_iv_hex"])
    assert sm4_encrypt(msg, VECTORS["sm4_key_hex"], cbc) == VECTORS["sm4_cbc_pkcs7_hex"]
    assert sm4_decrypt(VECTORS["sm4_cbc_pkcs7_hex"], VECTORS["sm4_key_hex"], cbc) == msg


# --- SM2 encryption -------------------------------------------------------------------------------------

@pytest.mark.parametrize("prof", ALL_SM2_PROFILES, ids=lambda p: p.describe())
def test_sm2_round_trip_every_profile(prof, keypair):
    d, p = keypair
    for msg in (b"\x00", b"x", '{"姓名": "张三"}'.encode()):
        assert sm2_decrypt(sm2_encrypt(msg, p, prof), d, prof) == msg


def test_sm2_wire_layout(keypair):
    d, p = keypair
    msg = b"0123456789"
    raw = bytes.fromhex(sm2_encrypt(msg, p, SM2Profile(order="C1C3C2", c1_prefix=True)))
    assert raw[0] == 4 and len(raw) == 1 + 64 + 32 + len(msg)
    raw = bytes.fromhex(sm2_encrypt(msg, p, SM2Profile(order="C1C2C3", c1_prefix=False)))
    assert len(raw) == 64 + len(msg) + 32
    c1 = (int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"))
    s = ec.mul_point(c1, int(d, 16))
    x2y2 = s[0].to_bytes(32, "big") + s[1].to_bytes(32, "big")
    assert raw[-32:] == sm3_digest(x2y2[:32] + msg + x2y2[32:])  # C3 last


def test_sm2_one_byte_messages_never_fail(keypair):
    # ~1/256 of 1-byte encryptions hit an all-zero KDF output: must retry internally, never fail.
    d, p = keypair
    prof = SM2Profile()
    for i in range(256):
        m = bytes([i % 256])
        assert sm2_decrypt(sm2_encrypt(m, p, prof), d, prof) == m


def test_sm2_kdf_all_zero_picks_new_k(monkeypatch, keypair):
    d, p = keypair
    real = cc.sm3.sm3_kdf
    calls = {"n": 0}

    def first_zero(z, klen):
        calls["n"] += 1
        return b"\0" * klen if calls["n"] == 1 else real(z, klen)

    monkeypatch.setattr("core.crypto.sm3.sm3_kdf", first_zero)
    # 32 bytes: the real KDF on the new k is all-zero with probability 2^-256, so the count is exact
    # (a 1-byte message made the second, real call all-zero 1 time in 256 and the count 3).
    msg = b"z" * 32
    ct = sm2_encrypt(msg, p, SM2Profile())
    monkeypatch.undo()
    assert calls["n"] == 2 and sm2_decrypt(ct, d, SM2Profile()) == msg


def test_sm2_empty_plaintext_is_rejected(keypair):
    d, p = keypair
    with pytest.raises(CryptoError, match="明文为空"):
        sm2_encrypt(b"", p, SM2Profile())
    raw = bytes.fromhex(sm2_encrypt(b"a", p, SM2Profile()))[:-1]  # C1 || C3 with an empty C2
    with pytest.raises(CryptoError, match="密文过短"):
        sm2_decrypt(raw.hex(), d, SM2Profile())
    der = asn1.encode_sm2_ciphertext(*ec.mul_g(5), b"\0" * 32, b"")
    with pytest.raises(CryptoError, match="C2 为空"):
        sm2_decrypt(der.hex(), d, SM2Profile(format="asn1"))


def test_sm2_50kb_payload(keypair):
    d, p = keypair
    msg = (json.dumps([{"id": i, "name": "费用明细"} for i in range(2000)]).encode() * 2)[: 50 * 1024]
    for prof in (SM2Profile(), SM2Profile(format="asn1", output="base64")):
        assert sm2_decrypt(sm2_encrypt(msg, p, prof), d, prof) == msg


@pytest.mark.parametrize("first", ["0", "4"])
def test_sm2_keys_whose_x_starts_with_0_or_4(first):
    d, p = _key_with_x_starting(first)
    assert p.startswith("04" + first)
    assert normalize_public_key(p) == p[2:]
    assert normalize_public_key(p[2:]) == p[2:]  # X||Y without 04 is never mistaken for 04-prefixed
    for prof in (SM2Profile(), SM2Profile(c1_prefix=False, order="C1C2C3"), SM2Profile(format="asn1")):
        assert sm2_decrypt(sm2_encrypt(b"key edge", p, prof), d, prof) == b"key edge"
        assert sm2_decrypt(sm2_encrypt(b"key edge", p[2:], prof), d, prof) == b"key edge"
    sp = SM2SignProfile()
    assert sm2_verify(b"m", sm2_sign(b"m", d, sp), p[2:], sp)


def test_sm2_asn1_minimal_der_and_leading_zero_coordinates(keypair):
    d, p = keypair
    prof = SM2Profile(format="asn1")
    for _ in range(2000):
        der = bytes.fromhex(sm2_encrypt(b"lead", p, prof))
        items = asn1.read_all(asn1.read_single(der, asn1.SEQUENCE))
        xs, ys = items[0][1], items[1][1]
        if len(xs) < 32 or len(ys) < 32:
            break
    else:
        pytest.fail("no ciphertext with a short coordinate in 2000 tries")
    for v in (xs, ys):
        assert v[0] != 0 or (len(v) > 1 and v[1] & 0x80)  # minimal: leading 00 only before a high bit
    assert sm2_decrypt(der.hex(), d, prof) == b"lead"
    # A non-minimal (fixed 32-byte) encoding from some Java stacks is still accepted.
    x, y, c3, c2 = asn1.decode_sm2_ciphertext(der)
    padded = asn1.seq(
        asn1.tlv(asn1.INTEGER, b"\0" + x.to_bytes(32, "big")),
        asn1.tlv(asn1.INTEGER, b"\0" + y.to_bytes(32, "big")),
        asn1.tlv(asn1.OCTET_STRING, c3),
        asn1.tlv(asn1.OCTET_STRING, c2),
    )
    assert sm2_decrypt(padded.hex(), d, prof) == b"lead"


def test_sm2_wrong_key_order_tamper_prefix_messages(keypair):
    d, p = keypair
    other_d, _ = generate_sm2_keypair()
    prof = SM2Profile(order="C1C3C2", c1_prefix=True)
    ct = sm2_encrypt(b"secret payload", p, prof)
    with pytest.raises(CryptoError, match="C3 校验不符（密钥错误或密文顺序 C1C3C2/C1C2C3 不符）") as e:
        sm2_decrypt(ct, other_d, prof)
    assert "请把 order" not in str(e.value)
    with pytest.raises(CryptoError, match="C3 校验不符.*按 C1C3C2 顺序可通过校验"):
        sm2_decrypt(ct, d, SM2Profile(order="C1C2C3", c1_prefix=True))
    tampered = bytearray.fromhex(ct)
    tampered[-1] ^= 1
    with pytest.raises(CryptoError, match="C3 校验不符"):
        sm2_decrypt(tampered.hex(), d, prof)
    with pytest.raises(CryptoError, match="C1 不是 SM2 曲线上的点.*c1_prefix 应为 true"):
        sm2_decrypt(ct, d, SM2Profile(c1_prefix=False))
    no04 = sm2_encrypt(b"secret payload", p, SM2Profile(c1_prefix=False))
    if not no04.startswith("04"):
        with pytest.raises(CryptoError, match="不是 C1 的 04 前缀"):
            sm2_decrypt(no04, d, prof)
    asn = sm2_encrypt(b"secret payload", p, SM2Profile(format="asn1"))
    with pytest.raises(CryptoError, match="format 应为 asn1"):
        sm2_decrypt(asn, d, prof)
    with pytest.raises(CryptoError, match="不是 GM/T 0009 ASN.1 密文"):
        sm2_decrypt(ct, d, SM2Profile(format="asn1"))
    with pytest.raises(CryptoError, match="不是合法的 Base64"):
        sm2_decrypt(ct + "!", d, SM2Profile(output="base64"))


# --- SM2 signatures ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "prof",
    [
        SM2SignProfile(user_id=u, encoding=e, output=o, legacy_no_z=z)
        for u in ("1234567812345678", "", "医院-001")
        for e in ("der", "raw")
        for o in ("hex", "HEX", "base64")
        for z in (False, True)
    ],
    ids=lambda p: p.describe(),
)
def test_sm2_sign_verify_every_profile(prof, keypair):
    d, p = keypair
    for msg in (b"", b"x", b"y" * 50_000):
        sig = sm2_sign(msg, d, prof)
        assert sm2_verify(msg, sig, p, prof)
        assert not sm2_verify(msg + b"!", sig, p, prof)
    if prof.encoding == "raw" and prof.output != "base64":
        assert len(sig) == 128


def test_sm2_sign_profile_mismatches_fail_verification(keypair):
    d, p = keypair
    std = SM2SignProfile()
    sig = sm2_sign(b"m", d, std)
    assert not sm2_verify(b"m", sig, p, SM2SignProfile(user_id=""))
    assert not sm2_verify(b"m", sig, p, SM2SignProfile(legacy_no_z=True))
    assert not sm2_verify(b"m", sig, p, SM2SignProfile(encoding="raw"))
    assert not sm2_verify(b"m", "zz", p, std)  # malformed -> False, not an exception
    assert not sm2_verify(b"m", sig, generate_sm2_keypair()[1], std)
    r, s = asn1.decode_signature(bytes.fromhex(sig))
    assert not sm2_verify(b"m", asn1.encode_signature(r, ec.N - s).hex(), p, std)
    assert not sm2_verify(b"m", asn1.encode_signature(0, s).hex(), p, std)
    with pytest.raises(CryptoError, match="SM2 公钥"):
        sm2_verify(b"m", sig, "04abcd", std)


def test_sm2_sign_with_given_public_key(keypair):
    d, p = keypair
    sp = SM2SignProfile(encoding="raw")
    assert sm2_verify(b"m", sm2_sign(b"m", d, sp, public_key=p), p, sp)
    with pytest.raises(CryptoError, match="公钥与私钥不匹配"):
        sm2_sign(b"m", d, sp, public_key=generate_sm2_keypair()[1])


def test_sm2_signatures_are_randomised_and_der_is_minimal(keypair):
    d, _ = keypair
    sigs = {sm2_sign(b"same", d, SM2SignProfile()) for _ in range(5)}
    assert len(sigs) == 5
    for s in sigs:
        r, ss = asn1.decode_signature(bytes.fromhex(s))
        assert bytes.fromhex(s) == asn1.encode_signature(r, ss)


def test_openssl_vectors_committed_decrypt_and_verify():
    d = normalize_private_key(VECTORS["private_key_pem"])
    p = normalize_public_key(VECTORS["public_key_pem"])
    assert public_key_from_private(d) == "04" + p
    msg = VECTORS["plaintext_utf8"].encode()
    assert sm2_decrypt(VECTORS["sm2_ciphertext_asn1_hex"], d, SM2Profile(format="asn1")) == msg
    assert sm2_verify(msg, VECTORS["sm2_signature_distid_der_hex"], p, SM2SignProfile())
    assert sm2_verify(msg, VECTORS["sm2_signature_empty_id_der_hex"], p, SM2SignProfile(user_id=""))
    assert not sm2_verify(msg, VECTORS["sm2_signature_empty_id_der_hex"], p, SM2SignProfile())


# --- keys ------------------------------------------------------------------------------------------------

def test_public_key_formats(keypair):
    d, p = keypair
    xy = p[2:]
    y = int(xy[64:], 16)
    compressed = ("03" if y & 1 else "02") + xy[:64]
    pem = public_key_pem(p)
    der = base64.b64decode("".join(pem.strip().splitlines()[1:-1]))
    forms = [
        p, p.upper(), xy, " " + xy + "\n", compressed, pem, pem.encode(), der, base64.b64encode(der).decode(),
        bytes.fromhex(p), bytes.fromhex(xy), bytes.fromhex(compressed),
        base64.b64encode(bytes.fromhex(p)).decode(),
    ]
    for f in forms:
        assert normalize_public_key(f) == xy, f
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAE")


@pytest.mark.parametrize(
    "bad, says",
    [
        ("", "公钥为空"),
        ("04" + "ab" * 10, "22 位 hex"),
        ("04" + "00" * 64, "不是 SM2 曲线上的点"),
        ("02" + "ff" * 32, "x 不在 SM2 曲线上"),
        ("hello world!", "既不是 hex、PEM 也不是 Base64"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "openssl x509 -pubkey"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA", "PEM 格式不完整"),
        (base64.b64encode(b"\x30\x03\x02\x01\x00").decode(), "不是 X.509 SubjectPublicKeyInfo"),
        (b"\x30\x82\xff\xff\x00\x01", "DER 字节"),
    ],
)
def test_public_key_errors_name_what_they_got(bad, says):
    with pytest.raises(CryptoError, match=says):
        normalize_public_key(bad)


def test_public_key_on_other_curve_is_rejected():
    # P-256 SPKI (prime256v1): must be refused naming the curve, not silently used.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec as cec

    k = cec.generate_private_key(cec.SECP256R1())
    enc, fmt = serialization.Encoding, serialization.PublicFormat
    der = k.public_key().public_bytes(enc.DER, fmt.SubjectPublicKeyInfo)
    with pytest.raises(CryptoError, match="1.2.840.10045.3.1.7"):
        normalize_public_key(der)
    p8 = k.private_bytes(enc.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(CryptoError, match="not SM2"):
        normalize_private_key(p8.decode())


def test_private_key_formats(keypair):
    d, p = keypair
    pem = private_key_pem(d)
    der = base64.b64decode("".join(pem.strip().splitlines()[1:-1]))
    sec1 = asn1.encode_ec_private(int(d, 16), bytes.fromhex(p), with_params=True)
    b64 = base64.b64encode(sec1).decode()
    sec1_pem = f"-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----"
    forms = [
        d, d.upper(), "00" + d, pem, pem.encode(), der, base64.b64encode(der).decode(), sec1, sec1_pem,
        sec1_pem.replace("EC PRIVATE", "SM2 PRIVATE"), bytes.fromhex(d),
    ]
    for f in forms:
        assert normalize_private_key(f) == d, f
    assert public_key_from_private(pem) == p


@pytest.mark.parametrize(
    "bad, says",
    [
        ("", "私钥为空"),
        ("abc", "3 位 hex"),
        ("0" * 64, "不在 \\[1, n-2\\]"),
        (f"{ec.N - 1:064x}", "不在 \\[1, n-2\\]"),
        ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----", "加密的 PKCS#8"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "PEM 类型是 'PUBLIC KEY'"),
        (base64.b64encode(b"\x30\x03\x02\x01\x00").decode(), "既不是 PKCS#8 也不是 SEC1"),
    ],
)
def test_private_key_errors_name_what_they_got(bad, says):
    with pytest.raises(CryptoError, match=says):
        normalize_private_key(bad)


def test_generate_keypair_shape():
    d, p = generate_sm2_keypair()
    assert len(d) == 64 and len(p) == 130 and p.startswith("04")
    assert public_key_from_private(d) == p
    assert ec.is_on_curve((int(p[2:66], 16), int(p[66:], 16)))


def test_curve_arithmetic_edge_cases():
    assert ec.mul_g(ec.N) is None and ec.mul_g(0) is None
    assert ec.mul_g(1) == ec.G
    minus_g = ec.mul_g(ec.N - 1)
    assert minus_g == (ec.GX, ec.P - ec.GY)
    assert ec.mul_add(1, 1, ec.G) == ec.mul_g(2)  # doubling inside the general addition
    assert ec.mul_add(1, ec.N - 1, ec.G) is None  # P + (-P)
    pt = ec.mul_g(12345)
    for k in (1, 2, 3, 15, 16, 17, 2**255 + 1, ec.N - 2):
        expect = ec.mul_g(k * 12345 % ec.N)
        assert ec.mul_point(pt, k) == expect
    for _ in range(6):  # crosses the reuse threshold, exercising the cached comb table
        assert ec.mul_point(pt, 777, reuse=True) == ec.mul_g(777 * 12345 % ec.N)


# --- profiles --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "prof",
    [SM4Profile(), SM4Profile(mode="CBC", iv="00" * 16, output="base64", padding="zero", key_format="text"),
     SM2Profile(), SM2Profile(order="C1C2C3", c1_prefix=False, output="HEX"), SM2Profile(format="asn1"),
     SM2SignProfile(), SM2SignProfile(user_id="", encoding="raw", output="base64", legacy_no_z=True)],
)
def test_profile_dict_round_trip_and_describe(prof):
    d = prof.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert type(prof).from_dict(d) == prof
    assert prof.describe()


def test_profile_describe_texts():
    assert SM4Profile().describe() == "SM4-ECB / PKCS7 / 密钥hex / 输出小写hex"
    assert SM2Profile().describe() == "SM2 C1C3C2 / C1带04前缀 / 输出小写hex"
    assert "ASN.1" in SM2Profile(format="asn1").describe()
    assert "随机IV前置" in SM4Profile(mode="CBC").describe()


@pytest.mark.parametrize(
    "factory, says",
    [
        (lambda: SM4Profile(mode="CTR"), "mode='CTR'"),
        (lambda: SM4Profile(padding="pkcs5"), "padding='pkcs5'"),
        (lambda: SM4Profile(iv="00" * 16), "仅用于 CBC"),
        (lambda: SM4Profile(mode="CBC", iv="00"), "32 位 hex"),
        (lambda: SM2Profile(order="C2C1C3"), "order"),
        (lambda: SM2Profile(format="asn1", order="C1C2C3"), "顺序固定为 C1C3C2"),
        (lambda: SM2Profile(c1_prefix="yes"), "c1_prefix"),
        (lambda: SM2SignProfile(encoding="pem"), "encoding"),
        (lambda: SM4Profile.from_dict({"mode": "ECB", "pading": "pkcs7"}), "未知参数 unknown keys: pading"),
    ],
)
def test_profile_validation(factory, says):
    with pytest.raises(CryptoError, match=says):
        factory()


# --- detection -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "prof",
    [
        SM4Profile(),
        SM4Profile(output="base64", key_format="hex"),
        SM4Profile(mode="CBC", iv="00" * 16, output="HEX"),
        SM4Profile(mode="CBC", iv=None, output="base64"),
        SM4Profile(mode="CBC", iv=IV_IS_KEY),  # found as the flag, never as the key bytes
        SM4Profile(padding="zero"),
    ],
    ids=lambda p: p.describe(),
)
def test_detect_sm4_profile(prof):
    msg = b'{"reportDate": "2024-05-01", "value": 17}'
    ct = sm4_encrypt(msg, SM4_KEY, prof)
    found = detect_sm4_profile(SM4_KEY, msg, ct)
    assert prof in found
    assert all(sm4_decrypt(ct, SM4_KEY, f) == msg for f in found)


def test_detect_sm4_text_and_base64_keys():
    text_key = "abcdefghijklmnop"
    ct = sm4_encrypt(b"data", text_key, SM4Profile(key_format="text"))
    # One block: ECB and CBC with a zero IV give the same bytes, so both are reported.
    assert detect_sm4_profile(text_key, b"data", ct) == [
        SM4Profile(key_format="text"), SM4Profile(mode="CBC", iv="0" * 32, key_format="text")
    ]
    long_msg = b"more than one block of data"
    ct = sm4_encrypt(long_msg, text_key, SM4Profile(key_format="text"))
    assert detect_sm4_profile(text_key, long_msg, ct) == [SM4Profile(key_format="text")]
    b64 = base64.b64encode(bytes(range(16))).decode()
    ct = sm4_encrypt(b"data", b64, SM4Profile(key_format="base64", output="base64"))
    assert SM4Profile(key_format="base64", output="base64") in detect_sm4_profile(b64, b"data", ct)
    assert detect_sm4_profile(SM4_KEY, b"other", ct) == []


@pytest.mark.parametrize("prof", ALL_SM2_PROFILES, ids=lambda p: p.describe())
def test_detect_sm2_profile(prof, keypair):
    d, p = keypair
    msg = b'{"infno": "fee_list_d"}'
    ct = sm2_encrypt(msg, p, prof)
    found = detect_sm2_profile(d, msg, ct)
    assert prof in found
    assert all(f.output == prof.output or {f.output, prof.output} == {"hex", "HEX"} for f in found)
    assert len({(f.format, f.order, f.c1_prefix) for f in found}) == 1


# --- misc ------------------------------------------------------------------------------------------------

def test_crypto_error_is_a_baosong_error():
    from core.errors import BaosongError

    assert issubclass(CryptoError, BaosongError) and issubclass(CryptoError, Exception)
