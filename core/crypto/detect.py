"""Find which profile a peer uses from one known (key, plaintext, ciphertext) sample.

Used when onboarding a regulator whose documents do not state the SM2/SM4 settings: paste a sample from their
demo code, get the profile(s) that reproduce it.  All matching profiles are returned (e.g. an all-digit hex
ciphertext matches both "hex" and "HEX"); callers show them and let a person choose.
"""

from __future__ import annotations

import itertools
import re

from ._codec import OUTPUTS
from .errors import CryptoError
from .profiles import IV_IS_KEY, SM2Profile, SM4Profile
from .sm2 import sm2_decrypt
from .sm4 import parse_sm4_key, sm4_decrypt


def _plausible_outputs(ciphertext: str) -> list[str]:
    s = ciphertext.strip()
    out = []
    if re.fullmatch(r"[0-9a-fA-F]+", s) and len(s) % 2 == 0:
        if not re.search(r"[A-F]", s):
            out.append("hex")
        if not re.search(r"[a-f]", s):
            out.append("HEX")
    if re.fullmatch(r"[A-Za-z0-9+/=\s]+", s):
        out.append("base64")
    return [o for o in OUTPUTS if o in out]


def detect_sm4_profile(key: str, plaintext: bytes, ciphertext: str) -> list[SM4Profile]:
    found: list[SM4Profile] = []
    for key_format in ("hex", "text", "base64"):
        try:
            parse_sm4_key(key, key_format)  # this key format does not fit the key: skip it
        except CryptoError:
            continue
        # CBC IVs seen in the wild: all zero, random and prepended, and (bad practice, but real) the key.
        # The last is found as the flag IV_IS_KEY, never as the key's bytes.
        ivs = [("ECB", None), ("CBC", "0" * 32), ("CBC", None), ("CBC", IV_IS_KEY)]
        for output in _plausible_outputs(ciphertext):
            for (mode, iv), padding in itertools.product(ivs, ("pkcs7", "zero", "none")):
                profile = SM4Profile(mode=mode, padding=padding, key_format=key_format, output=output, iv=iv)
                try:
                    if sm4_decrypt(ciphertext, key, profile) == plaintext and profile not in found:
                        found.append(profile)
                except CryptoError:
                    continue
    return found


def detect_sm2_profile(private_key: str, plaintext: bytes, ciphertext: str) -> list[SM2Profile]:
    candidates = [SM2Profile(format="asn1")] + [
        SM2Profile(order=o, c1_prefix=p) for o in ("C1C3C2", "C1C2C3") for p in (True, False)
    ]
    found: list[SM2Profile] = []
    for output in _plausible_outputs(ciphertext):
        for c in candidates:
            profile = SM2Profile(order=c.order, c1_prefix=c.c1_prefix, format=c.format, output=output)
            try:
                if sm2_decrypt(ciphertext, private_key, profile) == plaintext:
                    found.append(profile)
            except CryptoError:
                continue
    return found
