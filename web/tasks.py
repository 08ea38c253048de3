"""定时任务: every scheduled report type with its cron, next runs and last result; pause, resume, run now,
edit the cron (validated, next five runs previewed live), back-fill a date range (slot count first).

The database is the truth; every change is pushed to Redis (rq-scheduler) right away, and if Redis is
down the page says so — the scheduler rebuilds Redis from the database when it starts.
"""

from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from core import clock, scheduler
from core.db import db
from core.errors import BaosongError
from core.models import Slot, Task
from core.plugins import registry
from web import audit
from web.auth import require_role
from web.helpers import redis_call, report_type_title, safe_back
from web.models import Role

bp = Blueprint("tasks", __name__, url_prefix="/tasks")
BACKFILL_MAX_SLOTS = 5000


def _task_or_404(task_id: int) -> Task:
    return db.session.get(Task, task_id) or abort(404)


def _next_runs(task: Task, count: int = 3) -> list[datetime]:
    try:
        return scheduler.next_runs(task.cron, task.timezone, clock.now(), count)
    except BaosongError:
        return []


def _recent_slots(report_type: str, limit: int = 5) -> list[Slot]:
    return list(db.session.execute(
        sa.select(Slot).where(Slot.report_type == report_type).order_by(Slot.slot_at.desc()).limit(limit)
    ).scalars())


@bp.get("/")
def index():
    tasks = db.session.execute(sa.select(Task).order_by(Task.report_type)).scalars().all()
    known = registry().report_types
    rows = [dict(task=t, title=report_type_title(t.report_type), next_runs=_next_runs(t) if t.enabled else [],
                 slots=_recent_slots(t.report_type), known=t.report_type in known) for t in tasks]
    return render_template("tasks.html", rows=rows)


@bp.get("/<int:task_id>")
def detail(task_id: int):
    task = _task_or_404(task_id)
    today = clock.local_now(ZoneInfo(task.timezone)).date()
    return render_template("task_detail.html", task=task, title=report_type_title(task.report_type),
                           next_runs=_next_runs(task, 5), slots=_recent_slots(task.report_type, 20),
                           today=today, yesterday=today - timedelta(days=1))


def _push(task: Task, warnings: list[str]) -> None:
    """Bring rq-scheduler's copy of this task in line with the database."""

    def push():
        if task.enabled:
            scheduler.schedule_next_firing(task)
        else:
            sched = scheduler._rq_scheduler()
            for job in task_jobs(sched, task.report_type):
                sched.cancel(job)

    redis_call("任务计划", push, warnings)


def task_jobs(sched, report_type: str) -> list:
    """The rq-scheduler jobs that fire this task (found by function and argument, whatever their id)."""
    return [job for job in sched.get_jobs()
            if job.func_name == "core.scheduler.fire_task_job" and list(job.args or ()) == [report_type]]


def _flash_all(warnings: list[str]) -> None:
    for warning in warnings:
        flash(warning, "warn")


@bp.post("/<int:task_id>/pause")
@require_role(Role.OPERATOR)
def pause(task_id: int):
    return _set_enabled(task_id, False)


@bp.post("/<int:task_id>/resume")
@require_role(Role.OPERATOR)
def resume(task_id: int):
    return _set_enabled(task_id, True)


def _set_enabled(task_id: int, enabled: bool):
    task = _task_or_404(task_id)
    before = {"enabled": task.enabled}
    task.enabled = enabled
    if enabled:
        # Resuming does not run every slot missed while paused: planning continues from now.
        task.last_slot_at = clock.utc_naive(clock.now())
    audit.record("task.resume" if enabled else "task.pause", task.report_type, before=before,
                 after={"enabled": enabled})
    db.session.commit()
    warnings: list[str] = []
    _push(task, warnings)
    _flash_all(warnings)
    flash(f"已{'恢复' if enabled else '暂停'}：{report_type_title(task.report_type)}", "ok")
    return redirect(safe_back(request.form.get("back"), url_for("tasks.index")))


@bp.post("/<int:task_id>/run")
@require_role(Role.OPERATOR)
def run_now(task_id: int):
    from core.queue import enqueue_upload

    task = _task_or_404(task_id)
    slot = clock.now().astimezone(ZoneInfo(task.timezone)).replace(second=0, microsecond=0)
    audit.record("task.run_now", task.report_type, after={"slot": slot.isoformat()}, commit=True)
    try:
        ids = scheduler.run_slot(task.report_type, slot, "manual", enqueue=False)
    except Exception as exc:
        flash(f"立即执行失败：{exc}", "error")
        return redirect(safe_back(request.form.get("back"), url_for("tasks.index")))
    warnings: list[str] = []
    redis_call("上报任务", lambda: [enqueue_upload(i, 0) for i in ids], warnings)
    _flash_all(warnings)
    flash(f"已执行 {report_type_title(task.report_type)}（{slot:%Y-%m-%d %H:%M}）：计划 {len(ids)} 条上报"
          + ("" if ids else "（该时段已执行过，或没有数据）"), "ok")
    return redirect(safe_back(request.form.get("back"), url_for("tasks.index")))


