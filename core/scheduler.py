"""Schedules: a Task per scheduled report type (cron, time zone, catch-up policy), due slots recorded
once in the database, and rq-scheduler holding the next firing of each task plus the periodic tick.

The database is the truth: ``sync_redis`` rebuilds what Redis holds from it at start and on every
change, and ``tick`` works out due slots from the tasks' last recorded slot, so a scheduler that was
down runs the missed slots (or only the latest) when it comes back.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from croniter import CroniterBadCronError, croniter
from sqlalchemy.exc import IntegrityError

from core import clock, ledger, settings
from core.config import Config
from core.db import db
from core.errors import ConfigurationError
from core.models import ReportQuery, Slot, Task
from core.plugins import registry

log = logging.getLogger("baosong.scheduler")
MAX_CATCH_UP_SLOTS = 2000  # an 'every slot' catch-up after months of downtime is capped, and says so
TICK_SECONDS = 60
BULK_UPLOADS_PER_SLOT = 10  # a slot planning more uploads than this goes to the bulk queue


def validate_cron(expression: str) -> str:
    """Return the normalised expression or raise naming what is wrong."""
    expression = " ".join((expression or "").split())
    fields = expression.split(" ")
    if len(fields) != 5:
        raise ConfigurationError(
            f"cron 表达式「{expression}」应有 5 个字段（分 时 日 月 周），实际 {len(fields) if expression else 0} 个"
        )
    try:
        croniter(expression)
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ConfigurationError(f"cron 表达式「{expression}」无效：{exc}") from None
    return expression


def validate_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"未知的时区 {name}") from None


def next_runs(expression: str, tz: str, after: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` firings after ``after`` (aware), in the task's time zone."""
    it = croniter(validate_cron(expression), after.astimezone(validate_timezone(tz)))
    return [it.get_next(datetime) for _ in range(count)]


