"""Schedules: a Task per scheduled report type (cron, time zone, catch-up policy), due slots recorded
once in the database, and rq-scheduler holding the next firing of each task plus the periodic tick.

The database is the truth: ``reconcile`` repairs what Redis holds from it on every scheduler loop, and
``tick`` works out due slots from the tasks' last recorded slot, so a scheduler that was down runs the
missed slots (or only the latest, plus any the report type must run) when it comes back. A slot is an
obligation with a state (``SlotStatus``): recorded before the watermark moves, and re-plannable when
its planning failed, was skipped, held records back or was interrupted.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from croniter import CroniterBadCronError, croniter
from sqlalchemy.exc import IntegrityError

from core import clock, ledger, settings
from core.config import Config
from core.db import db
from core.errors import ConfigurationError
from core.hook_types import ReportType
from core.models import BackfillRun, HeldBack, ReportQuery, Slot, SlotStatus, Task
from core.plugins import registry

log = logging.getLogger("baosong.scheduler")
MAX_CATCH_UP_SLOTS = 2000  # an 'every slot' catch-up after months of downtime is capped, and says so
TICK_SECONDS = 60
BULK_UPLOADS_PER_SLOT = 10  # a slot planning more uploads than this goes to the bulk queue
PLANNING_TIMEOUT = timedelta(minutes=15)  # a slot still "planning" after this was lost (its runner died)
BACKFILL_CHUNK_SLOTS = 200  # slots one back-fill job plans before handing the rest to the next job
BACKFILL_PROGRESS_EVERY = 25
BACKFILL_STALLED_AFTER = timedelta(minutes=10)


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


def slots_between(expression: str, tz: str, start: datetime, end: datetime, limit: int | None = None) -> list[datetime]:
    """Firings in (start, end], aware in the task's time zone (the first ``limit`` of them)."""
    it = croniter(expression, start.astimezone(ZoneInfo(tz)))
    out: list[datetime] = []
    while limit is None or len(out) < limit:
        moment = it.get_next(datetime)
        if moment > end:
            return out
        out.append(moment)
    return out


def count_slots(expression: str, tz: str, start: datetime, end: datetime) -> int:
    """``len(slots_between(...))`` without walking every firing (2020 to now at 15 minutes is a quarter
    of a million; walked, seconds of a request). A cron's times of day are the same on every day it
    fires, so whole days count as the firings of one such day; the partial first and last day, and a
    day whose clock changes (daylight saving), are walked."""
    zone = ZoneInfo(tz)
    start, end = start.astimezone(zone), end.astimezone(zone)
    first = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), zone)
    last = datetime.combine(end.date(), datetime.min.time(), zone)
    if (last.date() - first.date()).days < 2:
        return len(slots_between(expression, tz, start, end))
    tick = timedelta(microseconds=1)  # slots_between counts (a, b]: a day is (midnight - 1 µs, next - 1 µs]

    def walk(a: datetime, b: datetime) -> int:
        return len(slots_between(expression, tz, a, b))

    _, _, dom, month, dow = validate_cron(expression).split(" ")
    every_day = (dom, month, dow) == ("*", "*", "*")
    day_expression = f"0 0 {dom} {month} {dow}"
    per_day: int | None = None
    total = walk(start, first - tick) + walk(last - tick, end)
    day = first.date()
    while day < last.date():
        midnight = datetime.combine(day, datetime.min.time(), zone)
        following = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
        if midnight.utcoffset() != following.utcoffset():
            total += walk(midnight - tick, following - tick)
        elif every_day or croniter.match(day_expression, datetime.combine(day, datetime.min.time())):
            if per_day is None:
                per_day = walk(midnight - tick, following - tick)
            total += per_day
        day += timedelta(days=1)
    return total


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


def _now() -> datetime:
    return clock.utc_naive(clock.now())


