"""Secrets at rest (Fernet with a key kept outside git) and masking of secrets in anything recorded."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from core.errors import ConfigurationError
from core.masking import mask_text

_PREFIX = "enc:"


def load_or_create_key(path: Path) -> bytes:
    """The at-rest key: ``BAOSONG_SECRET_KEY`` from the environment, else the instance file (made once,
    except in production mode: a new key there could not open the secrets the other hosts sealed)."""
    from core.config import is_production

    env = os.environ.get("BAOSONG_SECRET_KEY")
    if env:
        return env.encode()
    if path.exists():
        return path.read_bytes().strip()
    if is_production():
        raise ConfigurationError(f"生产模式下不会自动生成密钥：密钥文件 {path} 不存在。请设置 BAOSONG_SECRET_KEY_FILE "
                                 "指向所有主机共用的密钥文件（新装时用 baosong new-secret-key 生成）")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class SecretBox:
    def __init__(self, key: bytes):
        self._fernet = Fernet(key)
        self._opened: dict[str, str] = {}  # sealed -> plain: settings are read on every attempt

    def seal(self, plaintext: str) -> str:
        if not plaintext:
            return ""
        return _PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored:
            return ""
        if not stored.startswith(_PREFIX):
            raise ConfigurationError("密钥存储格式错误：应为加密存储")
        if stored in self._opened:
            return self._opened[stored]
        try:
            plain = self._fernet.decrypt(stored[len(_PREFIX):].encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "无法解密已保存的密钥：BAOSONG_SECRET_KEY 或 instance/secret.key 与保存时不同"
            ) from None
        if len(self._opened) >= 1000:
            self._opened.clear()
        self._opened[stored] = plain
        return plain


def mask(value: str | None) -> str:
    """Show that a secret is set without revealing it: at most its first 2 characters."""
    if not value:
        return ""
    shown = value[:2] if len(value) >= 8 else ""
    return f"{shown}****（{len(value)}位）"


def redact(text: str | None, secrets: list[str]) -> str | None:
    """Replace every occurrence of any secret (and its upper/lower-case forms) with a mask."""
    if not text:
        return text
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        pattern = re.compile(re.escape(secret), re.IGNORECASE)
        text = pattern.sub(mask(secret), text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks registered secrets, and ID-number and mobile-phone shaped numbers
    (``core.masking.mask_text``), in every record it passes, its traceback included: logs are read by
    people whose role may not allow patient identifiers, and they are copied into tickets."""

    secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._clean(_TRACEBACKS.formatException(record.exc_info))
        return True

    def _clean(self, text: str) -> str:
        if self.secrets:
            text = redact(text, list(self.secrets)) or ""
        return mask_text(text) or ""


_TRACEBACKS = logging.Formatter()


def register_secret_for_logs(secret: str) -> None:
    if secret and len(secret) >= 4:
        RedactingFilter.secrets.add(secret)


def install_log_redaction() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for f in root.filters):
        root.addFilter(RedactingFilter())
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
