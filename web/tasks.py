"""定时任务: every scheduled report type with its cron, next runs and last result; pause, resume, run now,
edit the cron (validated, next five runs previewed live), back-fill a date range (slot count first; run
in the background with its progress shown), and each slot with its state: one that failed, was skipped,
held records back or was interrupted can be planned again (重新计划 / 补报), one at a time or all held back.

The database is the truth; every change is pushed to Redis (rq-scheduler) right away, and if Redis is
down the page says so — the scheduler repairs Redis from the database on every loop.
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
from core.models import BackfillRun, Slot, SlotStatus, Task
from core.plugins import registry
from web import audit
from web.auth import require_role
from web.helpers import redis_call, regulator_statuses, report_type_title, safe_back
from web.models import Role

bp = Blueprint("tasks", __name__, url_prefix="/tasks")
SLOTS_SHOWN = 50


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
    blocked = regulator_statuses([t.report_type for t in tasks])
    return render_template("tasks.html", rows=rows, blocked=blocked)


@bp.get("/<int:task_id>")
def detail(task_id: int):
    task = _task_or_404(task_id)
    today = clock.local_now(ZoneInfo(task.timezone)).date()
    state = request.args.get("state", "")
    query = sa.select(Slot).where(Slot.report_type == task.report_type)
    if state == "open":
        query = query.where(Slot.status.in_(SlotStatus.REPLANNABLE))
    elif state in SlotStatus.LABELS:
        query = query.where(Slot.status == state)
    slots = db.session.execute(query.order_by(Slot.slot_at.desc()).limit(SLOTS_SHOWN)).scalars().all()
    counts = dict(db.session.execute(
        sa.select(Slot.status, sa.func.count()).where(Slot.report_type == task.report_type).group_by(Slot.status)
    ).all())
    return render_template("task_detail.html", task=task, title=report_type_title(task.report_type),
                           next_runs=_next_runs(task, 5), slots=slots, state=state, counts=counts,
                           labels=SlotStatus.LABELS, replannable=SlotStatus.REPLANNABLE,
                           runs=_backfill_runs(task.report_type), today=today, yesterday=today - timedelta(days=1))


def _backfill_runs(report_type: str, limit: int = 5) -> list[BackfillRun]:
    return list(db.session.execute(
        sa.select(BackfillRun).where(BackfillRun.report_type == report_type)
        .order_by(BackfillRun.id.desc()).limit(limit)
    ).scalars())


@bp.get("/<int:task_id>/backfill/runs")
def backfill_runs(task_id: int):
    """HTMX: the task's recent back-fill runs with their progress (polled while one is running)."""
    task = _task_or_404(task_id)
    return render_template("task_backfill_runs.html", task=task, runs=_backfill_runs(task.report_type))


@bp.post("/<int:task_id>/slots/<int:slot_id>/replan")
@require_role(Role.OPERATOR)
def replan_slot(task_id: int, slot_id: int):
    task = _task_or_404(task_id)
    slot = db.session.get(Slot, slot_id)
    if slot is None or slot.report_type != task.report_type:
        abort(404)
    if slot.status not in SlotStatus.REPLANNABLE:
        flash(f"该时段状态为「{slot.status_label}」，不需要重新计划", "warn")
        return redirect(url_for("tasks.detail", task_id=task_id))
    when = clock.from_db(slot.slot_at).astimezone(ZoneInfo(task.timezone))
    audit.record("task.replan", task.report_type, before={"slot": when.isoformat(), "status": slot.status},
                 commit=True)
    counts = _replan(task, [slot_id])
    slot = db.session.get(Slot, slot_id)
    if counts["errors"]:
        flash(f"重新计划 {when:%Y-%m-%d %H:%M} 失败：{slot.message}", "error")
    else:
        flash(f"已重新计划 {when:%Y-%m-%d %H:%M}：新计划 {counts['uploads']} 条上报，时段状态「{slot.status_label}」",
              "ok")
    return redirect(url_for("tasks.detail", task_id=task_id))


@bp.post("/<int:task_id>/slots/replan")
@require_role(Role.OPERATOR)
def replan_range(task_id: int):
    """重新计划 every re-plannable slot (error, skipped, held back, lost) of a date range, or every held-back
    slot (补报) when ``held_back`` is sent."""
    task = _task_or_404(task_id)
    if request.form.get("held_back"):
        ids = [s.id for s in db.session.execute(
            sa.select(Slot).where(Slot.report_type == task.report_type, Slot.status == SlotStatus.HELD_BACK)
        ).scalars()]
        what = "暂缓的时段"
    else:
        try:
            start, end = _backfill_range(task, request.form)
        except BaosongError as exc:
            flash(str(exc), "error")
            return redirect(url_for("tasks.detail", task_id=task_id))
        ids = scheduler.replannable_slots(task.report_type, start, end)
        what = f"{start:%Y-%m-%d} 至 {end:%Y-%m-%d} 需重新计划的时段"
    if not ids:
        flash(f"没有{what}", "warn")
        return redirect(url_for("tasks.detail", task_id=task_id))
    audit.record("task.replan", task.report_type, after={"slots": len(ids)}, commit=True)
    if len(ids) > REPLAN_INLINE_MAX:
        start_at, end_at = (db.session.get(Slot, ids[0]).slot_at, db.session.get(Slot, ids[-1]).slot_at)
        run = scheduler.start_backfill(task.report_type, clock.from_db(start_at), clock.from_db(end_at),
                                       replan=True, actor=_actor(), enqueue=False)
        _hand_over(run.id)
        flash(f"{what}共 {len(ids)} 个，已在后台重新计划，进度见下方", "ok")
    else:
        counts = _replan(task, ids)
        flash(f"已重新计划{what} {counts['slots']} 个：新计划 {counts['uploads']} 条上报"
              + (f"，{counts['errors']} 个仍出错" if counts["errors"] else ""), "ok" if not counts["errors"] else "warn")
    return redirect(url_for("tasks.detail", task_id=task_id))


