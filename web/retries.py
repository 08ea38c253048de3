"""失败重试: retry the failures matching a filter (count shown first, then confirmed), run throttled in the
background by an RQ job with its progress in ``web_bulk_retries``; and the global switch that stops
automatic retries."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from core import clock, ledger, settings
from core.db import db
from core.models import Upload, UploadStatus
from web import audit
from web.auth import require_role
from web.helpers import redis_call, report_type_choices, report_type_title, safe_back
from web.models import BulkRetry, Role
from web.upload_query import (
    FAILURE_STATUSES,
    FILTER_NAMES,
    STATUS_CHOICES,
    UploadFilter,
    department_choices,
    exact_count,
    filter_value_label,
)

log = logging.getLogger("baosong.web.retries")
bp = Blueprint("retries", __name__, url_prefix="/retries")

BULK_CHUNK = 50  # uploads marked and enqueued per step
BULK_PAUSE_SECONDS = 0.5  # between steps, so a thousand retries do not hit the regulator at once
BULK_MAX = 100_000  # one bulk retry at most; narrow the filter for more
BREAKDOWN_MAX = 20_000  # above this many, progress shows marking only (no per-status breakdown)
# A running bulk retry holds this key, refreshed every step; without it (its worker was killed, Redis was
# flushed) the admin's housekeeping resumes the bulk from where it got to.
ALIVE_KEY = "baosong:bulk-retry:{}:alive"
ALIVE_SECONDS = 120
RESUME_AFTER_SECONDS = 120  # a bulk queued this recently may simply not have been picked up yet


def _failure_statuses() -> list[tuple[str, str]]:
    return [c for c in STATUS_CHOICES if c[0] == "failures" or c[0] in FAILURE_STATUSES]


@bp.get("/")
def index():
    flt = UploadFilter.from_args(request.args)
    count = exact_count(flt, failures_only=True)
    recent = db.session.execute(sa.select(BulkRetry).order_by(BulkRetry.id.desc()).limit(10)).scalars().all()
    return render_template(
        "retries.html", flt=flt, count=count, bulk_max=BULK_MAX, recent=recent,
        statuses=_failure_statuses(), report_types=report_type_choices(), title_of=report_type_title,
        department_choices=department_choices(),
        auto_stopped=settings.flag("auto_retry_stopped") == "1",
        retry_interval=settings.flag("retry_interval_minutes"), retry_max=settings.flag("retry_max"),
    )


@bp.get("/confirm")
@require_role(Role.OPERATOR)
def confirm():
    flt = UploadFilter.from_args(request.args)
    count = exact_count(flt, failures_only=True)
    template = "retries_confirm.html" if request.headers.get("HX-Request") else "retries_confirm_page.html"
    return render_template(template, flt=flt, count=count, bulk_max=BULK_MAX, title_of=report_type_title,
                           filter_names=FILTER_NAMES, filter_value_label=filter_value_label)


def _matching_ids(flt: UploadFilter) -> list[int]:
    query = sa.select(Upload.id).where(*flt.conditions(failures_only=True)).order_by(Upload.id).limit(BULK_MAX)
    return list(db.session.execute(query).scalars())


@bp.post("/bulk")
@require_role(Role.OPERATOR)
def bulk():
    flt = UploadFilter.from_args(request.form)
    ids = _matching_ids(flt)
    if not ids:
        flash("没有符合条件的失败上报", "warn")
        return redirect(url_for("retries.index", **flt.as_dict()))
    expected = request.form.get("expected", type=int)
    job = BulkRetry(filters={**flt.as_dict(), "ids": ids}, total=len(ids), created_by=g.user.username)
    db.session.add(job)
    db.session.flush()
    audit.record("retry.bulk", f"bulk:{job.id}", after={"filter": flt.as_dict(), "count": len(ids),
                                                        "confirmed_count": expected})
    db.session.commit()
    warnings: list[str] = []
    queued = redis_call("批量重试任务", lambda: _enqueue_bulk(job.id), warnings)
    if queued is None:
        # No Redis: mark in a thread of this process; the sweep enqueues them once Redis is back.
        app = current_app._get_current_object()
        threading.Thread(target=_run_in_app, args=(app, job.id), daemon=True).start()
        for warning in warnings:
            flash(warning, "warn")
    return redirect(url_for("retries.progress_page", bulk_id=job.id))


def _bulk_job_id(bulk_id: int) -> str:
    return f"bulk-retry-{bulk_id}"


def _enqueue_bulk(bulk_id: int) -> str:
    from core.queue import queue

    job = queue().enqueue("web.retries.bulk_retry_job", bulk_id, job_id=_bulk_job_id(bulk_id),
                          result_ttl=3600, failure_ttl=86400, job_timeout=3600)
    return job.id


def _run_in_app(app, bulk_id: int) -> None:
    with app.app_context():
        run_bulk_retry(bulk_id)


def bulk_retry_job(bulk_id: int) -> dict:
    """RQ job entry (runs in a worker)."""
    from core.app import process_app

    with process_app().app_context():
        return run_bulk_retry(bulk_id)


def run_bulk_retry(bulk_id: int, *, chunk: int | None = None, pause: float | None = None) -> dict:
    """Mark and enqueue the bulk's uploads in chunks, pausing between them; stops when asked to. Each
    step commits its marks with the progress counters, so a run that was killed resumes after what it
    had done (``resume_interrupted``); one run at a time holds the bulk's alive key."""
    from core.queue import enqueue_upload

    chunk = chunk or BULK_CHUNK
    pause = BULK_PAUSE_SECONDS if pause is None else pause
    job = db.session.get(BulkRetry, bulk_id)
    if job is None or job.finished:
        return {"skipped": True}
    if not _hold(bulk_id, first=True):
        return {"skipped": True, "running": True}
    ids: list[int] = list((job.filters or {}).get("ids") or [])
    job.status = "running"
    db.session.commit()
    redis_failed = False
    try:
        while True:
            db.session.refresh(job)
            start = job.done + job.skipped  # where this bulk got to, whoever ran it
            if job.status == "stopped" or start >= len(ids):
                break
            _hold(bulk_id)
            uploads = db.session.execute(
                sa.select(Upload).where(Upload.id.in_(ids[start:start + chunk])).order_by(Upload.id)
            ).scalars().all()
            marked = [u for u in uploads if u.status in FAILURE_STATUSES]
            for upload in marked:
                ledger.mark_for_manual_retry(upload)
            job.done += len(marked)
            job.skipped += len(ids[start:start + chunk]) - len(marked)
            db.session.commit()  # marked before enqueued: a lost enqueue is picked up by the sweep
            for upload in marked:
                try:
                    enqueue_upload(upload.id, upload.attempts)
                except Exception as exc:
                    if not redis_failed:
                        log.warning("bulk retry %s: enqueue failed: %s", bulk_id, exc)
                    redis_failed = True
            if start + chunk < len(ids) and pause:
                time.sleep(pause)
        db.session.refresh(job)
        if job.status != "stopped":
            job.status = "done"
        if redis_failed:
            job.message = "部分重试未能放入队列（Redis 不可用），将由清扫任务在 Redis 恢复后发送"
    except Exception as exc:
        db.session.rollback()
        job = db.session.get(BulkRetry, bulk_id)
        job.status, job.message = "error", f"{type(exc).__name__}: {exc}"
        log.exception("bulk retry %s failed", bulk_id)
    job.finished_at = clock.utc_naive(clock.now())
    db.session.commit()
    _release(bulk_id)
    return {"done": job.done, "skipped": job.skipped, "status": job.status}


