"""数据看板: today's progress per report type (expected slots from the task's cron in its time zone vs slots
run; uploads succeeded / failed / waiting for retry; next run), failure alerts first, held-back rows and
unmapped departments as warnings. The panel refreshes itself by HTMX polling."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, url_for

from core import clock, scheduler, settings
from core.aggregates import StatCounter, status_metric
from core.db import db
from core.masking import mask_text
from core.models import HeldBack, Slot, Task, Upload, UploadStatus
from core.plugins import registry
from web import audit
from web.auth import require_role
from web.helpers import redis_ok, regulator_of, regulator_statuses, report_type_title, shown_text
from web.models import Role
from web.upload_query import FAILURE_STATUSES

bp = Blueprint("dashboard", __name__)
REFRESH_SECONDS = 15
DEPARTMENT_HINTS = ("科室", "department", "dept")


@dataclass
class TypeProgress:
    name: str
    title: str
    cron: str | None
    enabled: bool
    expected: int = 0
    due: int = 0
    done: int = 0
    next_run: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)
    last_result: str | None = None
    task_id: int | None = None

    @property
    def failed(self) -> int:
        return self.counts.get(UploadStatus.FAILED, 0) + self.counts.get(UploadStatus.REJECTED, 0)

    @property
    def waiting(self) -> int:
        return self.counts.get(UploadStatus.RETRY_WAIT, 0)

    @property
    def succeeded(self) -> int:
        return self.counts.get(UploadStatus.SUCCEEDED, 0)

    @property
    def in_progress(self) -> int:
        return self.counts.get(UploadStatus.PENDING, 0) + self.counts.get(UploadStatus.SENDING, 0)

    @property
    def percent(self) -> int:
        return int(self.done * 100 / self.expected) if self.expected else 0


def _day_bounds(tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    day = now.astimezone(tz).date()
    start = datetime.combine(day, time(), tz)
    return start, start + timedelta(days=1)


def progress(now: datetime | None = None) -> list[TypeProgress]:
    now = now or clock.now()
    tasks = {t.report_type: t for t in db.session.execute(sa.select(Task)).scalars()}
    default_tz = clock.default_timezone()
    local_start, local_end = _day_bounds(default_tz, now)
    # Upload counts today (the hospital's day) per report type and status: one grouped query.
    counts: dict[str, dict[str, int]] = {}
    rows = db.session.execute(
        sa.select(Upload.report_type, Upload.status, sa.func.count())
        .where(Upload.created_at >= clock.utc_naive(local_start), Upload.created_at < clock.utc_naive(local_end))
        .group_by(Upload.report_type, Upload.status)
    ).all()
    for report_type, status, n in rows:
        counts.setdefault(report_type, {})[status] = n
    out: list[TypeProgress] = []
    names = sorted(set(registry().report_types) | set(tasks))
    for name in names:
        task = tasks.get(name)
        declared = registry().report_types.get(name)
        item = TypeProgress(name=name, title=report_type_title(name),
                            cron=task.cron if task else (declared.cron if declared else None),
                            enabled=task.enabled if task else True, counts=counts.get(name, {}),
                            last_result=task.last_result if task else None, task_id=task.id if task else None)
        if task is not None:
            tz = ZoneInfo(task.timezone)
            start, end = _day_bounds(tz, now)
            expected = scheduler.slots_between(task.cron, task.timezone, start - timedelta(seconds=1),
                                               end - timedelta(seconds=1))
            item.expected = len(expected)
            item.due = sum(1 for s in expected if s <= now)
            expected_utc = {clock.utc_naive(s) for s in expected}
            run = db.session.execute(
                sa.select(Slot.slot_at).where(
                    Slot.report_type == name, Slot.status == "planned",
                    Slot.slot_at >= clock.utc_naive(start), Slot.slot_at < clock.utc_naive(end))
            ).scalars()
            item.done = len({s for s in run} & expected_utc)
            if task.enabled:
                item.next_run = scheduler.next_runs(task.cron, task.timezone, now, 1)[0]
        out.append(item)
    return out


@dataclass
class FailureAlert:
    report_type: str
    title: str
    count: int
    since: date
    code: str | None
    message: str
    explanation: str | None
    latest_id: int


def failure_alerts() -> list[FailureAlert]:
    """Outstanding failures per report type, from the aggregates (one row per type × day, not a scan of
    every failure ever); the latest one's message by the (report_type, status, created_at) index."""
    metrics = [status_metric(s) for s in FAILURE_STATUSES]
    groups = db.session.execute(
        sa.select(StatCounter.report_type, sa.func.sum(StatCounter.value),
                  sa.func.min(sa.case((StatCounter.value > 0, StatCounter.day))))
        .where(StatCounter.metric.in_(metrics))
        .group_by(StatCounter.report_type)
        .having(sa.func.sum(StatCounter.value) > 0)
        .order_by(sa.func.sum(StatCounter.value).desc())
    ).all()
    alerts = []
    for report_type, count, since in groups:
        latest = _latest_failure(report_type)
        if latest is None:  # counted but gone (aggregates awaiting a rebuild): nothing to show
            continue
        regulator = registry().regulators.get(regulator_of(report_type))
        code = latest.last_code
        explanation = regulator.codes.get(code) if regulator and code else None
        alerts.append(FailureAlert(report_type, report_type_title(report_type), int(count), since, code,
                                   shown_text(latest.last_message or ""), explanation, latest.id))
    return alerts


