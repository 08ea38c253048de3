"""Three months of upload history for the demo, so statistics, trends and the dashboard look like a
running hospital within a minute of ``make demo``.

The rows are real: each scheduled report type's own ``schedule`` hook plans them from the demo hospital
database (one slot a day — the slot that carries the day's final figures — and every monthly slot), exactly
as the scheduler would. What is simulated is only the answer: the uploads are written to the ledger as if
they had been sent (most succeeded at once, some after automatic retries, a few failed or were rejected),
with attempts that say plainly they are demo history. Nothing of this reaches the sandbox regulators.
Report types that plan from a watermark (incremental extraction) have no per-period history and are left
to the live run.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from core import aggregates, clock, ledger, scheduler, settings
from core.db import db
from core.hook_types import ReportType
from core.models import Attempt, HeldBack, Slot, Task, Upload, UploadStatus
from core.plugins import registry

ACTOR = "演示历史"
NOTE = "演示历史数据：按真实计划生成，未实际发送到监管平台"
# (outcome, share): what a quarter of a busy hospital's uploads look like.
OUTCOMES = (("first_try", 0.92), ("after_retries", 0.05), ("failed", 0.02), ("rejected", 0.01))


def seed(days: int = 90, *, now: datetime | None = None, seed_value: int = 20261201) -> dict[str, int]:
    """Write the history into a ledger with no scheduled uploads yet (one that has them is left alone;
    filings people made, e.g. the two-channel demo's, do not count). Returns uploads per report type.
    Runs inside an app context; takes a few seconds."""
    scheduled = sa.select(Task.report_type)
    if db.session.scalar(sa.select(sa.func.count(Upload.id)).where(Upload.report_type.in_(scheduled))):
        return {}
    rng = random.Random(seed_value)
    now = now or clock.now()
    reg = registry()
    source = scheduler.hospital_data()
    counts: dict[str, int] = {}
    tasks = db.session.execute(sa.select(Task).where(Task.enabled.is_(True)).order_by(Task.report_type))
    for task in tasks.scalars().all():
        report_type = reg.report_types.get(task.report_type)
        if report_type is None or not report_type.available:
            continue
        try:
            counts[task.report_type] = _seed_report_type(report_type, task, source, now, days, rng)
        except Exception:  # one plugin's data problem must not stop the demo: the live run shows it
            db.session.rollback()
    aggregates.rebuild()
    return {k: v for k, v in counts.items() if v}


def history_slots(task: Task, now: datetime, days: int) -> list[datetime]:
    """One slot per day (the first of each day: keydata's 00:00 run carries the previous day's full-day
    figures) for tasks that run at least daily, every slot for slower ones, from ``days`` ago up to
    yesterday (today is left to the live run)."""
    tz = ZoneInfo(task.timezone)
    today = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days)
    slots = scheduler.slots_between(task.cron, task.timezone, start - timedelta(seconds=1), today - timedelta(seconds=1))
    per_day: dict[object, datetime] = {}
    for slot in slots:
        per_day.setdefault(slot.astimezone(tz).date(), slot)
    return sorted(per_day.values())


def _seed_report_type(report_type: ReportType, task: Task, source, now: datetime, days: int,
                      rng: random.Random) -> int:
    hook = registry().hook(report_type.name, "schedule")
    regulator_settings = settings.regulator_settings(report_type.regulator)
    url = next((v for k, v in regulator_settings.values.items() if k.endswith("url") and v), "")
    written = 0
    for slot in history_slots(task, now, days):
        plans = hook(report_type=report_type, slot=slot.astimezone(ZoneInfo(report_type.timezone)),
                     source=source, settings=regulator_settings) or []
        if any(plan.watermark for plan in plans):
            db.session.rollback()
            return 0  # incremental extraction: no per-period history to show
        db.session.add(Slot(report_type=report_type.name, slot_at=clock.utc_naive(slot), origin="backfill",
                            uploads_planned=sum(1 for p in plans if p.rows is not None), message=NOTE))
        ids = ledger.record_plans(report_type, plans, actor=ACTOR, commit=False)
        sent_at = clock.utc_naive(slot) + timedelta(seconds=rng.randint(3, 40))
        for upload in db.session.execute(sa.select(Upload).where(Upload.id.in_(ids))).scalars():
            _simulate(upload, sent_at, url, rng)
            written += 1
        age = clock.utc_naive(now) - clock.utc_naive(slot)
        if age > timedelta(days=3):  # long since mapped and re-sent: only recent held-back records stay open
            db.session.execute(sa.update(HeldBack).where(HeldBack.report_type == report_type.name,
                                                         HeldBack.resolved.is_(False),
                                                         HeldBack.created_at < clock.utc_naive(now))
                               .values(resolved=True))
        db.session.commit()
    return written


def _simulate(upload: Upload, sent_at: datetime, url: str, rng: random.Random) -> None:
    roll, outcome = rng.random(), OUTCOMES[-1][0]
    for name, share in OUTCOMES:
        if roll < share:
            outcome = name
            break
        roll -= share
    plan = {"first_try": ["success"], "after_retries": ["retry"] * rng.randint(1, 2) + ["success"],
            "failed": ["retry"] * 4, "rejected": ["reject"]}[outcome]
    plaintext = json.dumps(upload.rows, ensure_ascii=False)
    started = sent_at
    for number, kind in enumerate(plan, start=1):
        duration = rng.randint(40, 400) if kind != "retry" else rng.choice((30_000, rng.randint(200, 900)))
        busy = kind == "retry"
        db.session.add(Attempt(
            upload_id=upload.id, number=number, resend=number > 1, worker=ACTOR, started_at=started,
            finished_at=started + timedelta(milliseconds=duration), duration_ms=duration, url=url or None,
            plaintext=plaintext, wire_body=None, http_status=503 if busy else 200,
            response_body=NOTE, code="503" if busy else ("200" if kind == "success" else "40001"),
            message="平台繁忙（演示）" if busy else ("上传成功（演示）" if kind == "success" else "字段校验未通过（演示）"),
            outcome=kind,
        ))
        started += timedelta(minutes=5)
    upload.attempts = len(plan)
    upload.auto_retries = sum(1 for k in plan if k == "retry")
    upload.created_at = sent_at - timedelta(seconds=2)
    upload.updated_at = upload.finished_at = started - timedelta(minutes=5)
    upload.status = {"success": UploadStatus.SUCCEEDED, "retry": UploadStatus.FAILED,
                     "reject": UploadStatus.REJECTED}[plan[-1]]
    upload.last_code = {"success": "200", "retry": "503", "reject": "40001"}[plan[-1]]
    upload.last_message = {"success": "上传成功（演示）", "retry": "平台繁忙，自动重试已用完（演示）",
                           "reject": "字段校验未通过（演示）"}[plan[-1]]
    upload.counted_status = None  # aggregates.rebuild() counts the finished history once