def _hold(bulk_id: int, *, first: bool = False) -> bool:
    """Take (``first``) or refresh the bulk's alive key. Without Redis (the admin's own thread runs the
    bulk then) it runs unheld: False only when another run holds the key."""
    from core.queue import connection

    try:
        conn = connection()
        if first:
            return bool(conn.set(ALIVE_KEY.format(bulk_id), "1", nx=True, ex=ALIVE_SECONDS))
        conn.set(ALIVE_KEY.format(bulk_id), "1", ex=ALIVE_SECONDS)
    except Exception:  # Redis down: the thread path; the sweep enqueues the marked uploads later
        pass
    return True


def _release(bulk_id: int) -> None:
    from core.queue import connection

    try:
        connection().delete(ALIVE_KEY.format(bulk_id))
    except Exception:
        pass


def resume_interrupted() -> list[int]:
    """Bulk retries left unfinished with no run holding them and no job waiting for them (a killed
    worker, a flushed Redis): enqueued again, to go on from where they got to. Returns their ids."""
    from rq.job import Job

    from core.queue import connection, forget_job, queue

    conn = connection()
    waiting = {job_id.decode() if isinstance(job_id, bytes) else job_id
               for job_id in conn.lrange(queue().key, 0, -1)}
    recent = clock.utc_naive(clock.now()) - timedelta(seconds=RESUME_AFTER_SECONDS)
    resumed = []
    for bulk in db.session.execute(sa.select(BulkRetry).where(BulkRetry.status.in_(("queued", "running")))
                                   .order_by(BulkRetry.id)).scalars():
        job_id = _bulk_job_id(bulk.id)
        if conn.exists(ALIVE_KEY.format(bulk.id)) or job_id in waiting:
            continue
        if bulk.status == "queued" and bulk.created_at > recent:
            continue
        if conn.exists(Job.key_for(job_id)):
            forget_job(job_id)
        _enqueue_bulk(bulk.id)
        resumed.append(bulk.id)
        log.warning("bulk retry %s was interrupted at %s of %s: resumed", bulk.id, bulk.done + bulk.skipped,
                    bulk.total)
    return resumed


