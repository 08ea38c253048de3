"""The plugin's own tables: filings (two-channel drugs, chronic disease) with their status history,
the sign-in numbers per operator, and the drug and disease catalogues."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core import clock
from core.db import db


def _now() -> datetime:
    return clock.utc_naive(clock.now())


TWOPATH = "twopath"  # 双通道药品备案 (2511 / 5311 / 2512)
CHRONIC = "chronic"  # 慢特病备案 (2503 / 5301 / 2504)
KIND_LABELS = {TWOPATH: "双通道", CHRONIC: "慢特病"}
# Per kind: (apply, query, revoke) interface numbers.
KIND_INTERFACES = {TWOPATH: ("2511", "5311", "2512"), CHRONIC: ("2503", "5301", "2504")}


class FilingStatus:
    DRAFT = "draft"
    DOCTOR_APPROVED = "doctor_approved"
    SUBMITTING = "submitting"
    SUBMIT_REJECTED = "submit_rejected"
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVOKING = "revoking"
    REVOKED = "revoked"

    LABELS = {
        DRAFT: "草稿",
        DOCTOR_APPROVED: "医生已审核",
        SUBMITTING: "提交中",
        SUBMIT_REJECTED: "提交被拒",
        PENDING_REVIEW: "待医保审核",
        APPROVED: "医保审核通过",
        REJECTED: "医保审核不通过",
        REVOKING: "撤销中",
        REVOKED: "已撤销",
    }
    EDITABLE = (DRAFT, SUBMIT_REJECTED)
    # Submitted and not yet decided by the platform: what status synchronisation looks at.
    AWAITING_PLATFORM = (PENDING_REVIEW,)


class Filing(db.Model):
    __tablename__ = "twopath_filings"
    __table_args__ = (
        sa.Index("ix_twopath_filings_status", "status"),
        sa.Index("ix_twopath_filings_appy_date", "appy_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default=TWOPATH)
    status: Mapped[str] = mapped_column(sa.String(24), default=FilingStatus.DRAFT)
    # The person (from the form or 1101): kept in columns for search and statistics.
    psn_no: Mapped[str] = mapped_column(sa.String(30), default="", index=True)
    psn_name: Mapped[str] = mapped_column(sa.String(50), default="")
    certno: Mapped[str] = mapped_column(sa.String(30), default="", index=True)
    card_no: Mapped[str] = mapped_column(sa.String(50), default="", index=True)  # 医保卡号
    insuplc_admdvs: Mapped[str] = mapped_column(sa.String(6), default="")
    # Drug (双通道) or disease (慢特病) of the filing.
    item_code: Mapped[str] = mapped_column(sa.String(30), default="", index=True)
    item_name: Mapped[str] = mapped_column(sa.String(300), default="")
    appy_date: Mapped[str] = mapped_column(sa.String(10), default="")  # yyyy-MM-dd
    begndate: Mapped[str] = mapped_column(sa.String(10), default="")
    enddate: Mapped[str] = mapped_column(sa.String(10), default="")
    # Every field of the interface's input (data node and lists), as the form/HIS import gave them.
    data: Mapped[Any] = mapped_column(sa.JSON, default=dict)
    doctor_code: Mapped[str] = mapped_column(sa.String(50), default="")
    doctor_name: Mapped[str] = mapped_column(sa.String(100), default="")
    doctor_approved_by: Mapped[str | None] = mapped_column(sa.String(80))
    doctor_approved_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    doctor_his_code: Mapped[str] = mapped_column(sa.String(30), default="")  # the approving doctor's HIS 工号
    # 双通道申请表 (6.5): the spreadsheet generated from the approved filing, kept with it.
    sheet: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    sheet_generated_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    appy_no: Mapped[str] = mapped_column(sa.String(30), default="", index=True)  # 申请号 / 流水号
    platform_status: Mapped[str] = mapped_column(sa.String(40), default="")  # raw code the query returned
    last_upload_id: Mapped[int | None] = mapped_column(sa.ForeignKey("uploads.id"))
    submissions: Mapped[int] = mapped_column(default=0)
    revocations: Mapped[int] = mapped_column(default=0)
    message: Mapped[str] = mapped_column(sa.Text, default="")  # the platform's last answer
    created_by: Mapped[str | None] = mapped_column(sa.String(80))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)
    submitted_at: Mapped[datetime | None] = mapped_column(sa.DateTime)

    events: Mapped[list[FilingEvent]] = relationship(
        back_populates="filing", order_by="FilingEvent.id", cascade="all, delete-orphan"
    )

    @property
    def status_label(self) -> str:
        return FilingStatus.LABELS.get(self.status, self.status)

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def interfaces(self) -> tuple[str, str, str]:
        return KIND_INTERFACES[self.kind]


class FilingEvent(db.Model):
    """One status change (or notable answer) of a filing: who or what caused it and when."""

    __tablename__ = "twopath_filing_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    filing_id: Mapped[int] = mapped_column(sa.ForeignKey("twopath_filings.id"), index=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, index=True)
    actor: Mapped[str] = mapped_column(sa.String(80), default="")
    source: Mapped[str] = mapped_column(sa.String(16), default="user")  # user / platform / sync
    from_status: Mapped[str | None] = mapped_column(sa.String(24))
    to_status: Mapped[str | None] = mapped_column(sa.String(24))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    upload_id: Mapped[int | None] = mapped_column(sa.ForeignKey("uploads.id"), index=True)

    filing: Mapped[Filing] = relationship(back_populates="events")

    @property
    def from_label(self) -> str:
        return FilingStatus.LABELS.get(self.from_status or "", self.from_status or "")

    @property
    def to_label(self) -> str:
        return FilingStatus.LABELS.get(self.to_status or "", self.to_status or "")


class SignIn(db.Model):
    """The sign_no of one operator (9001), used in every later envelope until it expires."""

    __tablename__ = "twopath_signins"

    opter: Mapped[str] = mapped_column(sa.String(30), primary_key=True)
    sign_no: Mapped[str] = mapped_column(sa.String(30), default="")
    sign_time: Mapped[str] = mapped_column(sa.String(19), default="")
    obtained_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    upload_id: Mapped[int | None] = mapped_column(sa.ForeignKey("uploads.id"))
    invalidated_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    renewals: Mapped[int] = mapped_column(default=0)


class Drug(db.Model):
    """特药目录: the two-channel drugs with the centre's item code (med_list_codg)."""

    __tablename__ = "twopath_drugs"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(30), unique=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    enabled: Mapped[bool] = mapped_column(default=True)
    note: Mapped[str] = mapped_column(sa.String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)


