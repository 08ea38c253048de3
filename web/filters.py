"""Template filters: local time, status labels."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from core import clock


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if value is None:
        return ""
    return clock.from_db(value).astimezone(clock.default_timezone()).strftime(fmt)


def register(app: Flask) -> None:
    app.add_template_filter(local_time, "local_time")
