"""core.crypto against independent peers, in both directions: gmssl 3.2.2 and pysmx (in-process) and the
OpenSSL 3 command line.  gmssl is a test peer only (the specs README says why it is unfit for production)."""

from __future__ import annotations

import base64
import functools
import shutil
import subprocess
from pathlib import Path

import pytest

from core.crypto import (
    SM2Profile,
    SM2SignProfile,
    SM4Profile,
    asn1,
    detect_sm2_profile,
    generate_sm2_keypair,
    normalize_private_key,
    normalize_public_key,
    private_key_pem,
    public_key_from_private,
    public_key_pem,
    sm2_decrypt,
    sm2_encrypt,
    sm2_sign,
    sm2_verify,
    sm3_hex,
    sm4_decrypt,
    sm4_encrypt,
)

gmssl_sm2 = pytest.importorskip("gmssl.sm2", reason="gmssl (test peer) not installed")
gmssl_sm3 = pytest.importorskip("gmssl.sm3")
gmssl_sm4 = pytest.importorskip("gmssl.sm4")

SM4_KEY = "0123456789abcdeffedcba9876543210"
IV = "000102030405060708090a0b0c0d0e0f"
MSGS = [b"x", b'{"infno":"fee_list_d","data":"\xe6\x8a\xa5"}', bytes(range(256)) * 3]


def _key_with_x_starting(chars: str) -> tuple[str, str]:
    while True:
        d, p = generate_sm2_keypair()
        if p[2] in chars:
            return d, p


@pytest.fixture(scope="module", params=["random", "x starts with 0", "x starts with 4"])
def keypair(request):
    if request.param == "random":
        return generate_sm2_keypair()
    return _key_with_x_starting(request.param[-1])


# --- gmssl ---------------------------------------------------------------------------------------------

def _gm_sm4(mode: int, key_hex: str):
    # gmssl 3.2.2 numbers paddings PKCS7=0, ZERO=1 (git master differs): always use its named constants.
    c = gmssl_sm4.CryptSM4(padding_mode=gmssl_sm4.PKCS7)
    c.set_key(bytes.fromhex(key_hex), mode)
    return c


@pytest.mark.parametrize("msg", [b"", b"a", b"0123456789abcdef", "医保结算".encode() * 9])
def test_sm4_ecb_pkcs7_gmssl_both_ways(msg):
    prof = SM4Profile(mode="ECB", padding="pkcs7", key_format="hex", output="hex")
    ours = sm4_encrypt(msg, SM4_KEY, prof)
    assert _gm_sm4(gmssl_sm4.SM4_DECRYPT, SM4_KEY).crypt_ecb(bytes.fromhex(ours)) == msg
    theirs = _gm_sm4(gmssl_sm4.SM4_ENCRYPT, SM4_KEY).crypt_ecb(msg)
    assert theirs.hex() == ours  # ECB is deterministic: identical bytes
    assert sm4_decrypt(theirs.hex(), SM4_KEY, prof) == msg


@pytest.mark.parametrize("msg", [b"a", b"0123456789abcdef", "医保结算".encode() * 9])
def test_sm4_cbc_pkcs7_gmssl_both_ways(msg):
    prof = SM4Profile(mode="CBC", padding="pkcs7", key_format="hex", output="base64", iv=IV)
    ours = base64.b64decode(sm4_encrypt(msg, SM4_KEY, prof))
    assert _gm_sm4(gmssl_sm4.SM4_DECRYPT, SM4_KEY).crypt_cbc(bytes.fromhex(IV), ours) == msg
    theirs = _gm_sm4(gmssl_sm4.SM4_ENCRYPT, SM4_KEY).crypt_cbc(bytes.fromhex(IV), msg)
    assert theirs == ours
    assert sm4_decrypt(base64.b64encode(theirs).decode(), SM4_KEY, prof) == msg


def test_sm3_matches_gmssl():
    for msg in (b"", b"abc", bytes(range(256)) * 4):
        assert sm3_hex(msg) == gmssl_sm3.sm3_hash(list(msg))


def _gm(d: str, p: str, mode: int = 1):
    """A gmssl peer for key pair (d, p).  Its constructor runs ``lstrip("04")`` on any key *starting* with
    "04", which also hits a bare X||Y whose X begins with 04 (1 key in 256): set the attribute directly."""
    crypt = gmssl_sm2.CryptSM2(private_key=d, public_key=normalize_public_key(p), mode=mode)
    crypt.public_key = normalize_public_key(p)
    return crypt