class Disease(db.Model):
    """门慢门特病种目录 (opsp_dise_code / opsp_dise_name)."""

    __tablename__ = "twopath_diseases"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(30), unique=True)
    name: Mapped[str] = mapped_column(sa.String(300))
    enabled: Mapped[bool] = mapped_column(default=True)
    note: Mapped[str] = mapped_column(sa.String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)


class Institution(db.Model):
    """定点医药机构 a patient chooses for a two-channel filing (5.4: chosen from a list, not typed);
    ``twopathfixmedins`` of 2511 (fixmedins_code 30, fixmedins_name 300, poolarea_no 30)."""

    __tablename__ = "twopath_institutions"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(30), unique=True)
    name: Mapped[str] = mapped_column(sa.String(300))
    poolarea_no: Mapped[str] = mapped_column(sa.String(30), default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    note: Mapped[str] = mapped_column(sa.String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)


class ApiToken(db.Model):
    """A bearer token for the JSON API (``/twopath/api``) a mini-program calls on behalf of one user: the
    user's role and doctor permission decide what it may do. Only the SHA-256 of the token is kept."""

    __tablename__ = "twopath_api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("web_users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    label: Mapped[str] = mapped_column(sa.String(80), default="")
    created_by: Mapped[str] = mapped_column(sa.String(80), default="")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
    last_used_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
