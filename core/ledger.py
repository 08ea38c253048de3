"""The upload ledger: recording planned uploads and moving them through their named states.

Every upload is a committed row before anything is sent; the pipeline takes it with a
compare-and-set on (status, attempts, updated_at) so two workers can never send the same attempt.
"""

from __future__ import annotations

import functools
import secrets as random_source
from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from core import aggregates, clock, ordering
from core.db import db
from core.hook_types import ReportType, UploadPlan
from core.models import Attempt, HeldBack, Upload, UploadStatus, Watermark

# States from which an attempt may be started (SENDING only through crash recovery). Never WAITING:
# an upload waiting for its prerequisites (core.ordering) is never runnable, so it is never sent early.
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


def runnable(upload_id: int, expected_attempts: int) -> Upload | None:
    """The upload, read afresh, when its attempt ``expected_attempts + 1`` may start; None when it may not
    (another worker has it, or it moved on). Nothing is written: the attempt is built from this row and
    then taken with ``take``, which checks the row is still as read."""
    upload = db.session.get(Upload, upload_id, populate_existing=True)  # a copy already loaded is refreshed
    if upload is None or upload.status not in RUNNABLE or upload.attempts != expected_attempts:
        return None
    return upload


def take(upload: Upload, record: Attempt, lease_until: datetime) -> bool:
    """Compare-and-set ``upload`` (as read by ``runnable``) to SENDING for its next attempt ``record``, and
    add that attempt, in the caller's transaction (the caller commits: the commit before the request
    leaves, or the one that records an attempt that stopped before sending). False, with nothing
    written, when the row changed since it was read (another worker took it, a person edited or
    cancelled it): the caller rolls back and reads it again.

    Taking it after the request is built, not before, makes the take and the attempt's record one
    transaction: two write transactions per attempt instead of three. SQLite lets one writer at a time
    hold the file, and every commit empties the other workers' page caches."""
    now = _now()
    taken = db.session.connection().execute(_take_statement(), {  # no autoflush: nothing written before it
        "k_id": upload.id, "k_attempts": upload.attempts, "k_updated_at": upload.updated_at,
        "new_attempts": record.number, "new_lease": lease_until, "new_now": now}).rowcount
    if taken != 1:
        return False
    for name, value in (("status", UploadStatus.SENDING), ("attempts", record.number),
                        ("lease_until", lease_until), ("next_retry_at", None), ("updated_at", now)):
        set_committed_value(upload, name, value)  # what the statement wrote: not written again
    db.session.add(record)
    return True


@functools.cache
def _take_statement() -> sa.Update:
    """The compare-and-set of ``take``, built once per process."""
    uploads = Upload.__table__
    return (
        sa.update(uploads)
        .where(uploads.c.id == sa.bindparam("k_id"), uploads.c.attempts == sa.bindparam("k_attempts"),
               uploads.c.updated_at == sa.bindparam("k_updated_at"), uploads.c.status.in_(RUNNABLE))
        .values(status=UploadStatus.SENDING, attempts=sa.bindparam("new_attempts"),
                lease_until=sa.bindparam("new_lease"), next_retry_at=None, updated_at=sa.bindparam("new_now"))
    )


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