REPLAN_INLINE_MAX = 48  # more slots than this are re-planned by a background back-fill run


def _replan(task: Task, slot_ids: list[int]) -> dict[str, int]:
    from core.queue import enqueue_new_uploads

    before = _upload_ids_of(task.report_type)
    counts = scheduler.replan_slots(slot_ids, enqueue=False)
    new_ids = sorted(_upload_ids_of(task.report_type) - before)
    warnings: list[str] = []
    redis_call("上报任务", lambda: enqueue_new_uploads(new_ids), warnings)
    _flash_all(warnings)
    return counts


def _upload_ids_of(report_type: str) -> set[int]:
    from core.models import Upload

    return set(db.session.execute(sa.select(Upload.id).where(Upload.report_type == report_type)).scalars())


def _actor() -> str:
    from flask import g

    user = getattr(g, "user", None)
    return user.username if user is not None else "system"


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
    from core.queue import enqueue_new_uploads

    task = _task_or_404(task_id)
    slot = clock.now().astimezone(ZoneInfo(task.timezone)).replace(second=0, microsecond=0)
    audit.record("task.run_now", task.report_type, after={"slot": slot.isoformat()}, commit=True)
    try:
        ids = scheduler.run_slot(task.report_type, slot, "manual", enqueue=False)
    except Exception as exc:
        flash(f"立即执行失败：{exc}", "error")
        return redirect(safe_back(request.form.get("back"), url_for("tasks.index")))
    warnings: list[str] = []
    redis_call("上报任务", lambda: enqueue_new_uploads(ids), warnings)
    _flash_all(warnings)
    title = report_type_title(task.report_type)
    if ids:
        flash(f"已执行 {title}（{slot:%Y-%m-%d %H:%M}）：计划 {len(ids)} 条上报，正在发送；"
              "结果见「数据查询」", "ok")
    else:
        flash(f"已执行 {title}（{slot:%Y-%m-%d %H:%M}），没有新的上报：这一统计期的数据已上报过（相同的上报不会"
              "重复计划），或医院系统中没有数据。如需发送更正后的数字，请在「数据查询」中打开该上报，使用"
              "「更新重发」；如需补上以前的时段，请在任务详情中使用「补传」或「重新计划」。", "warn")
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
    future = False
    try:
        start, end = _backfill_range(task, request.args)
        count = scheduler.backfill(task.report_type, start, end, dry_run=True)
        future = end > clock.now()
        error = None
    except BaosongError as exc:
        count, error = 0, str(exc)
    return render_template("task_backfill_preview.html", count=count, error=error, task=task, future=future)


@bp.post("/<int:task_id>/backfill")
@require_role(Role.OPERATOR)
def backfill(task_id: int):
    """Start a back-fill run in the background (a worker job; here in a thread if Redis is down); any
    length, its progress shown on the page. Periods that have not ended are not planned."""
    task = _task_or_404(task_id)
    replan = bool(request.form.get("replan"))
    try:
        start, end = _backfill_range(task, request.form)
        count = scheduler.backfill(task.report_type, start, end, dry_run=True)
    except BaosongError as exc:
        flash(str(exc), "error")
        return redirect(url_for("tasks.detail", task_id=task_id))
    if count == 0:
        flash("所选范围内没有已结束的时段", "warn")
        return redirect(url_for("tasks.detail", task_id=task_id))
    run = scheduler.start_backfill(task.report_type, start, end, replan=replan, actor=_actor(), enqueue=False,
                                   total=count)
    audit.record("task.backfill", task.report_type,
                 after={"start": start.isoformat(), "end": end.isoformat(), "slots": count, "replan": replan,
                        "run": run.id}, commit=True)
    _hand_over(run.id)
    flash(f"已开始补传 {count} 个时段（{start:%Y-%m-%d} 至 {end:%Y-%m-%d}）"
          + ("，并重新计划出错、跳过、暂缓、中断的时段" if replan else "") + "，进度见下方", "ok")
    return redirect(url_for("tasks.detail", task_id=task_id))


def _hand_over(run_id: int) -> None:
    """Give a back-fill run to a worker; if Redis is down, run it in a thread of this process."""
    warnings: list[str] = []
    queued = redis_call("补传任务", lambda: scheduler.enqueue_backfill_run(run_id) or True, warnings)
    if queued is None:
        app = current_app._get_current_object()
        threading.Thread(target=_backfill_in_app, args=(app, run_id), daemon=True).start()
        _flash_all(warnings)


def _backfill_in_app(app, run_id: int) -> None:
    with app.app_context():
        try:
            scheduler.run_backfill_chunk(run_id, 0, enqueue=False)  # the sweep enqueues the uploads later
        except Exception:
            current_app.logger.exception("backfill run %s failed", run_id)