def _breakdown(job: BulkRetry) -> tuple[dict[str, int], int] | None:
    """Current statuses of the bulk's uploads, and how many are still in flight (waiting to be sent or
    being sent); None for very large bulks."""
    ids = list((job.filters or {}).get("ids") or [])
    if not ids or len(ids) > BREAKDOWN_MAX:
        return None
    now = clock.utc_naive(clock.now())
    in_flight_expr = sa.or_(
        Upload.status.in_((UploadStatus.PENDING, UploadStatus.SENDING)),
        sa.and_(Upload.status == UploadStatus.RETRY_WAIT, Upload.next_retry_at <= now),
    )
    counts: dict[str, int] = {}
    in_flight = 0
    for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
        rows = db.session.execute(
            sa.select(Upload.status, in_flight_expr.label("busy"), sa.func.count())
            .where(Upload.id.in_(ids[start:start + 900]))
            .group_by(Upload.status, "busy")
        ).all()
        for status, busy, n in rows:
            counts[status] = counts.get(status, 0) + n
            in_flight += n if busy else 0
    return counts, in_flight


POLL_AFTER_FINISH = 600  # seconds a finished bulk keeps being watched for its uploads' answers


def _progress_context(bulk_id: int) -> dict:
    job = db.session.get(BulkRetry, bulk_id) or abort(404)
    result = _breakdown(job)
    breakdown, in_flight = result if result else (None, 0)
    recent = job.finished_at is None or \
        (clock.utc_naive(clock.now()) - job.finished_at).total_seconds() < POLL_AFTER_FINISH
    # Keep polling until the marking is over and every retried upload has had its attempt.
    polling = not job.finished or (in_flight > 0 and recent and job.status != "stopped")
    filter_qs = urlencode({k: v for k, v in (job.filters or {}).items() if k != "ids"})
    return dict(job=job, breakdown=breakdown, in_flight=in_flight, labels=UploadStatus.LABELS,
                polling=polling, filter_qs=filter_qs)


@bp.get("/bulk/<int:bulk_id>")
def progress_page(bulk_id: int):
    return render_template("retries_progress_page.html", **_progress_context(bulk_id))


@bp.get("/bulk/<int:bulk_id>/progress")
def progress(bulk_id: int):
    return render_template("retries_progress.html", **_progress_context(bulk_id))


@bp.post("/bulk/<int:bulk_id>/stop")
@require_role(Role.OPERATOR)
def stop(bulk_id: int):
    job = db.session.get(BulkRetry, bulk_id) or abort(404)
    if not job.finished:
        job.status = "stopped"
        audit.record("retry.bulk_stop", f"bulk:{job.id}", after={"done": job.done})
        db.session.commit()
        flash("已停止批量重试（已提交的重试仍会执行）", "ok")
    return redirect(url_for("retries.progress_page", bulk_id=bulk_id))


@bp.post("/auto")
@require_role(Role.OPERATOR)
def auto_switch():
    stop_it = request.form.get("stopped") == "1"
    before = settings.flag("auto_retry_stopped")
    settings.set_flag("auto_retry_stopped", "1" if stop_it else "0")
    audit.record("retry.auto_stop", "auto_retry_stopped", before={"stopped": before == "1"},
                 after={"stopped": stop_it})
    db.session.commit()
    flash("已停止自动重试：失败的上报不再自动重发，手动重试仍可用；需要时点「恢复自动重试」" if stop_it
          else "已恢复自动重试：失败的上报将按间隔自动重发", "ok")
    return redirect(safe_back(request.form.get("back"), url_for("retries.index")))
