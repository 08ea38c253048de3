"""The upload ledger and the core's other tables. The ledger, not Redis, is the source of truth."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core import clock, search_keys
from core.db import db


def _now() -> datetime:
    return clock.utc_naive(clock.now())


class UploadStatus:
    """Named states of an upload. Transitions live in ``core.ledger``."""

    PENDING = "pending"
    SENDING = "sending"
    SUCCEEDED = "succeeded"
    RETRY_WAIT = "failed_will_retry"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    WAITING = "waiting"  # a prerequisite (core.ordering) has not succeeded yet: never sent

    ALL = (PENDING, SENDING, SUCCEEDED, RETRY_WAIT, FAILED, REJECTED, CANCELLED, WAITING)
    FINAL = (SUCCEEDED, FAILED, REJECTED, CANCELLED)
    LABELS = {
        PENDING: "待发送",
        SENDING: "发送中",
        SUCCEEDED: "成功",
        RETRY_WAIT: "失败待重试",
        FAILED: "失败",
        REJECTED: "被拒绝",
        CANCELLED: "已取消",
        WAITING: "等待前置上报",
    }


class Upload(db.Model):
    __tablename__ = "uploads"
    __table_args__ = (
        sa.UniqueConstraint("report_type", "business_key", name="uq_upload_business_key"),
        sa.Index("ix_uploads_created", "created_at"),
        sa.Index("ix_uploads_type_created", "report_type", "created_at"),
        sa.Index("ix_uploads_status_created", "status", "created_at"),
        sa.Index("ix_uploads_status_retry", "status", "next_retry_at"),
        sa.Index("ix_uploads_type_status_created", "report_type", "status", "created_at"),
        sa.Index("ix_uploads_parent", "parent_id"),
        sa.Index("ix_uploads_department_created", "department", "created_at"),
        sa.Index("ix_uploads_department_status_created", "department", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    report_type: Mapped[str] = mapped_column(sa.String(80))
    business_key: Mapped[str] = mapped_column(sa.String(200))
    period: Mapped[str] = mapped_column(sa.String(64), default="")
    department: Mapped[str | None] = mapped_column(sa.String(64))
    operation: Mapped[str] = mapped_column(sa.String(16), default="new")
    status: Mapped[str] = mapped_column(sa.String(24), default=UploadStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    auto_retries: Mapped[int] = mapped_column(default=0)
    next_retry_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    lease_until: Mapped[datetime | None] = mapped_column(sa.DateTime)
    # Set when an attempt may have reached the regulator without us learning the answer.
    delivery_uncertain: Mapped[bool] = mapped_column(default=False)
    idempotency_key: Mapped[str] = mapped_column(sa.String(64), index=True)
    mapping_version: Mapped[int | None] = mapped_column()
    rows: Mapped[Any] = mapped_column(sa.JSON, default=list)
    result: Mapped[Any] = mapped_column(sa.JSON, default=dict)
    search_text: Mapped[str] = mapped_column(sa.String(1000), default="", index=True)
    last_code: Mapped[str | None] = mapped_column(sa.String(40))
    last_message: Mapped[str | None] = mapped_column(sa.Text)
    parent_id: Mapped[int | None] = mapped_column(sa.ForeignKey("uploads.id"))
    created_by: Mapped[str | None] = mapped_column(sa.String(80))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    # The status this upload is counted in by core.aggregates (SENDING is never counted).
    counted_status: Mapped[str | None] = mapped_column(sa.String(24))

    attempt_list: Mapped[list[Attempt]] = relationship(
        back_populates="upload", order_by="Attempt.number", cascade="all, delete-orphan"
    )

    @property
    def status_label(self) -> str:
        return UploadStatus.LABELS.get(self.status, self.status)


class UploadSearchKey(db.Model):
    """An exact identifier of an upload (ID number, phone, visit or message id...) for the upload log's
    search: one b-tree seek whatever the history. Kept by triggers on ``uploads`` (core.search_keys)."""

    __tablename__ = "upload_search_keys"
    __table_args__ = {"sqlite_with_rowid": False}

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    upload_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


search_keys.listen(db.metadata)


class Attempt(db.Model):
    __tablename__ = "attempts"
    __table_args__ = (sa.UniqueConstraint("upload_id", "number", name="uq_attempt_number"),
                      sa.Index("ix_attempts_started", "started_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    upload_id: Mapped[int] = mapped_column(sa.ForeignKey("uploads.id"), index=True)
    number: Mapped[int] = mapped_column()
    resend: Mapped[bool] = mapped_column(default=False)
    worker: Mapped[str] = mapped_column(sa.String(120), default="")
    started_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    duration_ms: Mapped[int | None] = mapped_column()
    url: Mapped[str | None] = mapped_column(sa.String(500))
    headers: Mapped[Any] = mapped_column(sa.JSON, default=dict)  # secrets masked
    plaintext: Mapped[str | None] = mapped_column(sa.Text)
    wire_body: Mapped[str | None] = mapped_column(sa.Text)
    http_status: Mapped[int | None] = mapped_column()
    response_body: Mapped[str | None] = mapped_column(sa.Text)
    code: Mapped[str | None] = mapped_column(sa.String(40))
    message: Mapped[str | None] = mapped_column(sa.Text)
    outcome: Mapped[str | None] = mapped_column(sa.String(16))  # success / retry / reject / unknown
    # How far the request got: not_sent / maybe_delivered / answered / unknown (core.hook_types); None: the
    # attempt stopped before sending.
    delivery: Mapped[str | None] = mapped_column(sa.String(16))
    operation_sent: Mapped[str | None] = mapped_column(sa.String(16))  # OutboundRequest.operation
    error: Mapped[str | None] = mapped_column(sa.Text)
    traceback: Mapped[str | None] = mapped_column(sa.Text)
    # Set when core.retention removed plaintext, wire body and answer (metadata and codes are kept).
    pruned_at: Mapped[datetime | None] = mapped_column(sa.DateTime)

    upload: Mapped[Upload] = relationship(back_populates="attempt_list")

    @property
    def delivery_label(self) -> str:
        from core.hook_types import DELIVERY_LABELS

        return DELIVERY_LABELS.get(self.delivery or "", "未发送")


class Task(db.Model):
    """The schedule of one report type. The database is the truth; Redis holds a copy."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_type: Mapped[str] = mapped_column(sa.String(80), unique=True)
    cron: Mapped[str] = mapped_column(sa.String(120))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Asia/Shanghai")
    enabled: Mapped[bool] = mapped_column(default=True)
    catch_up: Mapped[str] = mapped_column(sa.String(16), default="latest")
    last_slot_at: Mapped[datetime | None] = mapped_column(sa.DateTime)  # UTC, last slot recorded
    last_result: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)