def claim_slot(report_type_name: str, slot_at: datetime, origin: str, *, replan: bool = False) -> Slot | None:
    """Record a slot as being planned, or claim an existing one that may be planned (due; re-plannable when
    ``replan``; one whose planning was lost). None: another runner has it or it is done."""
    now = _now()
    record = Slot(report_type=report_type_name, slot_at=slot_at, origin=origin, status=SlotStatus.PLANNING,
                  claimed_at=now, runs=1)
    db.session.add(record)
    try:
        db.session.commit()
        return record
    except IntegrityError:
        db.session.rollback()
    claimable = [SlotStatus.DUE, *(SlotStatus.REPLANNABLE if replan else ())]
    result = db.session.execute(
        sa.update(Slot)
        .where(Slot.report_type == report_type_name, Slot.slot_at == slot_at,
               sa.or_(Slot.status.in_(claimable),
                      sa.and_(Slot.status == SlotStatus.PLANNING, Slot.claimed_at < now - PLANNING_TIMEOUT)))
        .values(status=SlotStatus.PLANNING, claimed_at=now, runs=Slot.runs + 1)
    )
    db.session.commit()
    if result.rowcount != 1:
        return None
    return db.session.execute(
        sa.select(Slot).filter_by(report_type=report_type_name, slot_at=slot_at)
    ).scalar_one()


def run_slot(report_type_name: str, slot: datetime, origin: str = "cron", *, enqueue: bool = True,
             replan: bool = False, bulk: bool | None = None) -> list[int]:
    """Plan one slot's uploads (once; again when ``replan`` and its state allows); returns new upload ids.

    A slot is an obligation: it is recorded before it is planned and ends planned, held back (some records
    kept out, e.g. an unmapped department), or in error, and the last three can be planned again. A period
    that has not ended (slot time after now) is never planned."""
    reg = registry()
    report_type = reg.report_type(report_type_name)
    if slot > clock.now():
        raise ConfigurationError(f"时段 {slot.astimezone(ZoneInfo(report_type.timezone)):%Y-%m-%d %H:%M} 尚未结束，不能计划")
    record = claim_slot(report_type_name, clock.utc_naive(slot), origin, replan=replan)
    if record is None:
        return []  # another scheduler, or an earlier run, already planned this slot
    slot_id = record.id
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
        ids = ledger.record_plans(report_type, plans, slot_id=slot_id)
    except Exception as exc:
        db.session.rollback()
        record = db.session.get(Slot, slot_id)
        record.status, record.message = SlotStatus.ERROR, f"{type(exc).__name__}: {exc}"[:2000]
        db.session.commit()
        log.exception("planning %s for %s failed", report_type_name, slot)
        raise
    held = sum(len(plan.held_back) for plan in plans)
    record = db.session.get(Slot, slot_id)
    record.uploads_planned = (record.uploads_planned or 0) + len(ids)
    record.status = SlotStatus.HELD_BACK if held else SlotStatus.PLANNED
    record.message = (f"{held} 条记录暂缓上报（原因见数据总览），维护后可补报" if held
                      else (f"第 {record.runs} 次计划" if record.runs > 1 else None))
    db.session.commit()
    if enqueue and ids:
        _enqueue_planned(ids, bulk=len(ids) > BULK_UPLOADS_PER_SLOT if bulk is None else bulk)
    return ids


def _enqueue_planned(ids: list[int], *, bulk: bool) -> None:
    """Enqueue a slot's (or a back-fill's) committed uploads. With Redis away the slot stays planned, not
    failed: its uploads are pending in the ledger, and the sweep enqueues them when Redis answers."""
    from redis.exceptions import RedisError

    from core.queue import enqueue_new_uploads

    try:
        enqueue_new_uploads(ids, bulk=bulk)
    except RedisError as exc:
        log.warning("%s planned uploads not enqueued (%s); the sweep enqueues them", len(ids), exc)


