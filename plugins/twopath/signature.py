"""数据签名 (``cainfo`` / ``signtype`` of the envelope, twopath-jiangxi-insurance.txt 1.1 #8-9 and 1.4
"调用交易时INPUT、OUTPUT节点应按照接口安全相关要求进行签名"; 1.1 suggests SM2 or SM3).

Every public example sends both empty, so the default signer is ``""`` (off). A province that requires a
signature selects one in the settings:

- ``SM3``: ``cainfo`` = hex SM3 digest of the signed text;
- ``SM2``: ``cainfo`` = SM2 signature (SM3 with Z, user id, DER or r||s, hex or Base64: ``SM2SignProfile``)
  of the signed text with the hospital's private key; the platform verifies with its public key.

The signed text is the ``input`` node as canonical JSON: UTF-8, keys sorted, no spaces
(``canonical_input``), so the same bytes come out whichever side serialises it. All crypto goes through
``core.crypto``. Signers are a dict (``SIGNERS``): a province with another rule adds one there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.crypto import SM2SignProfile, sm2_sign, sm2_verify, sm3_hex
from core.errors import ConfigurationError
from core.hook_types import Settings

OFF = ""


def canonical_input(input_node: Any) -> bytes:
    """The bytes that are signed: the ``input`` node, keys sorted, compact, UTF-8."""
    return json.dumps(input_node, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign_profile(settings: Settings) -> SM2SignProfile:
    return SM2SignProfile(user_id=settings.get("sign_user_id") or "1234567812345678",
                          encoding=settings.get("sign_encoding") or "der",
                          output=settings.get("sign_output") or "hex")


@dataclass(frozen=True)
class Signer:
    signtype: str
    sign: Callable[[bytes, Settings], str]
    verify: Callable[[bytes, str, dict[str, Any]], bool]


def _sm3_sign(message: bytes, settings: Settings) -> str:
    return sm3_hex(message)


def _sm3_verify(message: bytes, cainfo: str, config: dict[str, Any]) -> bool:
    return sm3_hex(message) == cainfo.lower()


def _sm2_sign(message: bytes, settings: Settings) -> str:
    key = settings.get("sign_private_key")
    if not key:
        raise ConfigurationError("数据签名为 SM2，但未设置「签名私钥」")
    return sm2_sign(message, key, sign_profile(settings))


def _sm2_verify(message: bytes, cainfo: str, config: dict[str, Any]) -> bool:
    profile = SM2SignProfile(user_id=config.get("sign_user_id") or "1234567812345678",
                             encoding=config.get("sign_encoding") or "der", output=config.get("sign_output") or "hex")
    return sm2_verify(message, cainfo, config["sign_public_key"], profile)


SIGNERS: dict[str, Signer] = {
    "SM3": Signer("SM3", _sm3_sign, _sm3_verify),
    "SM2": Signer("SM2", _sm2_sign, _sm2_verify),
}
CHOICES = (OFF, *SIGNERS)


def sign_envelope(input_node: Any, settings: Settings) -> tuple[str, str]:
    """(cainfo, signtype) for one envelope; ("", "") when signing is off."""
    name = settings.get("signtype") or OFF
    if name == OFF:
        return "", ""
    signer = SIGNERS.get(name)
    if signer is None:
        raise ConfigurationError(f"未知的数据签名类型 {name}（可选：{'、'.join(SIGNERS)}，或留空不签名）")
    return signer.sign(canonical_input(input_node), settings), signer.signtype


def verify_envelope(envelope: dict[str, Any], config: dict[str, Any]) -> str | None:
    """The sandbox's check: why the envelope's signature does not hold (None when it does, or when the
    sandbox is not configured to require one)."""
    required = config.get("signtype") or OFF
    if required == OFF:
        return None
    if envelope.get("signtype") != required:
        return f"签名类型应为 {required}"
    signer = SIGNERS[required]
    cainfo = str(envelope.get("cainfo") or "")
    try:
        ok = bool(cainfo) and signer.verify(canonical_input(envelope.get("input")), cainfo, config)
    except Exception:  # a malformed signature is simply invalid
        ok = False
    return None if ok else "数字签名信息（cainfo）验证失败"