def _gm_encrypt(crypt, msg: bytes) -> bytes:
    for _ in range(50):  # gmssl returns None ~1/256 of the time for 1-byte messages
        ct = crypt.encrypt(msg)
        if ct is not None:
            return ct
    raise AssertionError("gmssl kept failing")


@pytest.mark.parametrize("mode, order", [(0, "C1C2C3"), (1, "C1C3C2")])
def test_sm2_encrypt_gmssl_both_ways(keypair, mode, order):
    d, p = keypair
    crypt = _gm(d, p, mode)
    prof = SM2Profile(order=order, c1_prefix=False, format="raw", output="hex")
    for msg in MSGS:
        theirs = _gm_encrypt(crypt, msg)
        assert sm2_decrypt(theirs.hex(), d, prof) == msg
        ours = sm2_encrypt(msg, p, prof)
        assert crypt.decrypt(bytes.fromhex(ours)) == msg
        # With 04 (Hutool/BouncyCastle style) we strip it before handing to gmssl.
        ours04 = bytes.fromhex(sm2_encrypt(msg, p, SM2Profile(order=order, c1_prefix=True)))
        assert ours04[0] == 4 and crypt.decrypt(ours04[1:]) == msg
    # detection finds the gmssl layout from a sample
    sample = _gm_encrypt(crypt, b"detect me please").hex()
    assert SM2Profile(order=order, c1_prefix=False) in detect_sm2_profile(d, b"detect me please", sample)


def test_gmssl_default_mode_is_c1c2c3_without_04():
    d, p = generate_sm2_keypair()
    crypt = gmssl_sm2.CryptSM2(private_key=d, public_key=p[2:])  # mode defaults to 0
    crypt.public_key = p[2:]
    ct = _gm_encrypt(crypt, b"which order?").hex()
    assert detect_sm2_profile(d, b"which order?", ct) == [SM2Profile(order="C1C2C3", c1_prefix=False)]


def test_gmssl_lstrip_trap_is_real_and_avoided():
    d, p = _key_with_x_starting("4")  # p = "04" "4..." -> gmssl strips both leading "04" and the "4"
    assert gmssl_sm2.CryptSM2(private_key=d, public_key=p).public_key != p[2:]
    assert gmssl_sm2.CryptSM2(private_key=d, public_key=normalize_public_key(p)).public_key == p[2:]
    # Even the bare X||Y form is corrupted when X itself starts with "04" (found by this suite):
    while not p.startswith("0404"):
        d, p = generate_sm2_keypair()
    assert gmssl_sm2.CryptSM2(private_key=d, public_key=p[2:]).public_key != p[2:]
    crypt = _gm(d, p)
    assert sm2_decrypt(_gm_encrypt(crypt, b"0404").hex(), d, SM2Profile(c1_prefix=False)) == b"0404"


def test_sm2_signature_gmssl_both_ways(keypair):
    d, p = keypair
    crypt = _gm(d, p)
    prof = SM2SignProfile(user_id="1234567812345678", encoding="raw", output="hex")  # gmssl hard-codes the id
    for msg in MSGS:
        theirs = crypt.sign_with_sm3(msg)
        assert sm2_verify(msg, theirs, p, prof)
        ours = sm2_sign(msg, d, prof)
        assert crypt.verify_with_sm3(ours, msg)
        assert not crypt.verify_with_sm3(ours, msg + b"!")


# --- pysmx (snowland-smx) --------------------------------------------------------------------------------

def test_sm2_pysmx_both_ways(keypair):
    from pysmx.SM2 import Decrypt, Encrypt, Sign, Verify

    d, p = keypair
    xy = normalize_public_key(p)
    for order in ("C1C3C2", "C1C2C3"):
        prof = SM2Profile(order=order, c1_prefix=False)
        msg = b"pysmx peer " + order.encode()
        theirs = None
        while theirs is None:
            theirs = Encrypt(msg, xy, 64, mode=order)
        assert sm2_decrypt(theirs.hex(), d, prof) == msg
        assert Decrypt(sm2_encrypt(msg, p, prof), d, 64, Hexstr=1, mode=order) == msg
    import secrets as _s

    sig = None
    while sig is None:  # pysmx returns None for the rare invalid k instead of retrying
        sig = Sign(b"signed", d, f"{_s.randbelow(2**255) + 1:064x}", 64, uid="1234567812345678")
    raw = SM2SignProfile(encoding="raw")
    assert sm2_verify(b"signed", sig.hex(), p, raw)
    assert Verify(sm2_sign(b"signed", d, raw), b"signed", xy, 64, uid="1234567812345678")