def _choose(task: Task, report_type: ReportType, due: list[datetime]) -> tuple[list[datetime], list[tuple]]:
    """Which due slots to run and which to skip (with the reason), by the task's catch-up policy. A slot the
    report type must run (``ReportType.must_run_slot``) is never skipped."""
    if task.catch_up == "all":
        run, skipped = due[-MAX_CATCH_UP_SLOTS:], [(s, f"超过补跑上限 {MAX_CATCH_UP_SLOTS} 个时段") for s in
                                                   due[:-MAX_CATCH_UP_SLOTS]]
    else:
        run, skipped = due[-1:], [(s, "按补跑策略只运行最新一次") for s in due[:-1]]
    must = report_type.must_run_slot
    if must is not None and skipped:
        tz = ZoneInfo(task.timezone)
        kept = [s for s, _ in skipped if must(s.astimezone(tz))]
        skipped = [(s, why) for s, why in skipped if s not in kept]
        run = sorted(kept + run)
    return run, skipped


def _record_due(task: Task, run: list[datetime], skipped: list[tuple], last: datetime) -> None:
    """Record the due slots (and the skipped ones) and advance the task's watermark in one commit, so a
    crash can lose no slot: a recorded due slot is run by the next tick."""
    wanted = {clock.utc_naive(s): (SlotStatus.DUE, "catch_up", None) for s in run}
    wanted.update({clock.utc_naive(s): (SlotStatus.SKIPPED, "catch_up", why) for s, why in skipped})
    if run:
        wanted[clock.utc_naive(run[-1])] = (SlotStatus.DUE, "cron" if run[-1] == last else "catch_up", None)
    for attempt_no in range(3):
        existing = set(db.session.execute(
            sa.select(Slot.slot_at).where(Slot.report_type == task.report_type,
                                          Slot.slot_at >= min(wanted), Slot.slot_at <= max(wanted))
        ).scalars()) if wanted else set()
        for slot_at, (status, origin, why) in wanted.items():
            if slot_at not in existing:
                db.session.add(Slot(report_type=task.report_type, slot_at=slot_at, status=status, origin=origin,
                                    message=why))
        task.last_slot_at = clock.utc_naive(last)
        try:
            db.session.commit()
            return
        except IntegrityError:  # another tick recorded some of them at the same moment
            db.session.rollback()
            if attempt_no == 2:
                raise


def open_slots(report_type_name: str, limit: int = MAX_CATCH_UP_SLOTS) -> list[Slot]:
    """Slots that must still be planned: due, or planning that was interrupted (lost)."""
    stale = _now() - PLANNING_TIMEOUT
    return list(db.session.execute(
        sa.select(Slot).where(
            Slot.report_type == report_type_name,
            sa.or_(Slot.status == SlotStatus.DUE,
                   sa.and_(Slot.status == SlotStatus.PLANNING, Slot.claimed_at < stale)))
        .order_by(Slot.slot_at).limit(limit)
    ).scalars())


def tick(now: datetime | None = None, *, report_type: str | None = None) -> dict[str, int]:
    """Record every due slot of every enabled task according to its catch-up policy, then plan every slot
    still open (this tick's and any an interrupted tick left)."""
    now = now or clock.now()
    planned: dict[str, int] = {}
    query = sa.select(Task).where(Task.enabled.is_(True))
    if report_type:
        query = query.where(Task.report_type == report_type)
    known = registry().report_types
    for task in db.session.execute(query).scalars().all():
        if task.report_type not in known:
            continue
        since = clock.from_db(task.last_slot_at) or now
        due = slots_between(task.cron, task.timezone, since, now)
        if due:
            run, skipped = _choose(task, known[task.report_type], due)
            _record_due(task, run, skipped, due[-1])
        count = 0
        tz = ZoneInfo(task.timezone)
        # Plain values: the rows change under us (another runner may claim any of them meanwhile).
        for slot_id, slot_at, origin, status in [(r.id, r.slot_at, r.origin, r.status)
                                                 for r in open_slots(task.report_type)]:
            slot = clock.from_db(slot_at)
            if slot > now:
                continue
            if status == SlotStatus.PLANNING:  # its runner died: due again (unless just claimed anew)
                db.session.execute(
                    sa.update(Slot).where(Slot.id == slot_id, Slot.status == SlotStatus.PLANNING,
                                          Slot.claimed_at < _now() - PLANNING_TIMEOUT)
                    .values(status=SlotStatus.DUE, message="上次执行中断，重新计划"))
                db.session.commit()
            try:
                count += len(run_slot(task.report_type, slot, origin))
                task.last_result = f"{slot.astimezone(tz):%Y-%m-%d %H:%M} 计划 {count} 条上报"
            except Exception as exc:
                db.session.rollback()
                task = db.session.get(Task, task.id)
                task.last_result = f"{slot.astimezone(tz):%Y-%m-%d %H:%M} 计划失败：{exc}"[:2000]
            db.session.commit()
        planned[task.report_type] = count
    return planned