@bp.get("/preview")
def preview():
    """HTMX: the next five runs of a cron expression as typed, or what is wrong with it."""
    expression = request.args.get("cron", "")
    tz = request.args.get("timezone") or str(clock.default_timezone())
    try:
        runs = scheduler.next_runs(expression, tz, clock.now(), 5)
        error = None
    except BaosongError as exc:
        runs, error = [], str(exc)
    return render_template("task_preview.html", runs=runs, error=error)


@bp.post("/<int:task_id>/cron")
@require_role(Role.OPERATOR)
def edit_cron(task_id: int):
    task = _task_or_404(task_id)
    try:
        expression = scheduler.validate_cron(request.form.get("cron", ""))
    except BaosongError as exc:
        flash(str(exc), "error")
        return redirect(url_for("tasks.detail", task_id=task_id))
    before = {"cron": task.cron}
    task.cron = expression
    audit.record("task.cron", task.report_type, before=before, after={"cron": expression})
    db.session.commit()
    warnings: list[str] = []
    _push(task, warnings)
    _flash_all(warnings)
    flash(f"已修改计划为「{expression}」", "ok")
    return redirect(url_for("tasks.detail", task_id=task_id))


def _backfill_range(task: Task, form) -> tuple[datetime, datetime]:
    tz = ZoneInfo(task.timezone)
    try:
        start = date.fromisoformat(form.get("start", ""))
        end = date.fromisoformat(form.get("end", ""))
    except ValueError:
        raise BaosongError("请填写开始和结束日期") from None
    if end < start:
        raise BaosongError("结束日期早于开始日期")
    # Whole local days: [start 00:00, end 23:59:59].
    return datetime.combine(start, time(), tz), datetime.combine(end, time(23, 59, 59), tz)


@bp.get("/<int:task_id>/backfill/preview")
def backfill_preview(task_id: int):
    task = _task_or_404(task_id)
    try:
        start, end = _backfill_range(task, request.args)
        count = scheduler.backfill(task.report_type, start, end, dry_run=True)
        error = None if count <= BACKFILL_MAX_SLOTS else f"时段过多（{count}），一次最多 {BACKFILL_MAX_SLOTS} 个"
    except BaosongError as exc:
        count, error = 0, str(exc)
    return render_template("task_backfill_preview.html", count=count, error=error, task=task)


@bp.post("/<int:task_id>/backfill")
@require_role(Role.OPERATOR)
def backfill(task_id: int):
    task = _task_or_404(task_id)
    try:
        start, end = _backfill_range(task, request.form)
        count = scheduler.backfill(task.report_type, start, end, dry_run=True)
    except BaosongError as exc:
        flash(str(exc), "error")
        return redirect(url_for("tasks.detail", task_id=task_id))
    if count > BACKFILL_MAX_SLOTS:
        flash(f"时段过多（{count}），一次最多 {BACKFILL_MAX_SLOTS} 个", "error")
        return redirect(url_for("tasks.detail", task_id=task_id))
    audit.record("task.backfill", task.report_type,
                 after={"start": start.isoformat(), "end": end.isoformat(), "slots": count}, commit=True)
    warnings: list[str] = []
    queued = redis_call("补传任务", lambda: _enqueue_backfill(task.report_type, start, end), warnings)
    if queued is None:
        app = current_app._get_current_object()
        threading.Thread(target=_backfill_in_app, args=(app, task.report_type, start, end), daemon=True).start()
        _flash_all(warnings)
    flash(f"已开始补传 {count} 个时段（{start:%Y-%m-%d} 至 {end:%Y-%m-%d}），结果见下方执行记录和数据查询", "ok")
    return redirect(url_for("tasks.detail", task_id=task_id))


def _enqueue_backfill(report_type: str, start: datetime, end: datetime) -> str:
    from core.queue import queue

    job = queue().enqueue("web.tasks.backfill_job", report_type, start.isoformat(), end.isoformat(),
                          result_ttl=3600, failure_ttl=86400, job_timeout=3600)
    return job.id


def backfill_job(report_type: str, start_iso: str, end_iso: str) -> int:
    """RQ job entry: plan every slot of the range and enqueue the uploads."""
    from core.app import process_app

    with process_app().app_context():
        return scheduler.backfill(report_type, datetime.fromisoformat(start_iso), datetime.fromisoformat(end_iso))


def _backfill_in_app(app, report_type: str, start: datetime, end: datetime) -> None:
    with app.app_context():
        try:
            scheduler.backfill(report_type, start, end, enqueue=False)
        except Exception:
            current_app.logger.exception("backfill %s failed", report_type)
