"""Schedules: cron slots fire once, paused tasks do not, missed slots follow the catch-up policy,
back-fill runs every slot of a range, one scheduler leads, and Redis mirrors the database."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from conftest import free_port

from core import clock
from core.db import db
from core.errors import ConfigurationError
from core.models import Slot, Task, Upload
from core.scheduler import backfill, next_runs, sync_redis, tick, validate_cron

SHANGHAI = ZoneInfo("Asia/Shanghai")


def task(name: str) -> Task:
    return db.session.execute(sa.select(Task).filter_by(report_type=name)).scalar_one()


def periods(report_type: str) -> list[str]:
    return sorted(db.session.execute(sa.select(Upload.period).filter_by(report_type=report_type)).scalars())


def start_at(name: str, moment: datetime) -> None:
    task(name).last_slot_at = clock.utc_naive(moment)
    db.session.commit()


def test_a_cron_task_fires_each_due_slot_once(echo):
    start_at("echo.hourly", datetime(2025, 2, 17, 7, 30, tzinfo=SHANGHAI))
    tick(datetime(2025, 2, 17, 8, 0, 5, tzinfo=SHANGHAI))
    tick(datetime(2025, 2, 17, 8, 0, 50, tzinfo=SHANGHAI))
    assert periods("echo.hourly") == ["2025-02-17 08:00"]
    assert "计划 1 条" in task("echo.hourly").last_result


def test_a_paused_task_does_not_fire(echo):
    start_at("echo.hourly", datetime(2025, 2, 17, 7, 30, tzinfo=SHANGHAI))
    task("echo.hourly").enabled = False
    db.session.commit()
    tick(datetime(2025, 2, 17, 10, 0, tzinfo=SHANGHAI))
    assert periods("echo.hourly") == []


def test_after_three_hours_down_an_hourly_latest_task_runs_only_the_latest_slot(echo):
    start_at("echo.hourly", datetime(2025, 2, 17, 8, 0, tzinfo=SHANGHAI))
    tick(datetime(2025, 2, 17, 11, 0, 10, tzinfo=SHANGHAI))
    assert periods("echo.hourly") == ["2025-02-17 11:00"]
    skipped = db.session.execute(sa.select(Slot).filter_by(status="skipped")).scalars().all()
    assert len(skipped) == 2


def test_after_months_down_a_monthly_task_runs_every_missed_slot(echo):
    start_at("echo.monthly", datetime(2024, 12, 15, tzinfo=SHANGHAI))
    tick(datetime(2025, 3, 2, tzinfo=SHANGHAI))
    assert periods("echo.monthly") == ["2025-01-01 00:00", "2025-02-01 00:00", "2025-03-01 00:00"]


def test_backfill_runs_every_slot_in_the_range_once_and_previews_the_count(echo):
    start = datetime(2025, 2, 17, 0, 0, tzinfo=SHANGHAI)
    end = datetime(2025, 2, 17, 23, 59, tzinfo=SHANGHAI)
    assert backfill("echo.hourly", start, end, dry_run=True) == 24
    assert backfill("echo.hourly", start, end, enqueue=False) == 24
    assert backfill("echo.hourly", start, end, enqueue=False) == 0  # nothing doubled
    assert len(periods("echo.hourly")) == 24
    origins = set(db.session.execute(sa.select(Slot.origin)).scalars())
    assert origins == {"backfill"}


def test_an_invalid_cron_gets_a_message_naming_the_problem():
    with pytest.raises(ConfigurationError, match="5 个字段"):
        validate_cron("0 * * *")
    with pytest.raises(ConfigurationError, match="无效"):
        validate_cron("61 * * * *")
    assert validate_cron(" 0  *  * * * ") == "0 * * * *"


def test_next_runs_are_in_the_tasks_time_zone():
    runs = next_runs("0 0 1 * *", "Asia/Shanghai", datetime(2025, 1, 31, 17, 0, tzinfo=ZoneInfo("UTC")))
    assert runs[0] == datetime(2025, 3, 1, 0, 0, tzinfo=SHANGHAI)  # 2025-02-01 00:00 +08 already passed
    assert len(runs) == 5


def test_redis_holds_the_schedule_rebuilt_from_the_database(echo, redis_conn):
    from rq_scheduler import Scheduler

    from core.queue import queue

    task("echo.monthly").enabled = False
    db.session.commit()
    sync_redis()
    ids = {job.id for job in Scheduler(queue=queue(), connection=redis_conn).get_jobs()}
    assert {"baosong-tick", "baosong-sweep", "baosong-task-echo__hourly"} <= ids
    assert "baosong-task-echo__monthly" not in ids


def test_only_one_of_two_schedulers_leads(echo, redis_conn):
    from core import scheduler_process

    stop = threading.Event()
    first = threading.Thread(target=scheduler_process.run, kwargs={"poll_seconds": 0.2, "stop": stop})
    first.start()
    for _ in range(50):
        if redis_conn.get(scheduler_process.LEADER_KEY):
            break
        threading.Event().wait(0.1)
    leader = redis_conn.get(scheduler_process.LEADER_KEY)
    assert leader
    assert not scheduler_process.acquire_leadership(redis_conn, "other-host:1")
    stop.set()
    first.join(10)
    assert redis_conn.get(scheduler_process.LEADER_KEY) is None  # released on a clean stop
    assert scheduler_process.acquire_leadership(redis_conn, "other-host:1")


def test_a_slot_recorded_by_one_scheduler_is_not_planned_by_another(echo):
    from core.scheduler import run_slot

    slot = datetime(2025, 2, 17, 9, 0, tzinfo=SHANGHAI)
    assert len(run_slot("echo.hourly", slot, enqueue=False)) == 1
    assert run_slot("echo.hourly", slot + timedelta(0), enqueue=False) == []


def test_a_slot_planned_while_redis_is_away_stays_planned_and_its_uploads_wait_for_the_sweep(echo, monkeypatch):
    start_at("echo.hourly", datetime(2025, 2, 17, 7, 30, tzinfo=SHANGHAI))
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    tick(datetime(2025, 2, 17, 8, 0, 5, tzinfo=SHANGHAI))
    assert periods("echo.hourly") == ["2025-02-17 08:00"]
    assert "计划 1 条" in task("echo.hourly").last_result  # not "计划失败": the slot is planned
    assert db.session.execute(sa.select(Slot.status).filter_by(report_type="echo.hourly")).scalar_one() == "planned"
    assert db.session.execute(sa.select(Upload.status).filter_by(report_type="echo.hourly")).scalar_one() == "pending"
