"""The upload ledger: recording planned uploads and moving them through their named states.

Every upload is a committed row before anything is sent; the pipeline claims it with a
compare-and-set on (status, attempts) so two workers can never send the same attempt.
"""

from __future__ import annotations

import functools
import secrets as random_source
from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa

from core import aggregates, clock, ordering
from core.db import db
from core.hook_types import ReportType, UploadPlan
from core.models import Attempt, HeldBack, Upload, UploadStatus, Watermark

# States from which an attempt may be started (SENDING only through crash recovery). Never WAITING:
# an upload waiting for its prerequisites (core.ordering) cannot be claimed, so it is never sent early.
RUNNABLE = (UploadStatus.PENDING, UploadStatus.RETRY_WAIT, UploadStatus.FAILED, UploadStatus.REJECTED)


def _now() -> datetime:
    return clock.utc_naive(clock.now())


def new_idempotency_key() -> str:
    return random_source.token_hex(16)


def search_text(plan_keys: Iterable[str]) -> str:
    return " ".join(k for k in plan_keys if k)[:1000]


def record_plans(report_type: ReportType, plans: list[UploadPlan], *, actor: str | None = None,
                 commit: bool = True, slot_id: int | None = None) -> list[int]:
    """Write planned uploads (skipping business keys already in the ledger), their held-back records,
    prerequisites and watermarks in one transaction; return the ids of the new uploads (those with an
    unfinished prerequisite are WAITING). Planning a slot again (``slot_id``) resolves what it held back
    before: what is still held is recorded anew."""
    new_ids: list[Upload] = []
    if slot_id is not None:
        db.session.execute(
            sa.update(HeldBack).where(HeldBack.slot_id == slot_id, HeldBack.resolved.is_(False)).values(resolved=True)
        )
    for plan in plans:
        exists = db.session.execute(
            sa.select(Upload.id).filter_by(report_type=report_type.name, business_key=plan.business_key)
        ).first()
        for problem in plan.held_back:
            db.session.add(
                HeldBack(
                    report_type=report_type.name,
                    period=plan.period,
                    record_key=problem.record_key,
                    field=problem.field,
                    reason=problem.reason,
                    slot_id=slot_id,
                )
            )
        if exists is None and plan.rows is not None:
            upload = Upload(
                report_type=report_type.name,
                business_key=plan.business_key,
                period=plan.period,
                department=plan.department,
                operation=plan.operation,
                rows=plan.rows,
                idempotency_key=plan.idempotency_key or new_idempotency_key(),
                mapping_version=plan.mapping_version,
                search_text=search_text([plan.business_key, plan.idempotency_key or "", *plan.search_keys]),
                created_by=actor,
                parent_id=plan.parent_id,
                status=UploadStatus.PENDING,
            )
            db.session.add(upload)
            new_ids.append(upload)
            if plan.depends_on:
                db.session.flush()
                ordering.record_dependencies(upload, plan.depends_on)
        if plan.watermark:
            name, value = plan.watermark
            mark = db.session.get(Watermark, name)
            if mark is None:
                db.session.add(Watermark(name=name, value=value))
            elif value > mark.value:
                mark.value = value
    aggregates.settle(*new_ids)
    if commit:
        db.session.commit()
    else:
        db.session.flush()
    return [u.id for u in new_ids]


def watermark(name: str, default: str = "") -> str:
    mark = db.session.get(Watermark, name)
    return mark.value if mark else default


def claim(upload_id: int, expected_attempts: int, lease_seconds: int, *,
          worker: str = "") -> tuple[Upload, Attempt] | None:
    """Atomically move a runnable upload to SENDING for attempt ``expected_attempts + 1`` and record that
    attempt's row, committed here: the upload and its new attempt, or None when it is not runnable with
    that many attempts (another worker has it, or it moved on).

    The transaction is two statements back to back (a compare-and-set ``UPDATE … RETURNING`` and the
    attempt's ``INSERT``, both built once per process), and the rows are loaded after the commit: SQLite
    lets one writer at a time hold the file, and on PostgreSQL nothing waits on these rows, so the write
    is kept as short as it can be (loading the claimed row inside it held SQLite's lock about twice as
    long: 1.3 ms, not 0.7)."""
    now = _now()
    number = expected_attempts + 1
    take, record_attempt = _claim_statements()
    connection = db.session.connection()
    claimed = connection.execute(take, {
        "k_id": upload_id, "k_attempts": expected_attempts, "new_attempts": number,
        "new_lease": now + timedelta(seconds=lease_seconds), "new_now": now}).first()
    if claimed is None:
        db.session.rollback()
        return None
    if db.session.get_bind().dialect.name == "postgresql":
        # The claim need not wait for its WAL flush: nothing leaves before the attempt's next commit,
        # which is synchronous and so makes the claim durable with it. If the server crashes before
        # that, the claim is lost with nothing sent (the upload is pending again). One fsync less.
        db.session.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
    connection.execute(record_attempt, dict(
        upload_id=upload_id, number=number, started_at=now, worker=worker,
        resend=bool(claimed.delivery_uncertain) or claimed.operation == "update"))
    db.session.commit()
    upload = db.session.get(Upload, upload_id, populate_existing=True)  # a copy already loaded is refreshed
    record = db.session.execute(
        sa.select(Attempt).where(Attempt.upload_id == upload_id, Attempt.number == number)).scalar_one()
    return upload, record