# --- OpenSSL 3 command line -------------------------------------------------------------------------------

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@functools.cache
def _openssl_supports(what: str) -> bool:
    try:
        if what == "sm4":
            out = subprocess.run([OPENSSL, "list", "-cipher-algorithms"], capture_output=True, text=True)
            return "SM4-ECB" in out.stdout.upper() and "SM4-CBC" in out.stdout.upper()
        out = subprocess.run([OPENSSL, "list", "-public-key-algorithms"], capture_output=True, text=True)
        return "SM2" in out.stdout.upper()
    except (OSError, subprocess.SubprocessError):
        return False


needs_sm4 = pytest.mark.skipif(not _openssl_supports("sm4"), reason="openssl without SM4 support")
needs_sm2 = pytest.mark.skipif(not _openssl_supports("sm2"), reason="openssl without SM2 support")


def _ossl(*args: str, data: bytes = b"") -> bytes:
    r = subprocess.run([OPENSSL, *args], input=data, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


@needs_sm4
@pytest.mark.parametrize(
    "mode, padding, msg",
    [
        (mode, padding, msg)
        for mode in ("ECB", "CBC")
        for padding in ("pkcs7", "zero", "none")
        for msg in (b"", b"abc", b"0123456789abcdef", "重点指标日报".encode() * 5)
        if padding != "none" or len(msg) % 16 == 0  # no padding needs block-aligned input
    ],
)
def test_sm4_openssl_both_ways(mode, padding, msg):
    prof = SM4Profile(mode=mode, padding=padding, output="hex", iv=IV if mode == "CBC" else None)
    args = ["enc", f"-sm4-{mode.lower()}", "-K", SM4_KEY, "-nosalt"] + (["-iv", IV] if mode == "CBC" else [])
    # OpenSSL only knows PKCS7 or nothing: zero padding is applied by hand on its side.
    ossl_in = msg + b"\0" * (-len(msg) % 16) if padding == "zero" else msg
    pad_args = [] if padding == "pkcs7" else ["-nopad"]
    theirs = _ossl(*args, *pad_args, data=ossl_in)
    ours = sm4_encrypt(msg, SM4_KEY, prof)
    assert ours == theirs.hex()
    assert sm4_decrypt(theirs.hex(), SM4_KEY, prof) == msg
    plain = _ossl(*args, "-d", *pad_args, data=bytes.fromhex(ours))
    assert (plain.rstrip(b"\0") if padding == "zero" else plain) == msg


@needs_sm4
def test_sm4_openssl_cbc_random_iv_prepended():
    prof = SM4Profile(mode="CBC", iv=None, output="base64")
    raw = base64.b64decode(sm4_encrypt(b"random iv payload", SM4_KEY, prof))
    iv, body = raw[:16].hex(), raw[16:]
    plain = _ossl("enc", "-d", "-sm4-cbc", "-K", SM4_KEY, "-iv", iv, "-nosalt", data=body)
    assert plain == b"random iv payload"


@pytest.fixture()
def pem_files(tmp_path: Path, keypair):
    d, p = keypair
    (tmp_path / "priv.pem").write_text(private_key_pem(d))
    (tmp_path / "pub.pem").write_text(public_key_pem(p))
    return tmp_path, d, p


@needs_sm2
def test_openssl_reads_our_pems(pem_files):
    tmp, d, p = pem_files
    text = _ossl("pkey", "-in", str(tmp / "priv.pem"), "-text", "-noout").decode()
    assert "SM2" in text or "1.2.156.10197.1.301" in text
    pub_from_openssl = _ossl("pkey", "-in", str(tmp / "priv.pem"), "-pubout").decode()
    assert normalize_public_key(pub_from_openssl) == p[2:]
    der = _ossl("pkey", "-pubin", "-in", str(tmp / "pub.pem"), "-pubout", "-outform", "DER")
    assert normalize_public_key(der) == p[2:]


@needs_sm2
def test_openssl_generated_keys_all_formats(tmp_path: Path):
    key = tmp_path / "gen.pem"
    _ossl("genpkey", "-algorithm", "SM2", "-out", str(key))
    d = normalize_private_key(key.read_text())
    p = public_key_from_private(d)
    assert normalize_public_key(_ossl("pkey", "-in", str(key), "-pubout").decode()) == p[2:]
    assert normalize_private_key(_ossl("pkey", "-in", str(key), "-outform", "DER")) == d
    sec1 = _ossl("ec", "-in", str(key)).decode()  # OpenSSL 3 labels it "SM2 PRIVATE KEY"
    assert "PRIVATE KEY" in sec1 and normalize_private_key(sec1) == d
    der = _ossl("pkey", "-in", str(key), "-outform", "DER")
    assert normalize_private_key(base64.b64encode(der).decode()) == d
    compressed = _ossl("ec", "-in", str(key), "-pubout", "-conv_form", "compressed", "-outform", "DER")
    assert normalize_public_key(compressed) == p[2:]


@needs_sm2
@pytest.mark.parametrize("msg", [b"x", "上饶医保基金监管".encode(), bytes(range(256)) * 40])
def test_sm2_encrypt_openssl_both_ways(pem_files, msg):
    tmp, d, p = pem_files
    prof = SM2Profile(format="asn1", output="hex")
    ct = tmp / "ct.der"
    ct.write_bytes(bytes.fromhex(sm2_encrypt(msg, p, prof)))
    assert _ossl("pkeyutl", "-decrypt", "-inkey", str(tmp / "priv.pem"), "-in", str(ct)) == msg
    (tmp / "m").write_bytes(msg)
    theirs = _ossl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(tmp / "pub.pem"), "-in", str(tmp / "m"))
    assert sm2_decrypt(theirs.hex(), d, prof) == msg
    b64 = base64.b64encode(theirs).decode()
    assert sm2_decrypt(b64, d, SM2Profile(format="asn1", output="base64")) == msg


