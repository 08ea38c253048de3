"""Ordering between uploads, and reversal (冲销) followed by a re-send (重传) in that order.

An ``UploadPlan`` names its prerequisites in ``depends_on`` as (report_type, business_key). The ledger
records one ``upload_dependencies`` row per prerequisite; an upload with a prerequisite that has not
succeeded is recorded ``WAITING`` (等待前置上报), which ``ledger.runnable`` never lets run, so it cannot be sent
before its prerequisites. ``on_finished`` (called by ``ledger.finish`` and ``ledger.cancel`` in the
same transaction as the prerequisite's new state) releases waiting uploads to ``PENDING`` when all their
prerequisites succeeded, or holds them with the prerequisite's reason in ``last_message`` — down the
whole chain. Released uploads are enqueued after the commit (``enqueue_released``); if that is lost, the
sweep's pending requeue finds them, and ``release_ready`` catches a release missed by a race between a
dependent being planned and its prerequisite finishing.

Matching is by (report_type, business_key), which the ledger keeps unique, so a prerequisite may be
planned before or after the upload that depends on it.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core import clock
from core.db import db
from core.errors import BaosongError
from core.models import Upload, UploadStatus

log = logging.getLogger("baosong.ordering")
HELD_STATUSES = (UploadStatus.REJECTED, UploadStatus.FAILED, UploadStatus.CANCELLED)
_RELEASED = "baosong_released_uploads"  # session.info key: ids released in this transaction
MAX_CHAIN = 50  # how far a hold reason is carried down a chain


class UploadDependency(db.Model):
    """``upload_id`` may not be sent before the upload (report type, business key) succeeded."""

    __tablename__ = "upload_dependencies"
    __table_args__ = (
        sa.UniqueConstraint("upload_id", "requires_report_type", "requires_business_key", name="uq_upload_dependency"),
        sa.Index("ix_upload_dependencies_requires", "requires_report_type", "requires_business_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    upload_id: Mapped[int] = mapped_column(sa.ForeignKey("uploads.id"), index=True)
    requires_report_type: Mapped[str] = mapped_column(sa.String(80))
    requires_business_key: Mapped[str] = mapped_column(sa.String(200))
    # Filled once the prerequisite is in the ledger (it may be planned after its dependent).
    requires_upload_id: Mapped[int | None] = mapped_column(sa.ForeignKey("uploads.id"))


def _find(report_type: str, business_key: str) -> Upload | None:
    return db.session.execute(
        sa.select(Upload).filter_by(report_type=report_type, business_key=business_key)
    ).scalar_one_or_none()


def record_dependencies(upload: Upload, depends_on: list[tuple[str, str]]) -> None:
    """Write an upload's prerequisites (the upload is flushed, not committed) and set it WAITING when one
    has not succeeded yet. Called by ``ledger.record_plans``."""
    for report_type, business_key in dict.fromkeys(tuple(d) for d in depends_on):
        if (report_type, business_key) == (upload.report_type, upload.business_key):
            raise ValueError(f"上报 {business_key} 不能依赖它自己")
        required = _find(report_type, business_key)
        db.session.add(UploadDependency(upload_id=upload.id, requires_report_type=report_type,
                                        requires_business_key=business_key,
                                        requires_upload_id=required.id if required else None))
    db.session.flush()
    reason = blocking_reason(upload)
    if reason is not None:
        upload.status = UploadStatus.WAITING
        upload.last_message = reason


def prerequisites(upload: Upload) -> list[tuple[UploadDependency, Upload | None]]:
    """The upload's prerequisites with the uploads they name (None: not planned yet)."""
    rows = db.session.execute(
        sa.select(UploadDependency).filter_by(upload_id=upload.id).order_by(UploadDependency.id)
    ).scalars().all()
    out = []
    for dep in rows:
        required = db.session.get(Upload, dep.requires_upload_id) if dep.requires_upload_id else None
        if required is None:
            required = _find(dep.requires_report_type, dep.requires_business_key)
            if required is not None:
                dep.requires_upload_id = required.id
        out.append((dep, required))
    return out


def dependents(upload: Upload) -> list[Upload]:
    """Uploads that name this one as a prerequisite. Asked on every finish and usually none: their ids
    first (a light indexed read), the uploads only when there are some."""
    ids = db.session.execute(sa.select(UploadDependency.upload_id).where(
        UploadDependency.requires_report_type == upload.report_type,
        UploadDependency.requires_business_key == upload.business_key,
    )).scalars().all()
    if not ids:
        return []
    return list(db.session.execute(sa.select(Upload).where(Upload.id.in_(ids)).order_by(Upload.id)).scalars())


def _describe(required: Upload) -> str:
    return f"#{required.id}（{required.report_type} {required.business_key}）"


def blocking_reason(upload: Upload) -> str | None:
    """Why the upload may not be sent yet, in Chinese; None when every prerequisite succeeded."""
    for dep, required in prerequisites(upload):
        if required is None:
            return f"等待前置上报：{dep.requires_report_type} {dep.requires_business_key}（尚未生成）"
        if required.status == UploadStatus.SUCCEEDED:
            continue
        if required.status in HELD_STATUSES:
            why = (required.last_message or "").strip()[:300]
            return (f"前置上报 {_describe(required)}{required.status_label}，本上报暂停：{why}"
                    f"（前置上报处理并成功后自动发送）")
        if required.status == UploadStatus.WAITING:
            return f"等待前置上报 {_describe(required)}，它也在等待其前置上报"
        return f"等待前置上报 {_describe(required)}（{required.status_label}）"
    return None


