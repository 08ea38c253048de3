"""Template filters: local time, numbers, durations."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from core import clock


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored (naive UTC) or aware datetime in the hospital's time zone."""
    if value is None:
        return ""
    return clock.from_db(value).astimezone(clock.default_timezone()).strftime(fmt)


def thousands(value: int | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def ago(value: datetime | None) -> str:
    """'3 分钟前' style age of a stored time."""
    if value is None:
        return ""
    seconds = int((clock.now() - clock.from_db(value)).total_seconds())
    if seconds < 60:
        return "刚刚"
    if seconds < 3600:
        return f"{seconds // 60} 分钟前"
    if seconds < 86400:
        return f"{seconds // 3600} 小时前"
    if seconds < 7 * 86400:
        return f"{seconds // 86400} 天前"
    # Older than a week: the date itself (with its year) says more than "394 天前".
    return f"{local_time(value, '%Y-%m-%d')}（{seconds // 86400} 天前）"


OPERATION_LABELS = {"new": "新增", "update": "更新", "delete": "删除/撤回"}


def operation_label(operation: str | None) -> str:
    """What an upload does at the regulator, in Chinese (新增 / 更新 / 删除/撤回)."""
    return OPERATION_LABELS.get(operation or "new", "其他")


def cron_words(expression: str | None) -> str:
    from web.cron_words import describe

    return describe(expression)


def register(app: Flask) -> None:
    from web.helpers import shown_text  # free text from outside (HIS, platform, flashes), masked by role

    app.add_template_filter(shown_text, "shown_text")
    app.add_template_filter(local_time, "local_time")
    app.add_template_filter(thousands, "thousands")
    app.add_template_filter(ago, "ago")
    app.add_template_filter(cron_words, "cron_words")
    app.add_template_filter(operation_label, "operation_label")
