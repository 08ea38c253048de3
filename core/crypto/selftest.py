"""Start-up self test: known answers for every primitive, so a broken build or library never sends data."""

from __future__ import annotations

from . import ec, sm2, sm3, sm4
from .errors import CryptoError
from .profiles import SM2Profile, SM2SignProfile, SM4Profile

# GB/T 32907-2016 Appendix A.1
_SM4_KEY = "0123456789abcdeffedcba9876543210"
_SM4_CT = "681edf34d206965e86b3e94f536e4246"
# GB/T 32905-2016 Appendix A.1
_SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
# GM/T 0003.5-2012 / GB/T 32918.5-2017 examples on the recommended curve
# (signature: Annex A, encryption: Annex C)
STD_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
STD_PUB = (
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
STD_K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
STD_ZA = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
STD_R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
STD_S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
# C1 = [k]G; note x1 itself starts with 04 (the exact case gmssl's lstrip("04") corrupts).
STD_C1 = (
    "04"
    "04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73"
    "E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0"
)
STD_C3 = "59983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766"
STD_C2 = "21886CA989CA9C7D58087307CA93092D651EFA"


def _check(name: str, ok: bool) -> None:
    if not ok:
        raise CryptoError(f"加密自检失败: {name} / crypto self test failed: {name}")


def self_test() -> None:
    """Raise CryptoError("加密自检失败: ...") unless SM3, SM4 and SM2 all give the standard answers."""
    try:
        _run()
    except CryptoError as exc:
        if str(exc).startswith("加密自检失败"):
            raise
        raise CryptoError(f"加密自检失败: {exc}") from exc
    except Exception as exc:  # any library breakage is a self-test failure, reported as such
        raise CryptoError(f"加密自检失败: {type(exc).__name__}: {exc}") from exc


def _run() -> None:
    _check("SM3(\"abc\") 已知答案不符", sm3.sm3_hex(b"abc") == _SM3_ABC)
    ecb = SM4Profile(mode="ECB", padding="none", key_format="hex", output="hex")
    _check("SM4 GB/T 32907 已知答案不符", sm4.sm4_encrypt(bytes.fromhex(_SM4_KEY), _SM4_KEY, ecb) == _SM4_CT)
    _check("SM4 解密已知答案不符", sm4.sm4_decrypt(_SM4_CT, _SM4_KEY, ecb) == bytes.fromhex(_SM4_KEY))
    cbc = SM4Profile(mode="CBC", padding="pkcs7", key_format="hex", output="base64")
    ct = sm4.sm4_encrypt(b"baosong", _SM4_KEY, cbc)
    _check("SM4-CBC 往返不符", sm4.sm4_decrypt(ct, _SM4_KEY, cbc) == b"baosong")

    pub = ec.mul_g(STD_D)
    _check("SM2 公钥推导不符", pub is not None and f"{pub[0]:064X}{pub[1]:064X}" == STD_PUB)
    assert pub is not None
    _check("SM2 Z 值不符", sm2.sm2_z(b"1234567812345678", pub).hex().upper() == STD_ZA)
    e = int.from_bytes(sm3.sm3_digest(bytes.fromhex(STD_ZA) + b"message digest"), "big")
    _check("SM2 签名已知答案不符", sm2._sign_e(e, STD_D, STD_K) == (STD_R, STD_S))
    c1, c3, c2 = sm2._encrypt_parts(b"encryption standard", pub, STD_K)
    _check(
        "SM2 加密已知答案不符",
        f"04{c1[0]:064X}{c1[1]:064X}" == STD_C1 and c3.hex().upper() == STD_C3 and c2.hex().upper() == STD_C2,
    )
    std_ct = STD_C1 + STD_C3 + STD_C2
    prof = SM2Profile(order="C1C3C2", c1_prefix=True, format="raw", output="HEX")
    _check("SM2 解密已知答案不符", sm2.sm2_decrypt(std_ct, f"{STD_D:064x}", prof) == b"encryption standard")

    # Fresh-randomness round trips (exercise secrets-drawn k and the C3 check).
    from .keys import generate_sm2_keypair

    d, p = generate_sm2_keypair()
    msg = "报送自检 self-test".encode()
    for profile in (prof, SM2Profile(format="asn1", output="base64")):
        _check("SM2 加解密往返不符", sm2.sm2_decrypt(sm2.sm2_encrypt(msg, p, profile), d, profile) == msg)
    sp = SM2SignProfile()
    sig = sm2.sm2_sign(msg, d, sp)
    _check("SM2 签名验签往返不符", sm2.sm2_verify(msg, sig, p, sp))
    _check("SM2 验签未能拒绝篡改消息", not sm2.sm2_verify(msg + b"!", sig, p, sp))
