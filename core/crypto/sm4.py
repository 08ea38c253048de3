"""SM4 (GB/T 32907) ECB/CBC via ``cryptography``; padding is ours so every choice is explicit."""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ._codec import decode_input, encode_output, is_hex
from .errors import CryptoError
from .profiles import IV_IS_KEY, SM4Profile

BLOCK = 16


def parse_sm4_key(key: str, key_format: str) -> bytes:
    """The 16 key bytes from the configured text form; the message says what was wrong, never the key."""
    if not isinstance(key, str):
        raise CryptoError(f"SM4 密钥须为字符串 (key must be str)，得到 {type(key).__name__}")
    if key_format == "hex":
        k = key.strip()
        if len(k) != 32 or not is_hex(k):
            raise CryptoError(f"SM4 密钥格式不符: 期望 32 位 hex，得到 {len(k)} 个字符 (key_format=hex)")
        return bytes.fromhex(k)
    if key_format == "text":
        raw = key.encode("utf-8")
        if len(raw) != 16:
            raise CryptoError(f"SM4 密钥格式不符: 期望 16 字节文本，得到 {len(raw)} 字节 (key_format=text)")
        return raw
    if key_format == "base64":
        try:
            raw = base64.b64decode(key.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError("SM4 密钥格式不符: 不是合法的 Base64 (key_format=base64)") from exc
        if len(raw) != 16:
            raise CryptoError(
                f"SM4 密钥格式不符: Base64 解码得到 {len(raw)} 字节，期望 16 (key_format=base64)"
            )
        return raw
    raise CryptoError(f"未知密钥格式 unknown key_format: {key_format!r}")


def _pad(data: bytes, padding: str) -> bytes:
    if padding == "pkcs7":
        n = BLOCK - len(data) % BLOCK  # always 1..16: a full block when already aligned
        return data + bytes([n]) * n
    if padding == "zero":
        # Hutool/manual-Java convention: nothing added when already aligned (BouncyCastle's ZeroBytePadding
        # adds a block; both decrypt the same way since we strip trailing zeros).
        return data + b"\x00" * (-len(data) % BLOCK)
    if len(data) % BLOCK:
        raise CryptoError(
            f"SM4 加密失败: 无填充模式要求明文长度为 16 的倍数，得到 {len(data)} 字节 (padding=none)"
        )
    return data


def _unpad(data: bytes, padding: str) -> bytes:
    if padding == "pkcs7":
        n = data[-1] if data else 0
        # Constant-structure check of all n bytes; any mismatch is the usual wrong-key symptom.
        if not 1 <= n <= BLOCK or data[-n:] != bytes([n]) * n:
            raise CryptoError(
                "SM4 解密失败: PKCS7 填充校验失败（密钥错误、模式/填充/IV 设置不符或密文被篡改）"
                " / bad PKCS7 padding (wrong key, mode, IV or tampered ciphertext)"
            )
        return data[:-n]
    if padding == "zero":
        return data.rstrip(b"\x00")  # cannot tell trailing zero bytes of the plaintext from padding
    return data


def _cipher(key: bytes, mode: str, iv: bytes | None) -> Cipher:
    if mode == "ECB":
        return Cipher(algorithms.SM4(key), modes.ECB())
    return Cipher(algorithms.SM4(key), modes.CBC(iv))


def sm4_encrypt(plaintext: bytes, key: str, profile: SM4Profile) -> str:
    if not isinstance(plaintext, (bytes, bytearray, memoryview)):
        raise CryptoError(
            f"SM4 加密需要 bytes 明文，得到 {type(plaintext).__name__}（请先 .encode('utf-8')）"
        )
    k = parse_sm4_key(key, profile.key_format)
    data = _pad(bytes(plaintext), profile.padding)
    prefix = b""
    iv = None
    if profile.mode == "CBC":
        if profile.iv is None:
            iv = secrets.token_bytes(BLOCK)
            prefix = iv  # random IV travels in front of the ciphertext
        else:
            iv = k if profile.iv == IV_IS_KEY else bytes.fromhex(profile.iv)
    enc = _cipher(k, profile.mode, iv).encryptor()
    return encode_output(prefix + enc.update(data) + enc.finalize(), profile.output)


def sm4_decrypt(ciphertext: str, key: str, profile: SM4Profile) -> bytes:
    k = parse_sm4_key(key, profile.key_format)
    raw = decode_input(ciphertext, profile.output, "SM4 密文")
    iv = None
    if profile.mode == "CBC":
        if profile.iv is None:
            if len(raw) < BLOCK:
                raise CryptoError(f"SM4 解密失败: 密文 {len(raw)} 字节，不足以包含前置 IV（16 字节）")
            iv, raw = raw[:BLOCK], raw[BLOCK:]
        else:
            iv = k if profile.iv == IV_IS_KEY else bytes.fromhex(profile.iv)
    if len(raw) % BLOCK:
        raise CryptoError(
            f"SM4 解密失败: 密文长度 {len(raw)} 字节不是 16 的倍数（输出编码设置不符或密文被截断）"
            " / ciphertext length is not a multiple of 16"
        )
    if not raw and profile.padding == "pkcs7":
        raise CryptoError("SM4 解密失败: 密文为空，PKCS7 至少有一个分组 (empty ciphertext)")
    dec = _cipher(k, profile.mode, iv).decryptor()
    return _unpad(dec.update(raw) + dec.finalize(), profile.padding)
