"""Baosong's one crypto module: every SM2, SM3 and SM4 operation goes through here.

All wire choices are explicit profile objects (``SM4Profile``, ``SM2Profile``, ``SM2SignProfile``) stored per
regulator; nothing relies on a library default.  Libraries: ``cryptography`` for SM3/SM4 (OpenSSL speed), our
own curve arithmetic on Python ints for SM2 (``ec``), randomness from ``secrets``.  ``gmssl`` is only a test
peer, never used here.
"""

from .detect import detect_sm2_profile, detect_sm4_profile
from .digest import DIGESTS, KEYED_DIGESTS, PLAIN_DIGESTS, digest, is_keyed
from .errors import CryptoError
from .keys import (
    generate_sm2_keypair,
    normalize_private_key,
    normalize_public_key,
    private_key_pem,
    public_key_from_private,
    public_key_pem,
)
from .profiles import IV_IS_KEY, SM2Profile, SM2SignProfile, SM4Profile
from .selftest import self_test
from .sm2 import sm2_decrypt, sm2_encrypt, sm2_sign, sm2_verify
from .sm3 import hmac_sm3, sm3_digest, sm3_hex
from .sm4 import sm4_decrypt, sm4_encrypt

__all__ = [
    "DIGESTS",
    "KEYED_DIGESTS",
    "PLAIN_DIGESTS",
    "IV_IS_KEY",
    "CryptoError",
    "SM2Profile",
    "SM2SignProfile",
    "SM4Profile",
    "detect_sm2_profile",
    "detect_sm4_profile",
    "digest",
    "generate_sm2_keypair",
    "hmac_sm3",
    "is_keyed",
    "normalize_private_key",
    "normalize_public_key",
    "private_key_pem",
    "public_key_from_private",
    "public_key_pem",
    "self_test",
    "sm2_decrypt",
    "sm2_encrypt",
    "sm2_sign",
    "sm2_verify",
    "sm3_digest",
    "sm3_hex",
    "sm4_decrypt",
    "sm4_encrypt",
]