@needs_sm2
def test_openssl_decrypts_our_short_coordinate_ciphertexts(pem_files):
    tmp, d, p = pem_files
    prof = SM2Profile(format="asn1")
    seen = 0
    for _ in range(3000):
        der = bytes.fromhex(sm2_encrypt(b"short coordinate", p, prof))
        # x or y below 2^248: the minimal-DER INTEGER is shorter than 32 bytes (or 33 with a sign byte)
        x, y, _c3, _c2 = asn1.decode_sm2_ciphertext(der)
        if x < 1 << 248 or y < 1 << 248:
            (tmp / "ct.der").write_bytes(der)
            out = _ossl("pkeyutl", "-decrypt", "-inkey", str(tmp / "priv.pem"), "-in", str(tmp / "ct.der"))
            assert out == b"short coordinate"
            seen += 1
            if seen == 2:
                return
    pytest.fail("no short-coordinate ciphertext generated")


@needs_sm2
@pytest.mark.parametrize("user_id", ["1234567812345678", "", "ALICE123@YAHOO.COM"])
def test_sm2_signature_openssl_both_ways(pem_files, user_id):
    tmp, d, p = pem_files
    msg = "监管上报签名".encode() * 3
    (tmp / "m").write_bytes(msg)
    distid = ["-pkeyopt", f"distid:{user_id}"] if user_id else []  # no distid = empty id in OpenSSL 3
    prof = SM2SignProfile(user_id=user_id, encoding="der", output="hex")
    (tmp / "sig").write_bytes(bytes.fromhex(sm2_sign(msg, d, prof)))
    _ossl("pkeyutl", "-verify", "-pubin", "-inkey", str(tmp / "pub.pem"), "-rawin", "-digest", "sm3",
          "-in", str(tmp / "m"), "-sigfile", str(tmp / "sig"), *distid)
    theirs = _ossl("pkeyutl", "-sign", "-inkey", str(tmp / "priv.pem"), "-rawin", "-digest", "sm3",
                   "-in", str(tmp / "m"), *distid)
    assert sm2_verify(msg, theirs.hex(), p, prof)
    b64 = base64.b64encode(theirs).decode()
    assert sm2_verify(msg, b64, p, SM2SignProfile(user_id=user_id, output="base64"))
    # and a mismatched user id is caught
    assert not sm2_verify(msg, theirs.hex(), p, SM2SignProfile(user_id=user_id + "x"))
