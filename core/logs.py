"""The one logging setup of every Baosong process (CLI, worker, scheduler, gunicorn).

Times are local with their offset (``BAOSONG_TIMEZONE``, default Asia/Shanghai, the zone the admin
shows), so a log line and the admin agree. ``BAOSONG_LOG_FORMAT=json`` writes one JSON object per
line for a log collector. Registered secrets are masked in every record (core.secrets).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime

from core import clock

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def local_timestamp(created: float) -> str:
    """An ISO 8601 local time with milliseconds and offset, e.g. 2025-02-17T08:00:00.123+08:00."""
    return datetime.fromtimestamp(created, clock.default_timezone()).isoformat(timespec="milliseconds")


class LocalTimeFormatter(logging.Formatter):
    """Plain text lines whose time is the hospital's local time with its offset."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return local_timestamp(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (local, with offset), level, logger, message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": local_timestamp(record.created), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage(), "process": record.process}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def formatter(fmt: str | None = None) -> logging.Formatter:
    fmt = (fmt or os.environ.get("BAOSONG_LOG_FORMAT") or "text").strip().lower()
    return JsonFormatter() if fmt == "json" else LocalTimeFormatter(TEXT_FORMAT)


def setup(level: str | None = None, fmt: str | None = None, stream=None) -> None:
    """Configure the root logger once per process (calling again replaces Baosong's own handler)."""
    from core.secrets import install_log_redaction

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_baosong", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._baosong = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("BAOSONG_LOG_LEVEL", "INFO"))
    install_log_redaction()