def on_finished(upload: Upload) -> None:
    """The upload reached a new state: release or hold the uploads waiting on it, down the chain.
    Runs inside the caller's transaction (``ledger.finish``/``ledger.cancel``)."""
    seen: set[int] = {upload.id}
    frontier = [upload]
    depth = 0
    while frontier and depth < MAX_CHAIN:
        nxt = []
        for current in frontier:
            for waiting in dependents(current):
                if waiting.id in seen or waiting.status != UploadStatus.WAITING:
                    continue
                seen.add(waiting.id)
                reason = blocking_reason(waiting)
                if reason is None:
                    release(waiting)
                else:
                    waiting.last_message = reason
                    nxt.append(waiting)  # its own dependents learn the new reason too
        frontier = nxt
        depth += 1


def release(upload: Upload) -> None:
    from core import aggregates

    upload.status = UploadStatus.PENDING
    upload.last_message = "前置上报均已成功，已放行发送"
    upload.updated_at = clock.utc_naive(clock.now())
    aggregates.settle(upload)  # the statistics count it as pending from now on
    db.session.info.setdefault(_RELEASED, []).append(upload.id)


def enqueue_released() -> list[int]:
    """After the commit that released uploads: enqueue them (the sweep requeues them if this is lost)."""
    from core.queue import enqueue_upload

    ids = db.session.info.pop(_RELEASED, [])
    for upload_id in ids:
        try:
            enqueue_upload(upload_id, db.session.get(Upload, upload_id).attempts)
        except Exception as exc:  # Redis down: the upload is PENDING in the ledger; the sweep enqueues it
            log.warning("could not enqueue released upload %s: %s", upload_id, exc)
    return ids


def release_ready(limit: int = 500) -> int:
    """Release waiting uploads whose prerequisites all succeeded (a release missed by a race, or a
    prerequisite that succeeded before its dependent was committed). Run by the sweep."""
    waiting = db.session.execute(
        sa.select(Upload).where(Upload.status == UploadStatus.WAITING).order_by(Upload.id).limit(limit)
    ).scalars().all()
    released = 0
    for upload in waiting:
        reason = blocking_reason(upload)
        if reason is None:
            release(upload)
            released += 1
        elif reason != upload.last_message:
            upload.last_message = reason
    db.session.commit()
    return released


def chain(upload: Upload) -> dict[str, list[tuple[Any, Upload | None]]]:
    """For the detail page: what this upload waits for, and what waits for it."""
    return {"requires": prerequisites(upload), "dependents": dependents(upload)}


# --- reversal then re-send ----------------------------------------------------------------------------

def reverse_and_resend(upload_id: int, actor: str, rows: list[dict] | None = None) -> tuple[int, int]:
    """冲销 then 重传: record a reversal of an accepted upload and a re-send that depends on it, in one
    transaction, and enqueue the reversal. Returns (reversal id, re-send id).

    The report type must declare ``reversal`` (the report type whose upload reverses it; the plugin
    builds the reversal for ``operation == "delete"``). The re-send carries ``rows`` (corrected data) or
    the original rows, and is only sent once the reversal succeeded. Refused while an earlier reversal of
    the same upload is unfinished, so a double click or a retried request never reverses twice.
    """
    from core import ledger
    from core.plugins import registry
    from core.queue import enqueue_upload

    original = db.session.get(Upload, upload_id)
    if original is None:
        raise BaosongError(f"上报 #{upload_id} 不存在")
    reg = registry()
    report_type = reg.report_type(original.report_type)
    if not report_type.reversal:
        raise BaosongError(f"报表类型 {report_type.title} 没有冲销接口")
    if original.status != UploadStatus.SUCCEEDED:
        raise BaosongError(f"只有已成功的上报可以冲销（当前：{original.status_label}）")
    reversal_type = reg.report_type(report_type.reversal)
    earlier = db.session.execute(
        sa.select(Upload).where(Upload.parent_id == original.id, Upload.operation == "delete")
    ).scalars().all()
    if any(u.status not in UploadStatus.FINAL for u in earlier):
        raise BaosongError("该上报已有未完成的冲销，请等待其完成")
    from core.hook_types import UploadPlan

    number = len(earlier) + 1
    reverse_key = f"{original.business_key}#冲销{number}"
    resend_key = f"{original.business_key}#重传{number}"
    reverse = UploadPlan(business_key=reverse_key, period=original.period, rows=list(original.rows or []),
                         department=original.department, operation="delete", parent_id=original.id,
                         search_keys=[original.business_key])
    resend = UploadPlan(business_key=resend_key, period=original.period,
                        rows=list(rows if rows is not None else original.rows or []),
                        department=original.department, operation="new", parent_id=original.id,
                        depends_on=[(reversal_type.name, reverse_key)], search_keys=[original.business_key])
    reverse_ids = ledger.record_plans(reversal_type, [reverse], actor=actor, commit=False)
    resend_ids = ledger.record_plans(report_type, [resend], actor=actor, commit=False)
    if not reverse_ids or not resend_ids:
        db.session.rollback()
        raise BaosongError("该上报的冲销已在进行，请刷新页面")
    db.session.commit()
    try:
        enqueue_upload(reverse_ids[0], 0)
    except Exception as exc:  # the sweep enqueues the pending reversal
        log.warning("could not enqueue reversal %s: %s", reverse_ids[0], exc)
    return reverse_ids[0], resend_ids[0]
