"""Cron expressions in words for the admin: "0 * * * *" is shown as 每小时整点 beside the expression.

Covers the shapes schedules take in practice (every N minutes, hourly at a minute, daily, weekly, monthly,
lists and ranges); anything else is described field by field, never left as a bare expression.
"""

from __future__ import annotations

_WEEKDAYS = {"0": "日", "1": "一", "2": "二", "3": "三", "4": "四", "5": "五", "6": "六", "7": "日"}
_NAMED_WEEKDAYS = {"SUN": "0", "MON": "1", "TUE": "2", "WED": "3", "THU": "4", "FRI": "5", "SAT": "6"}


def describe(expression: str | None) -> str:
    """Chinese words for a five-field cron expression ('' for none; the raw text for an invalid one)."""
    fields = (expression or "").split()
    if len(fields) != 5:
        return expression or ""
    minute, hour, day, month, weekday = fields
    weekday = _NAMED_WEEKDAYS.get(weekday.upper(), weekday)
    when = _time_of_day(minute, hour)
    if when is None:
        return _field_by_field(minute, hour, day, month, weekday)
    if day == "*" and month == "*" and weekday == "*":
        return when if when.startswith("每") else f"每天 {when}"
    prefix = ""
    if month != "*":
        prefix += f"{_list(month, '月')}"
    if day != "*":
        prefix += f"{'每月' if month == '*' else ''}{_list(day, '日')}"
    if weekday != "*":
        prefix += ("，" if prefix else "") + f"每周{_weekdays(weekday)}"
    if month != "*" and day == "*" and weekday == "*":
        prefix += "每天"
    return f"{prefix} {when.removeprefix('每天 ')}".strip()


def _time_of_day(minute: str, hour: str) -> str | None:
    if minute == "*" and hour == "*":
        return "每分钟"
    if minute.startswith("*/") and hour == "*":
        return f"每 {minute[2:]} 分钟"
    if minute.isdigit() and hour == "*":
        return "每小时整点" if int(minute) == 0 else f"每小时第 {int(minute)} 分"
    if minute.isdigit() and hour.startswith("*/"):
        return f"每 {hour[2:]} 小时（{'整点' if int(minute) == 0 else f'第 {int(minute)} 分'}）"
    if minute.isdigit() and hour.isdigit():
        return f"{int(hour):02d}:{int(minute):02d}"
    if minute.isdigit() and all(part.isdigit() for part in hour.split(",")):
        return "、".join(f"{int(h):02d}:{int(minute):02d}" for h in hour.split(","))
    if minute.isdigit() and "-" in hour and "," not in hour and "/" not in hour:
        start, end = hour.split("-", 1)
        return f"{start}–{end} 点每小时第 {int(minute)} 分" if int(minute) else f"{start}–{end} 点每小时整点"
    return None


def _list(text: str, unit: str) -> str:
    if text.startswith("*/"):
        return f"每 {text[2:]} {unit}"
    parts = []
    for part in text.split(","):
        parts.append(f"{part.replace('-', '至')}{unit}" if part else part)
    return "、".join(parts)


def _weekdays(text: str) -> str:
    parts = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            parts.append(f"{_WEEKDAYS.get(a, a)}至周{_WEEKDAYS.get(b, b)}")
        else:
            parts.append(_WEEKDAYS.get(part, part))
    return "、".join(parts)


def _field_by_field(minute: str, hour: str, day: str, month: str, weekday: str) -> str:
    names = (("分", minute), ("时", hour), ("日", day), ("月", month), ("周", weekday))
    return "；".join(f"{label}：{'每' if value == '*' else value}" for label, value in names)