def _cron_of(report_type_name: str) -> tuple[str, str]:
    task = db.session.execute(sa.select(Task).filter_by(report_type=report_type_name)).scalar_one_or_none()
    report_type = registry().report_type(report_type_name)
    cron = task.cron if task else report_type.cron
    if not cron:
        raise ConfigurationError(f"{report_type.title} 不是定时报表，不能补传")
    return cron, task.timezone if task else report_type.timezone


def backfill_slots(report_type_name: str, start: datetime, end: datetime, limit: int | None = None) -> list[datetime]:
    """Slots of the report type's schedule in [start, end], never after now (a period not ended yet)."""
    cron, tz = _cron_of(report_type_name)
    end = min(end, clock.now())
    if end < start:
        return []
    return slots_between(cron, tz, start - timedelta(seconds=1), end, limit)


def count_backfill_slots(report_type_name: str, start: datetime, end: datetime) -> int:
    """How many slots ``backfill_slots`` would give, counted without listing them."""
    cron, tz = _cron_of(report_type_name)
    end = min(end, clock.now())
    if end < start:
        return 0
    return count_slots(cron, tz, start - timedelta(seconds=1), end)


def backfill(report_type_name: str, start: datetime, end: datetime, *, dry_run: bool = False,
             enqueue: bool = True, replan: bool = False, progress=None) -> int:
    """Run a report type for every slot of its cron in [start, end] (aware datetimes) that has ended.
    Slots already planned are left alone; with ``replan``, slots in error, skipped, held back or lost are
    planned again. Returns the slot count (``dry_run``) or the number of uploads planned. A slot whose
    planning fails is recorded in error and the back-fill goes on. ``progress(done, uploads, errors)``
    is called every few slots."""
    if dry_run:
        return count_backfill_slots(report_type_name, start, end)
    slots = backfill_slots(report_type_name, start, end)
    uploads = errors = 0
    batch = _BackfillBatch(enqueue)
    for index, slot in enumerate(slots, 1):
        try:
            uploads += batch.add(run_slot(report_type_name, slot, "backfill", enqueue=False, replan=replan, bulk=True))
        except Exception:
            db.session.rollback()
            errors += 1
        if progress is not None and (index % BACKFILL_PROGRESS_EVERY == 0 or index == len(slots)):
            progress(index, uploads, errors)
    batch.flush()
    return uploads


class _BackfillBatch:
    """A back-fill's uploads, enqueued as batches across slots (a slot usually plans one upload) as soon
    as a batch is full."""

    def __init__(self, enqueue: bool) -> None:
        self.enqueue, self.ids = enqueue, []

    def add(self, ids: list[int]) -> int:
        from core.queue import BATCH_UPLOADS

        self.ids += ids
        if len(self.ids) >= BATCH_UPLOADS:
            self.flush()
        return len(ids)

    def flush(self) -> None:
        ids, self.ids = self.ids, []
        if self.enqueue and ids:
            _enqueue_planned(ids, bulk=True)


