"""Tables of the alerts that reach people (core.alerts): channels, rules, each rule's state per
subject (for de-duplication and the resolved message) and the history of every message sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core import clock
from core.db import db


def _now() -> datetime:
    return clock.utc_naive(clock.now())


class AlertChannel(db.Model):
    """Where messages go: e-mail (SMTP), a 企业微信 or a 钉钉 group robot."""

    __tablename__ = "alert_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(80))
    kind: Mapped[str] = mapped_column(sa.String(16))  # email / wecom / dingtalk
    enabled: Mapped[bool] = mapped_column(default=True)
    config: Mapped[Any] = mapped_column(sa.JSON, default=dict)  # non-secret: host, port, recipients, msgtype
    secret: Mapped[str] = mapped_column(sa.Text, default="")  # sealed JSON: SMTP password, webhook URL, sign secret
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)


class AlertRule(db.Model):
    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    report_type: Mapped[str | None] = mapped_column(sa.String(80))  # None: every report type
    threshold: Mapped[int] = mapped_column(default=1)
    window_minutes: Mapped[int] = mapped_column(default=60)  # at most one message per subject per window
    enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)


class AlertState(db.Model):
    """One rule's condition for one subject (a report type, or "" for platform-wide rules)."""

    __tablename__ = "alert_states"
    __table_args__ = (sa.UniqueConstraint("rule_id", "subject", name="uq_alert_state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(sa.ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(sa.String(80), default="")
    firing: Mapped[bool] = mapped_column(default=False)
    since: Mapped[datetime | None] = mapped_column(sa.DateTime)
    last_sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    message: Mapped[str | None] = mapped_column(sa.Text)


class AlertEvent(db.Model):
    """A message sent (fired, reminded, resolved, test) and what each channel answered."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, index=True)
    rule_id: Mapped[int | None] = mapped_column(sa.ForeignKey("alert_rules.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(sa.String(80), default="")
    kind: Mapped[str] = mapped_column(sa.String(16))  # firing / reminder / resolved / test
    title: Mapped[str] = mapped_column(sa.String(200))
    text: Mapped[str] = mapped_column(sa.Text)
    deliveries: Mapped[Any] = mapped_column(sa.JSON, default=list)  # [{"channel", "ok", "detail"}]