class SlotStatus:
    """States of a slot: an obligation to report one period, which can move again (core.scheduler)."""

    DUE = "due"  # recorded, not planned yet (tick records slots before advancing its watermark)
    PLANNING = "planning"  # claimed by a runner; one left here past the claim timeout was lost
    PLANNED = "planned"
    HELD_BACK = "held_back"  # planned, but records were held back (e.g. an unmapped department)
    ERROR = "error"  # planning failed (e.g. the HIS was down)
    SKIPPED = "skipped"  # left out by the catch-up policy
    LOST = "lost"  # its planning was interrupted

    # States a person (or a department mapping) may re-plan.
    REPLANNABLE = (ERROR, SKIPPED, HELD_BACK, LOST)
    LABELS = {
        DUE: "待执行",
        PLANNING: "执行中",
        PLANNED: "已执行",
        HELD_BACK: "部分暂缓",
        ERROR: "出错",
        SKIPPED: "跳过",
        LOST: "中断",
    }


class Slot(db.Model):
    """A due slot of a task, recorded once: two schedulers cannot both plan it."""

    __tablename__ = "slots"
    __table_args__ = (sa.UniqueConstraint("report_type", "slot_at", name="uq_slot"),
                      sa.Index("ix_slots_type_status", "report_type", "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    report_type: Mapped[str] = mapped_column(sa.String(80))
    slot_at: Mapped[datetime] = mapped_column(sa.DateTime)  # UTC
    origin: Mapped[str] = mapped_column(sa.String(16), default="cron")  # cron / catch_up / backfill / manual
    status: Mapped[str] = mapped_column(sa.String(16), default=SlotStatus.PLANNED)  # SlotStatus
    uploads_planned: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    claimed_at: Mapped[datetime | None] = mapped_column(sa.DateTime)  # when planning last started
    runs: Mapped[int] = mapped_column(default=0, server_default="0")  # times planned (re-plans included)

    @property
    def status_label(self) -> str:
        return SlotStatus.LABELS.get(self.status, self.status)


class HeldBack(db.Model):
    """A record kept out of an upload, with the reason (unmapped department, invalid field...)."""

    __tablename__ = "held_back"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_type: Mapped[str] = mapped_column(sa.String(80), index=True)
    period: Mapped[str] = mapped_column(sa.String(64), default="")
    record_key: Mapped[str | None] = mapped_column(sa.String(200))
    field: Mapped[str | None] = mapped_column(sa.String(80))
    reason: Mapped[str] = mapped_column(sa.Text)
    resolved: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    slot_id: Mapped[int | None] = mapped_column(sa.ForeignKey("slots.id"), index=True)  # the slot that held it


class BackfillRun(db.Model):
    """A back-fill of a date range, run as a background job; its progress is shown in the admin."""

    __tablename__ = "backfill_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_type: Mapped[str] = mapped_column(sa.String(80), index=True)
    start_at: Mapped[datetime] = mapped_column(sa.DateTime)  # UTC, inclusive
    end_at: Mapped[datetime] = mapped_column(sa.DateTime)  # UTC, inclusive (never after the run started)
    replan: Mapped[bool] = mapped_column(default=False)  # also re-plan error/skipped/held-back/lost slots
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")  # queued / running / done / failed
    total: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    uploads: Mapped[int] = mapped_column(default=0)
    errors: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(sa.Text)
    cursor_at: Mapped[datetime | None] = mapped_column(sa.DateTime)  # UTC, the last slot done
    created_by: Mapped[str | None] = mapped_column(sa.String(80))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime)

    LABELS = {"queued": "排队中", "running": "进行中", "done": "已完成", "failed": "失败"}

    @property
    def status_label(self) -> str:
        return self.LABELS.get(self.status, self.status)


class Watermark(db.Model):
    """How far an incremental extraction has planned; advanced with the uploads it planned."""

    __tablename__ = "watermarks"

    name: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(120))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)


