"""Explicit parameter objects: every SM2/SM4 choice a regulator makes is a named, stored setting.

Nothing here falls back on a library's defaults; ``from_dict`` rejects unknown keys and values so a typo in
a plugin's settings fails at load time instead of producing ciphertext the regulator cannot read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ._codec import OUTPUTS, is_hex
from .errors import CryptoError

_OUTPUT_DESC = {"hex": "输出小写hex", "HEX": "输出大写HEX", "base64": "输出Base64"}

# SM4Profile.iv value meaning "the IV is the key itself" (bad practice some peers use): stored as this
# flag, never as bytes, so the key never travels through a non-secret setting, an audit entry or a page.
IV_IS_KEY = "key"


def _check(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise CryptoError(f"参数 {name}={value!r} 不合法 (invalid); 可选: {', '.join(map(str, allowed))}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise CryptoError(f"参数 {name}={value!r} 须为 true/false (must be a bool)")


def _from_dict(cls, d: dict[str, Any]):
    if not isinstance(d, dict):
        raise CryptoError(f"{cls.__name__}.from_dict 需要 dict，得到 {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise CryptoError(f"{cls.__name__} 未知参数 unknown keys: {', '.join(sorted(unknown))}")
    return cls(**d)


@dataclass(frozen=True)
class SM4Profile:
    mode: str = "ECB"  # "ECB" | "CBC"
    padding: str = "pkcs7"  # "pkcs7" (== PKCS5 for 16-byte blocks) | "zero" | "none"
    key_format: str = "hex"  # "hex" (32 hex chars) | "text" (16 UTF-8 bytes) | "base64"
    output: str = "hex"  # "hex" | "HEX" | "base64"
    iv: str | None = None  # CBC: 32 hex chars; None = random IV prepended; IV_IS_KEY = the key itself

    def __post_init__(self) -> None:
        _check("mode", self.mode, ("ECB", "CBC"))
        _check("padding", self.padding, ("pkcs7", "zero", "none"))
        _check("key_format", self.key_format, ("hex", "text", "base64"))
        _check("output", self.output, OUTPUTS)
        if self.iv is not None:
            if self.mode != "CBC":
                raise CryptoError("参数 iv 仅用于 CBC 模式 (iv is only valid with mode=CBC)")
            if self.iv == IV_IS_KEY:
                return
            if not isinstance(self.iv, str) or len(self.iv) != 32 or not is_hex(self.iv):
                raise CryptoError(f"参数 iv 须为 32 位 hex (16 字节)，得到长度 {len(str(self.iv))}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SM4Profile:
        return _from_dict(cls, d)

    def describe(self) -> str:
        pad = {"pkcs7": "PKCS7", "zero": "零填充", "none": "无填充"}[self.padding]
        key = {"hex": "密钥hex", "text": "密钥文本", "base64": "密钥Base64"}[self.key_format]
        parts = [f"SM4-{self.mode}", pad, key, _OUTPUT_DESC[self.output]]
        if self.mode == "CBC":
            # Never any IV bytes: a fixed IV may be derived from (or be) the key.
            if self.iv is None:
                iv = "随机IV前置"
            elif self.iv == IV_IS_KEY:
                iv = "IV = 密钥"
            elif self.iv == "0" * 32:
                iv = "固定IV（全零）"
            else:
                iv = "固定IV（已设置）"
            parts.insert(1, iv)
        return " / ".join(parts)


@dataclass(frozen=True)
class SM2Profile:
    order: str = "C1C3C2"  # "C1C3C2" (GM/T 0003-2012, Hutool) | "C1C2C3" (2010 draft, BouncyCastle raw)
    c1_prefix: bool = True  # 04 before C1 (raw format only)
    format: str = "raw"  # "raw" | "asn1" (GM/T 0009 SEQUENCE{x, y, hash, ciphertext}, always C1C3C2 order)
    output: str = "hex"  # "hex" | "HEX" | "base64"

    def __post_init__(self) -> None:
        _check("order", self.order, ("C1C3C2", "C1C2C3"))
        _check_bool("c1_prefix", self.c1_prefix)
        _check("format", self.format, ("raw", "asn1"))
        _check("output", self.output, OUTPUTS)
        if self.format == "asn1" and self.order != "C1C3C2":
            # GM/T 0009 fixes the field order; a C1C2C3 ASN.1 would be a private variant we refuse to guess.
            raise CryptoError("ASN.1 (GM/T 0009) 密文的顺序固定为 C1C3C2 (asn1 format requires order C1C3C2)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SM2Profile:
        return _from_dict(cls, d)

    def describe(self) -> str:
        if self.format == "asn1":
            return f"SM2 ASN.1 (GM/T 0009 DER) / {_OUTPUT_DESC[self.output]}"
        prefix = "C1带04前缀" if self.c1_prefix else "C1无04前缀"
        return f"SM2 {self.order} / {prefix} / {_OUTPUT_DESC[self.output]}"


@dataclass(frozen=True)
class SM2SignProfile:
    user_id: str = "1234567812345678"  # GM/T 0009 default; OpenSSL uses "" unless told distid
    encoding: str = "der"  # "der" (BouncyCastle, Hutool, OpenSSL) | "raw" (r||s 64 bytes: gmssl, sm-crypto)
    output: str = "hex"  # "hex" | "HEX" | "base64"
    legacy_no_z: bool = False  # e = SM3(M) without Z: only for peers that skip Z (non-standard)

    def __post_init__(self) -> None:
        if not isinstance(self.user_id, str):
            raise CryptoError(f"参数 user_id 须为字符串，得到 {type(self.user_id).__name__}")
        if len(self.user_id.encode("utf-8")) * 8 >= 1 << 16:
            raise CryptoError("参数 user_id 过长 (user id longer than 8191 bytes)")
        _check("encoding", self.encoding, ("der", "raw"))
        _check("output", self.output, OUTPUTS)
        _check_bool("legacy_no_z", self.legacy_no_z)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SM2SignProfile:
        return _from_dict(cls, d)

    def describe(self) -> str:
        enc = "DER" if self.encoding == "der" else "r||s 原始64字节"
        if self.legacy_no_z:
            z = "无Z值(旧式 SM3(M))"
        else:
            z = f"用户ID {self.user_id!r}" if self.user_id else "用户ID为空"
        return f"SM2签名 SM3withSM2 / {z} / {enc} / {_OUTPUT_DESC[self.output]}"