def _latest_failure(report_type: str):
    """One index seek per failure status, newest first."""
    parts = [sa.select(Upload.id, Upload.created_at, Upload.last_code, Upload.last_message)
             .where(Upload.report_type == report_type, Upload.status == status)
             .order_by(Upload.created_at.desc()).limit(1).subquery() for status in FAILURE_STATUSES]
    union = sa.union_all(*(sa.select(part) for part in parts)).subquery()
    return db.session.execute(sa.select(union).order_by(union.c.created_at.desc()).limit(1)).first()


def slot_errors(now: datetime) -> list[Slot]:
    since = clock.utc_naive(now - timedelta(hours=24))
    return list(db.session.execute(
        sa.select(Slot).where(Slot.status == "error", Slot.created_at >= since).order_by(Slot.id.desc()).limit(10)
    ).scalars())


@dataclass
class HeldBackGroup:
    report_type: str
    title: str
    field: str | None
    reason: str
    count: int
    latest_period: str
    department: bool
    key: str


def group_key(report_type: str, field_name: str | None, reason: str) -> str:
    """Identifies a group in a form without putting its (possibly identifying) reason in the page."""
    return hashlib.sha256(f"{report_type}\x1f{field_name or ''}\x1f{reason}".encode()).hexdigest()[:32]


def held_back_groups(limit: int = 30) -> list[HeldBackGroup]:
    rows = db.session.execute(
        sa.select(HeldBack.report_type, HeldBack.field, HeldBack.reason, sa.func.count(),
                  sa.func.max(HeldBack.period))
        .where(HeldBack.resolved.is_(False))
        .group_by(HeldBack.report_type, HeldBack.field, HeldBack.reason)
        .order_by(sa.func.count().desc())
        .limit(limit)
    ).all()
    out = []
    for report_type, field_name, reason, count, period in rows:
        text = f"{field_name or ''} {reason}".lower()
        out.append(HeldBackGroup(report_type, report_type_title(report_type), field_name, shown_text(reason), count,
                                 period or "", any(h in text for h in DEPARTMENT_HINTS),
                                 group_key(report_type, field_name, reason)))
    return out


def _context() -> dict:
    now = clock.now()
    items = progress(now)
    scheduled = [i for i in items if i.cron]
    active_events = [i for i in items if not i.cron and i.counts]
    idle_events = [i for i in items if not i.cron and not i.counts]
    blocked = regulator_statuses([i.name for i in items])
    closed = list({v["regulator"]: v for v in blocked.values()}.values())
    return dict(
        blocked=blocked, closed_regulators=closed,
        now=now, items=scheduled + active_events, idle_events=idle_events, alerts=failure_alerts(), slot_errors=slot_errors(now),
        held_back=held_back_groups(), auto_stopped=settings.flag("auto_retry_stopped") == "1",
        redis_up=redis_ok(), refresh=REFRESH_SECONDS, title_of=report_type_title,
    )


@bp.get("/")
def index():
    return render_template("dashboard.html", **_context())


@bp.get("/dashboard/panel")
def panel():
    return render_template("dashboard_panel.html", **_context())


@bp.post("/dashboard/held-back/resolve")
@require_role(Role.OPERATOR)
def resolve_held_back():
    """Mark a group of held-back rows as dealt with (e.g. after mapping the department)."""
    report_type = request.form.get("report_type", "")
    key = request.form.get("key", "")
    groups = db.session.execute(
        sa.select(HeldBack.field, HeldBack.reason).where(HeldBack.report_type == report_type,
                                                         HeldBack.resolved.is_(False)).distinct()
    ).all()
    match = next(((f, r) for f, r in groups if group_key(report_type, f, r) == key), None)
    if match is None:
        flash("该组暂缓记录已处理或不存在", "warn")
        return redirect(url_for("dashboard.index"))
    field_name, reason = match
    condition = [HeldBack.report_type == report_type, HeldBack.reason == reason, HeldBack.resolved.is_(False),
                 HeldBack.field.is_(None) if field_name is None else HeldBack.field == field_name]
    result = db.session.execute(sa.update(HeldBack).where(*condition).values(resolved=True))
    audit.record("heldback.resolve", report_type, after={"field": field_name, "reason": (mask_text(reason) or "")[:200],
                                                         "rows": result.rowcount})
    db.session.commit()
    flash(f"已标记 {result.rowcount} 条暂缓记录为已处理", "ok")
    return redirect(url_for("dashboard.index"))
