"""Text <-> bytes helpers shared by SM2/SM4 (output encodings, strict parsing)."""

from __future__ import annotations

import base64
import binascii
import re

from .errors import CryptoError

OUTPUTS = ("hex", "HEX", "base64")
_HEX_RE = re.compile(r"^[0-9a-fA-F]*$")
_WS_RE = re.compile(r"\s+")


def encode_output(data: bytes, output: str) -> str:
    if output == "hex":
        return data.hex()
    if output == "HEX":
        return data.hex().upper()
    if output == "base64":
        return base64.b64encode(data).decode("ascii")
    raise CryptoError(f"未知输出编码 unknown output encoding: {output!r}（可选 hex / HEX / base64）")


def decode_input(text: str | bytes, output: str, what: str) -> bytes:
    """Parse ciphertext/signature text in the profile's encoding; hex is accepted in either case."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise CryptoError(f"{what}不是文本 (not ASCII text)") from exc
    s = text.strip()
    if output in ("hex", "HEX"):
        if len(s) % 2 or not _HEX_RE.match(s):
            raise CryptoError(f"{what}不是合法的 hex（长度 {len(s)}）: not valid hex - 输出编码设置不符？")
        return bytes.fromhex(s)
    if output == "base64":
        s = _WS_RE.sub("", s)  # Base64 from Java/MIME may carry line breaks
        try:
            return base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError(
                f"{what}不是合法的 Base64（长度 {len(s)}）: not valid Base64 - 输出编码设置不符？"
            ) from exc
    raise CryptoError(f"未知输出编码 unknown output encoding: {output!r}（可选 hex / HEX / base64）")


def is_hex(s: str) -> bool:
    return bool(_HEX_RE.match(s))

