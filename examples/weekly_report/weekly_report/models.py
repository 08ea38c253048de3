"""The example plugin's own tables, created and upgraded by its own migrations (``migrations/``, Alembic
branch ``weekly_report``), not by the core's.

``weekly_report_receipts``
    One row per accepted weekly upload: ``upload_id`` (-> uploads.id, unique), ``week``, ``visits``,
    ``checked_by``/``checked_at`` (an operator confirmed the figure with the platform; upload action
    "标记已核对").

``weekly_report_group_mappings``
    The hospital's departments mapped to the platform's department groups (dictionary ``WEEKLY.GROUP``):
    ``local_code`` (unique), ``local_name``, ``national_code`` (a group code or NULL), ``updated_by``,
    ``updated_at``. Edited on the admin's generic mapping page (配置管理 › 代码对照).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core import clock
from core.db import db


def _now() -> datetime:
    return clock.utc_naive(clock.now())


class WeeklyReceipt(db.Model):
    __tablename__ = "weekly_report_receipts"

    id: Mapped[int] = mapped_column(primary_key=True)
    upload_id: Mapped[int] = mapped_column(sa.ForeignKey("uploads.id"), unique=True)
    week: Mapped[str] = mapped_column(sa.String(32), index=True)
    visits: Mapped[int] = mapped_column(default=0)
    recorded_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    checked_by: Mapped[str | None] = mapped_column(sa.String(80))
    checked_at: Mapped[datetime | None] = mapped_column(sa.DateTime)


class WeeklyGroupMapping(db.Model):
    __tablename__ = "weekly_report_group_mappings"

    id: Mapped[int] = mapped_column(primary_key=True)
    local_code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    local_name: Mapped[str] = mapped_column(sa.String(200), default="")
    national_code: Mapped[str | None] = mapped_column(sa.String(20))
    updated_by: Mapped[str | None] = mapped_column(sa.String(80))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)