def replan_slots(slot_ids: list[int], *, enqueue: bool = True) -> dict[str, int]:
    """Plan again the given slots that are in error, skipped, held back or lost (others are left alone)."""
    counts = {"slots": 0, "uploads": 0, "errors": 0}
    rows = db.session.execute(sa.select(Slot).where(Slot.id.in_(slot_ids)).order_by(Slot.slot_at)).scalars().all()
    for row in [(r.report_type, clock.from_db(r.slot_at), r.origin, r.status) for r in rows]:
        name, slot, origin, status = row
        if status not in SlotStatus.REPLANNABLE or name not in registry().report_types:
            continue
        counts["slots"] += 1
        try:
            counts["uploads"] += len(run_slot(name, slot, origin, enqueue=enqueue, replan=True))
        except Exception:
            db.session.rollback()
            counts["errors"] += 1
    return counts


def replannable_slots(report_type_name: str, start: datetime | None = None, end: datetime | None = None,
                      limit: int = 100_000) -> list[int]:
    query = sa.select(Slot.id).where(Slot.report_type == report_type_name,
                                     Slot.status.in_(SlotStatus.REPLANNABLE))
    if start is not None:
        query = query.where(Slot.slot_at >= clock.utc_naive(start))
    if end is not None:
        query = query.where(Slot.slot_at <= clock.utc_naive(end))
    return list(db.session.execute(query.order_by(Slot.slot_at).limit(limit)).scalars())


def replan_held_back(report_type_name: str, department: str | None = None, *, enqueue: bool = True) -> dict:
    """Plan again the slots of a report type that held records back (only those that held ``department``
    back, when given), e.g. once the department is mapped: the held records are sent and, once planned,
    their held-back entries are resolved (the dashboard warning clears)."""
    query = (sa.select(HeldBack.slot_id).distinct()
             .join(Slot, Slot.id == HeldBack.slot_id)
             .where(HeldBack.report_type == report_type_name, HeldBack.resolved.is_(False),
                    Slot.status == SlotStatus.HELD_BACK))
    if department is not None:
        query = query.where(HeldBack.record_key == department)
    slot_ids = list(db.session.execute(query).scalars())
    return replan_slots(slot_ids, enqueue=enqueue)


def request_held_back_replan(report_type_name: str, department: str | None = None) -> None:
    """Re-plan held-back slots in the background (a worker job), or here if Redis cannot take the job."""
    from core.queue import enqueue_call

    try:  # the main queue: ahead of back-fills, behind the scheduler's own short jobs
        enqueue_call("core.scheduler.replan_held_back_job", report_type_name, department)
    except Exception as exc:  # Redis down: do it now, it only plans (uploads are swept in later)
        log.warning("replan of held-back %s inline (%s)", report_type_name, exc)
        replan_held_back(report_type_name, department, enqueue=False)


def replan_held_back_job(report_type_name: str, department: str | None = None) -> dict:
    from core.app import process_app

    with process_app().app_context():
        return replan_held_back(report_type_name, department)


# --- back-fill runs: long ranges in the background, with progress ------------------------------------

def start_backfill(report_type_name: str, start: datetime, end: datetime, *, replan: bool = False,
                   actor: str | None = None, enqueue: bool = True, total: int | None = None) -> BackfillRun:
    """Record a back-fill run and hand it to a worker; the admin shows its progress (``BackfillRun``).
    ``total``: the slot count if the caller has it already (counting years of slots takes seconds)."""
    end = min(end, clock.now())
    if total is None:
        total = count_backfill_slots(report_type_name, start, end)
    run = BackfillRun(report_type=report_type_name, start_at=clock.utc_naive(start), end_at=clock.utc_naive(end),
                      replan=replan, total=total, created_by=actor, status="queued")
    db.session.add(run)
    db.session.commit()
    if enqueue:
        enqueue_backfill_run(run.id)
    return run


def enqueue_backfill_run(run_id: int) -> None:
    from core.queue import enqueue_call

    enqueue_call("core.scheduler.backfill_run_job", run_id, bulk=True, job_timeout=6 * 3600)