@functools.cache
def _claim_statements() -> tuple[sa.Update, sa.Insert]:
    """(compare-and-set the upload to SENDING, insert its attempt), built once per process."""
    uploads = Upload.__table__
    take = (
        sa.update(uploads)
        .where(uploads.c.id == sa.bindparam("k_id"), uploads.c.attempts == sa.bindparam("k_attempts"),
               uploads.c.status.in_(RUNNABLE))
        .values(status=UploadStatus.SENDING, attempts=sa.bindparam("new_attempts"),
                lease_until=sa.bindparam("new_lease"), next_retry_at=None, updated_at=sa.bindparam("new_now"))
        .returning(uploads.c.delivery_uncertain, uploads.c.operation)
    )
    return take, sa.insert(Attempt.__table__)


def finish(upload: Upload, kind: str, *, code: str | None, message: str, retry_interval: int,
           retry_max: int, result: dict | None = None, search_keys: list[str] | None = None,
           follow_up: bool = False) -> None:
    """Apply an attempt's outcome: success, retry (bounded automatic retries) or reject. ``result`` is
    merged whatever the kind (a plugin keeps its strategy state there). ``follow_up``: the plugin asked
    for another attempt right away; it is due now and does not use up an automatic retry (the pipeline
    bounds follow-ups in a row)."""
    now = _now()
    upload.lease_until = None
    upload.last_code = code
    upload.last_message = message
    if result:
        upload.result = {**(upload.result or {}), **result}
    if search_keys:
        upload.search_text = search_text([upload.search_text, *search_keys])
    if follow_up:
        upload.status = UploadStatus.RETRY_WAIT
        upload.next_retry_at = now
        upload.finished_at = None
    elif kind == "success":
        upload.status = UploadStatus.SUCCEEDED
        upload.finished_at = now
    elif kind == "reject":
        upload.status = UploadStatus.REJECTED
        upload.finished_at = now
    elif upload.auto_retries < retry_max:
        upload.status = UploadStatus.RETRY_WAIT
        upload.auto_retries += 1
        upload.next_retry_at = now + timedelta(minutes=retry_interval)
    else:
        upload.status = UploadStatus.FAILED
        upload.finished_at = now
    ordering.on_finished(upload)
    aggregates.record_finished(upload)  # same transaction: the statistics cannot drift from the ledger


def mark_for_manual_retry(upload: Upload) -> None:
    """A person retries: a fresh allowance of automatic retries, run now."""
    upload.status = UploadStatus.RETRY_WAIT
    upload.auto_retries = 0
    upload.next_retry_at = _now()
    upload.finished_at = None
    aggregates.settle(upload)


def cancel(upload: Upload) -> None:
    if upload.status in (UploadStatus.SUCCEEDED, UploadStatus.SENDING):
        raise ValueError(f"状态为{upload.status_label}的上报不能取消")
    upload.status = UploadStatus.CANCELLED
    upload.next_retry_at = None
    upload.finished_at = _now()
    ordering.on_finished(upload)
    aggregates.settle(upload)


def stale_sending(now: datetime) -> list[Upload]:
    """Uploads left SENDING past their lease: the worker died or the machine was lost."""
    return list(
        db.session.execute(
            sa.select(Upload).where(Upload.status == UploadStatus.SENDING, Upload.lease_until < now)
        ).scalars()
    )


def due_retries(now: datetime, limit: int = 500) -> list[Upload]:
    return list(
        db.session.execute(
            sa.select(Upload)
            .where(Upload.status == UploadStatus.RETRY_WAIT, Upload.next_retry_at <= now)
            .order_by(Upload.next_retry_at)
            .limit(limit)
        ).scalars()
    )


def forgotten_pending(older_than: datetime, limit: int = 500, after_id: int = 0) -> list[tuple[int, int]]:
    """(id, attempts) of pending uploads whose job may have been lost (a Redis restart between commit and
    enqueue, a flushed queue), by id from ``after_id`` so a caller can page through all of them."""
    return [
        (row.id, row.attempts)
        for row in db.session.execute(
            sa.select(Upload.id, Upload.attempts)
            .where(Upload.status == UploadStatus.PENDING, Upload.created_at < older_than, Upload.id > after_id)
            .order_by(Upload.id)
            .limit(limit)
        )
    ]