class RegulatorSetting(db.Model):
    __tablename__ = "regulator_settings"
    __table_args__ = (sa.UniqueConstraint("regulator", "key", name="uq_regulator_setting"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    regulator: Mapped[str] = mapped_column(sa.String(80))
    key: Mapped[str] = mapped_column(sa.String(80))
    value: Mapped[str] = mapped_column(sa.Text, default="")  # secrets are encrypted (core.secrets)
    secret: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)


class Flag(db.Model):
    """Platform-wide switches and numbers an admin can change (retry policy, stop switch)."""

    __tablename__ = "flags"

    name: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(200))


class AuditLog(db.Model):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, index=True)
    actor: Mapped[str] = mapped_column(sa.String(80))
    action: Mapped[str] = mapped_column(sa.String(80))
    target: Mapped[str] = mapped_column(sa.String(200), default="")
    before: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    after: Mapped[Any] = mapped_column(sa.JSON, nullable=True)


class ReportQuery(db.Model):
    """A hospital's own SQL for one query of a report type, replacing the plugin's default."""

    __tablename__ = "report_queries"
    __table_args__ = (sa.UniqueConstraint("report_type", "name", name="uq_report_query"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_type: Mapped[str] = mapped_column(sa.String(80))
    name: Mapped[str] = mapped_column(sa.String(80))
    sql: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)


from core import alert_models as _alert_models  # noqa: E402,F401  (alert tables: core.alerts)