def backfill_run_job(run_id: int, chunk: int | None = None) -> dict:
    """RQ job entry: run the next chunk of a back-fill, then hand the rest to a new job, so a worker goes
    back to the hourly work between chunks and a lost job is resumed by the sweep from the recorded count."""
    from core.app import process_app

    with process_app().app_context():
        return run_backfill_chunk(run_id, chunk or BACKFILL_CHUNK_SLOTS)


def run_backfill_chunk(run_id: int, chunk: int = 0, *, enqueue: bool = True) -> dict:
    """Plan up to ``chunk`` slots of a back-fill run from where it stopped (all of them when 0)."""
    run = db.session.get(BackfillRun, run_id)
    if run is None or run.status in ("done", "failed"):
        return {}
    run.status = "running"
    db.session.commit()
    # From the last slot done (``cursor_at``): each chunk works out only its own slots.
    cursor = clock.from_db(run.cursor_at) if run.cursor_at else clock.from_db(run.start_at) - timedelta(seconds=1)
    cron, tz = _cron_of(run.report_type)
    todo = slots_between(cron, tz, cursor, clock.from_db(run.end_at), chunk or None)
    finished = not todo or (chunk and len(todo) < chunk)
    done, uploads, errors = run.done, run.uploads, run.errors
    report_type, replan = run.report_type, run.replan

    def save(status: str | None = None, message: str | None = None, last: datetime | None = None) -> BackfillRun:
        current = db.session.get(BackfillRun, run_id)
        current.done, current.uploads, current.errors = done, uploads, errors
        current.total = max(current.total, done)
        if last is not None:
            current.cursor_at = clock.utc_naive(last)
        if status:
            current.status, current.message, current.finished_at = status, message, _now()
        db.session.commit()
        return current

    batch = _BackfillBatch(enqueue)
    try:
        for index, slot in enumerate(todo, 1):
            try:
                uploads += batch.add(run_slot(report_type, slot, "backfill", enqueue=False, replan=replan, bulk=True))
            except Exception:
                db.session.rollback()
                errors += 1
            done += 1
            if index % BACKFILL_PROGRESS_EVERY == 0:
                save(last=slot)
        batch.flush()
        last = todo[-1] if todo else None
        if finished or (chunk == 0):
            run = save("done", f"共 {done} 个时段，计划 {uploads} 条上报"
                       + (f"，{errors} 个时段出错（可重新计划）" if errors else ""), last=last)
        else:
            run = save(last=last)
    except Exception as exc:
        db.session.rollback()
        run = save("failed", f"{type(exc).__name__}: {exc}"[:2000])
        raise
    if run.status == "running" and enqueue:
        enqueue_backfill_run(run_id)
    return {"done": run.done, "total": run.total, "uploads": run.uploads}


def resume_stalled_backfills(now: datetime | None = None) -> int:
    """Back-fill runs whose job was lost (a worker killed, Redis restarted) are handed to a worker again."""
    cutoff = clock.utc_naive(now or clock.now()) - BACKFILL_STALLED_AFTER
    stalled = db.session.execute(
        sa.select(BackfillRun.id).where(BackfillRun.status.in_(("queued", "running")),
                                        BackfillRun.updated_at < cutoff)
    ).scalars().all()
    for run_id in stalled:
        run = db.session.get(BackfillRun, run_id)
        run.updated_at = _now()  # touched, so it is not resumed again before the new job had its chance
        db.session.commit()
        enqueue_backfill_run(run_id)
    return len(stalled)


# --- rq-scheduler: what Redis holds -------------------------------------------------------------

PERIODIC_JOBS = {"baosong-tick": "core.scheduler.tick_job", "baosong-sweep": "core.scheduler.sweep_job"}


def sync_redis(scheduler=None) -> list[str]:
    """Rebuild rq-scheduler's jobs from the database (at leadership start and after a Redis restart)."""
    return reconcile(scheduler, rebuild=True)


