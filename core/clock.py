"""The one place the core reads the time, so tests and back-fills can control it."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

_frozen: datetime | None = None


def default_timezone() -> ZoneInfo:
    return ZoneInfo(os.environ.get("BAOSONG_TIMEZONE", "Asia/Shanghai"))


def now() -> datetime:
    """The current time, aware, in UTC (the ledger stores UTC)."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC)


def local_now(tz: ZoneInfo | None = None) -> datetime:
    return now().astimezone(tz or default_timezone())


def freeze(at: datetime | None) -> None:
    """Pin ``now()`` to ``at`` (aware), or release it with None. For tests and simulations."""
    global _frozen
    if at is not None and at.tzinfo is None:
        raise ValueError("freeze() needs an aware datetime")
    _frozen = at.astimezone(UTC) if at else None


def utc_naive(moment: datetime) -> datetime:
    """Aware -> naive UTC, the form stored in the database (SQLite keeps no zone)."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment
