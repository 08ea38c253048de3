"""The plugin's own tables: the sign gate (one worked example per regulator and the fingerprint of
the key and recipe it was verified with) and the entity index behind the call order (which upload
carries which hospital, department, doctor, order...)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core import clock
from core.db import db


def _now() -> datetime:
    return clock.utc_naive(clock.now())


class SignGate(db.Model):
    """The vendor's worked example and what verified it. Never the live key: only a keyed
    fingerprint of (live key, recipe); the example's own key is sealed like any secret."""

    __tablename__ = "ihs_sign_gate"

    regulator: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    appid: Mapped[str] = mapped_column(sa.String(64), default="")
    service: Mapped[str] = mapped_column(sa.String(32), default="")
    randomstr: Mapped[str] = mapped_column(sa.String(64), default="")
    uptime: Mapped[str] = mapped_column(sa.String(32), default="")
    data: Mapped[str] = mapped_column(sa.Text, default="")
    expected_sign: Mapped[str] = mapped_column(sa.String(512), default="")
    example_key: Mapped[str] = mapped_column(sa.Text, default="")  # sealed (core.secrets)
    verified_recipe: Mapped[str | None] = mapped_column(sa.String(300))
    fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    verified_at: Mapped[datetime | None] = mapped_column(sa.DateTime)
    verified_by: Mapped[str | None] = mapped_column(sa.String(80))
    last_result: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now, onupdate=_now)


class Entity(db.Model):
    """One business record (step + its key, e.g. ``department:0101``) carried by one planned upload.
    Written in the planning transaction, so it exists exactly when the upload does."""

    __tablename__ = "ihs_entities"
    __table_args__ = (
        sa.UniqueConstraint("step", "entity_key", "report_type", "business_key", name="uq_ihs_entity_upload"),
        sa.Index("ix_ihs_entities_step_key", "step", "entity_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    step: Mapped[str] = mapped_column(sa.String(40))
    entity_key: Mapped[str] = mapped_column(sa.String(128))
    report_type: Mapped[str] = mapped_column(sa.String(80))
    business_key: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=_now)