def reconcile(scheduler=None, *, rebuild: bool = False) -> list[str]:
    """Make rq-scheduler hold what the database says, repairing only what is missing: the periodic tick and
    sweep, and each enabled task's next firing (none for a paused one). The leader calls this on every
    loop, so a job dropped by Redis (expired, flushed, restarted empty) is back within one loop. Returns the
    ids it (re)created."""
    from rq.job import Job

    from core.queue import control_queue, live_job_ids

    scheduler = scheduler or _rq_scheduler()
    conn = scheduler.connection
    if rebuild:
        for job_id in list(_our_scheduled_ids(scheduler)):
            scheduler.cancel(job_id)
    live: set[str] | None = None

    def present(job_id: str, *, one_shot: bool = False) -> bool:
        nonlocal live
        if not conn.exists(Job.key_for(job_id)):
            return False
        if conn.zscore(scheduler.scheduled_jobs_key, job_id) is not None:
            return True
        if one_shot:  # a firing already moved to the queue: it schedules the next when it runs
            if live is None:
                live = live_job_ids()
            return job_id in live
        return False

    repaired: list[str] = []
    for job_id, func in PERIODIC_JOBS.items():
        if not present(job_id):
            scheduler.cancel(job_id)
            scheduler.schedule(scheduled_time=datetime.now(UTC).replace(tzinfo=None), func=func, interval=TICK_SECONDS, repeat=None,
                               id=job_id, queue_name=control_queue().name, timeout=3600)  # result_ttl: -1
            repaired.append(job_id)
    for task in db.session.execute(sa.select(Task)).scalars():
        job_id = task_job_id(task.report_type)
        if task.enabled and task.report_type in registry().report_types:
            if not present(job_id, one_shot=True):
                schedule_next_firing(task, scheduler)
                repaired.append(job_id)
        elif conn.zscore(scheduler.scheduled_jobs_key, job_id) is not None:
            scheduler.cancel(job_id)
    return repaired


def _our_scheduled_ids(scheduler) -> list[str]:
    ids = scheduler.connection.zrange(scheduler.scheduled_jobs_key, 0, -1)
    return [i.decode() if isinstance(i, bytes) else i for i in ids
            if (i.decode() if isinstance(i, bytes) else i).startswith("baosong-")]


def _rq_scheduler(connection=None, interval: float = 5.0):
    from rq_scheduler import Scheduler

    from core.queue import connection as default_connection
    from core.queue import control_queue

    return Scheduler(queue=control_queue(), connection=connection or default_connection(), interval=interval)


def task_job_id(report_type: str) -> str:
    # RQ job ids allow letters, digits, '_' and '-' only.
    return "baosong-task-" + report_type.replace(".", "__")


def schedule_next_firing(task: Task, scheduler=None) -> datetime:
    from core.queue import control_queue

    scheduler = scheduler or _rq_scheduler()
    job_id = task_job_id(task.report_type)
    if job_id in scheduler:
        scheduler.cancel(job_id)
    nxt = next_runs(task.cron, task.timezone, datetime.now(UTC), 1)[0]
    scheduler.enqueue_at(clock.utc_naive(nxt), "core.scheduler.fire_task_job", task.report_type, job_id=job_id,
                         queue_name=control_queue().name, job_result_ttl=-1)
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
        from core.operations import periodic  # alerts (core.alerts.evaluate) and the daily prune

        # Housekeeping after the sweep: each step on its own, so a busy database (SQLite "database is
        # locked" while a back-fill writes) delays the planner statistics without failing the sweep
        # or keeping the alerts from being evaluated.
        for step in (aggregates.optimize_planner_hourly, periodic):
            try:
                step()
            except Exception:
                db.session.rollback()
                log.warning("after the sweep, %s failed; it runs again next minute", step.__name__,
                            exc_info=True)
        return result


def run_now(report_type_name: str) -> list[int]:
    """A manual run: a slot at the current minute (plugins derive their period from it)."""
    report_type = registry().report_type(report_type_name)
    slot = clock.now().astimezone(ZoneInfo(report_type.timezone)).replace(second=0, microsecond=0)
    return run_slot(report_type_name, slot, "manual")
