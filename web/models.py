"""The admin's own tables: users, login throttling and bulk-retry progress (on ``core.db.db``; the audit
trail itself is ``core.models.AuditLog``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core import clock
from core.db import db


def _now() -> datetime:
    return clock.utc_naive(clock.now())


class Role:
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    ALL = (VIEWER, OPERATOR, ADMIN)
    RANK = {VIEWER: 0, OPERATOR: 1, ADMIN: 2}
    LABELS = {VIEWER: "只读", OPERATOR: "操作员", ADMIN: "管理员"}


class User(db.Model):
    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16), default=Role.VIEWER)
    active: Mapped[bool] = mapped_column(default=True)
    # Bumped on password change / deactivation: sessions carrying an older value are logged out.
    session_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    last_login_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    # The person behind the account, as the medical-insurance platform knows them (envelope opter /
    # opter_name / opter_type, 9001 opter_no): without an operator code the user cannot sign in there.
    display_name: Mapped[str] = mapped_column(sa.String(50), default="")
    opter: Mapped[str] = mapped_column(sa.String(30), default="")
    opter_name: Mapped[str] = mapped_column(sa.String(50), default="")
    opter_type: Mapped[str] = mapped_column(sa.String(3), default="1")  # 1 经办人 2 自助终端 3 移动终端
    # 双通道特药医生权限 (6.7): granted by an admin with the doctor's HIS 工号 and name looked up from the HIS;
    # doctor_insu_code is the national 医保医师代码 the filings carry (atddr_no / diag_dr_codg).
    doctor_code: Mapped[str] = mapped_column(sa.String(30), default="")
    doctor_name: Mapped[str] = mapped_column(sa.String(50), default="")
    doctor_insu_code: Mapped[str] = mapped_column(sa.String(50), default="")
    doctor_granted_by: Mapped[str | None] = mapped_column(sa.String(80))
    doctor_granted_at: Mapped[datetime | None] = mapped_column(sa.DateTime)

    @property
    def is_doctor(self) -> bool:
        return bool(self.doctor_code)

    @property
    def shown_name(self) -> str:
        return self.display_name or self.username

    def at_least(self, role: str) -> bool:
        return Role.RANK.get(self.role, -1) >= Role.RANK[role]

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def role_label(self) -> str:
        return Role.LABELS.get(self.role, self.role)


class LoginFailure(db.Model):
    """Failed logins per (username, client address): the lock is by both, so one attacker cannot lock a
    user out everywhere, and an unknown username is throttled exactly like a known one."""

    __tablename__ = "web_login_failures"
    __table_args__ = (sa.UniqueConstraint("username", "address", name="uq_login_failure"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(80))
    address: Mapped[str] = mapped_column(sa.String(64))
    failures: Mapped[int] = mapped_column(default=0)
    first_failed_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    locked_until: Mapped[datetime | None] = mapped_column(sa.DateTime)


class BulkRetry(db.Model):
    """A bulk retry a person started: the filter it applies to and how far the background job got."""

    __tablename__ = "web_bulk_retries"

    id: Mapped[int] = mapped_column(primary_key=True)
    filters: Mapped[Any] = mapped_column(sa.JSON, default=dict)
    total: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")  # queued/running/done/stopped/error
    message: Mapped[str | None] = mapped_column(sa.Text)
    created_by: Mapped[str] = mapped_column(sa.String(80))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime)

    STATUS_LABELS = {"queued": "排队中", "running": "进行中", "done": "已完成", "stopped": "已停止", "error": "出错"}

    @property
    def status_label(self) -> str:
        return self.STATUS_LABELS.get(self.status, self.status)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped", "error")

    @property
    def percent(self) -> int:
        return 100 if not self.total else int((self.done + self.skipped) * 100 / self.total)