def slots_between(expression: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """Firings in (start, end], aware in the task's time zone."""
    it = croniter(expression, start.astimezone(ZoneInfo(tz)))
    out: list[datetime] = []
    while True:
        moment = it.get_next(datetime)
        if moment > end:
            return out
        out.append(moment)


def ensure_tasks() -> None:
    """A Task for every scheduled report type, with the plugin's default cron (kept if edited)."""
    now = clock.utc_naive(clock.now())
    existing = {t.report_type for t in db.session.execute(sa.select(Task)).scalars()}
    for report_type in registry().report_types.values():
        if report_type.cron and report_type.name not in existing:
            db.session.add(Task(report_type=report_type.name, cron=report_type.cron,
                                timezone=report_type.timezone, catch_up=report_type.catch_up,
                                last_slot_at=now))
    db.session.commit()


def hospital_data():
    """The hospital source plugins read, wrapped so rows come out through each report type's active
    field mapping (core.mapping; columns without a rule pass through unchanged)."""
    from core.hisdb import HospitalData
    from core.mapping import MappedHospitalData

    overrides = {f"{q.report_type}:{q.name}": q.sql for q in db.session.execute(sa.select(ReportQuery)).scalars()}
    return MappedHospitalData(HospitalData(Config.from_env().his_database_url, overrides))


def run_slot(report_type_name: str, slot: datetime, origin: str = "cron", *, enqueue: bool = True) -> list[int]:
    """Record the slot (once) and plan its uploads; returns the new upload ids."""
    reg = registry()
    report_type = reg.report_type(report_type_name)
    record = Slot(report_type=report_type_name, slot_at=clock.utc_naive(slot), origin=origin)
    db.session.add(record)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return []  # another scheduler, or an earlier run, already planned this slot
    try:
        source = hospital_data()
        plans = reg.hook(report_type_name, "schedule")(
            report_type=report_type, slot=slot.astimezone(ZoneInfo(report_type.timezone)),
            source=source, settings=settings.regulator_settings(report_type.regulator),
        ) or []
        # Each upload records the field-mapping version its rows went through (None: no mapping saved).
        version = source.version_for(report_type_name) if hasattr(source, "version_for") else None
        for plan in plans:
            if plan.mapping_version is None:
                plan.mapping_version = version
        ids = ledger.record_plans(report_type, plans)
    except Exception as exc:
        db.session.rollback()
        record = db.session.get(Slot, record.id)
        record.status, record.message = "error", f"{type(exc).__name__}: {exc}"
        db.session.commit()
        log.exception("planning %s for %s failed", report_type_name, slot)
        raise
    record = db.session.get(Slot, record.id)
    record.uploads_planned = len(ids)
    db.session.commit()
    if enqueue:
        from core.queue import enqueue_upload

        bulk = len(ids) > BULK_UPLOADS_PER_SLOT
        for upload_id in ids:
            enqueue_upload(upload_id, 0, bulk=bulk)
    return ids


def tick(now: datetime | None = None, *, report_type: str | None = None) -> dict[str, int]:
    """Plan every due slot of every enabled task according to its catch-up policy."""
    now = now or clock.now()
    planned: dict[str, int] = {}
    query = sa.select(Task).where(Task.enabled.is_(True))
    if report_type:
        query = query.where(Task.report_type == report_type)
    for task in db.session.execute(query).scalars().all():
        if task.report_type not in registry().report_types:
            continue
        since = clock.from_db(task.last_slot_at) or now
        due = slots_between(task.cron, task.timezone, since, now)
        if not due:
            continue
        run, skipped = (due[-MAX_CATCH_UP_SLOTS:], due[:-MAX_CATCH_UP_SLOTS]) if task.catch_up == "all" \
            else (due[-1:], due[:-1])
        for slot in skipped:
            db.session.add(Slot(report_type=task.report_type, slot_at=clock.utc_naive(slot), status="skipped",
                                origin="catch_up", message="按补跑策略只运行最新一次"))
        task.last_slot_at = clock.utc_naive(due[-1])
        db.session.commit()
        count = 0
        for slot in run:
            origin = "cron" if slot == due[-1] else "catch_up"
            try:
                count += len(run_slot(task.report_type, slot, origin))
                task.last_result = f"{slot:%Y-%m-%d %H:%M} 计划 {count} 条上报"
            except Exception as exc:
                task.last_result = f"{slot:%Y-%m-%d %H:%M} 计划失败：{exc}"
            db.session.commit()
        planned[task.report_type] = count
    return planned


def backfill(report_type_name: str, start: datetime, end: datetime, *, dry_run: bool = False,
             enqueue: bool = True) -> int:
    """Run a report type for every slot of its cron in [start, end] (aware datetimes)."""
    task = db.session.execute(sa.select(Task).filter_by(report_type=report_type_name)).scalar_one_or_none()
    report_type = registry().report_type(report_type_name)
    cron = task.cron if task else report_type.cron
    if not cron:
        raise ConfigurationError(f"{report_type.title} 不是定时报表，不能补传")
    slots = slots_between(cron, task.timezone if task else report_type.timezone, start - timedelta(seconds=1), end)
    if dry_run:
        return len(slots)
    return sum(len(run_slot(report_type_name, slot, "backfill", enqueue=enqueue)) for slot in slots)


# --- rq-scheduler: what Redis holds -------------------------------------------------------------

def sync_redis(scheduler=None) -> None:
    """Rebuild rq-scheduler's jobs from the database: the periodic tick and sweep, and each enabled
    task's next firing (so the admin and Redis agree on 'next run')."""
    scheduler = scheduler or _rq_scheduler()
    for job in scheduler.get_jobs():
        if job.id.startswith("baosong-"):
            scheduler.cancel(job)
    now = clock.now()
    scheduler.schedule(scheduled_time=now.replace(tzinfo=None), func="core.scheduler.tick_job",
                       interval=TICK_SECONDS, repeat=None, id="baosong-tick", result_ttl=120)
    scheduler.schedule(scheduled_time=now.replace(tzinfo=None), func="core.scheduler.sweep_job",
                       interval=TICK_SECONDS, repeat=None, id="baosong-sweep", result_ttl=120)
    for task in db.session.execute(sa.select(Task).where(Task.enabled.is_(True))).scalars():
        schedule_next_firing(task, scheduler)


def _rq_scheduler():
    from rq_scheduler import Scheduler

    from core.queue import connection, queue

    return Scheduler(queue=queue(), connection=connection())


def task_job_id(report_type: str) -> str:
    # RQ job ids allow letters, digits, '_' and '-' only.
    return "baosong-task-" + report_type.replace(".", "__")


def schedule_next_firing(task: Task, scheduler=None) -> datetime:
    scheduler = scheduler or _rq_scheduler()
    job_id = task_job_id(task.report_type)
    if job_id in scheduler:
        scheduler.cancel(job_id)
    nxt = next_runs(task.cron, task.timezone, clock.now(), 1)[0]
    scheduler.enqueue_at(clock.utc_naive(nxt), "core.scheduler.fire_task_job", task.report_type, job_id=job_id)
    return nxt


def tick_job() -> dict:
    from core.app import process_app
    from core.health import record_tick

    with process_app().app_context():
        record_tick()
        return tick()


def fire_task_job(report_type: str) -> dict:
    from core.app import process_app

    with process_app().app_context():
        result = tick(report_type=report_type)
        task = db.session.execute(sa.select(Task).filter_by(report_type=report_type)).scalar_one_or_none()
        if task is not None and task.enabled:
            schedule_next_firing(task)
        return result


def sweep_job() -> dict:
    from core.app import process_app
    from core.pipeline import sweep

    with process_app().app_context():
        result = sweep()
        from core import aggregates

        aggregates.optimize_planner_hourly()
        from core.operations import periodic  # alerts (core.alerts.evaluate) and the daily prune

        periodic()
        return result


def run_now(report_type_name: str) -> list[int]:
    """A manual run: a slot at the current minute (plugins derive their period from it)."""
    report_type = registry().report_type(report_type_name)
    slot = clock.now().astimezone(ZoneInfo(report_type.timezone)).replace(second=0, microsecond=0)
    return run_slot(report_type_name, slot, "manual")
