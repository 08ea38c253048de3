"""Periods as obligations: a slot has a state that can move again. Planning that failed, was skipped,
held records back or was interrupted can be planned again (core, CLI, admin); tick records slots before
its watermark moves; nothing plans a period that has not ended; long back-fills run in the background."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from echo_regulator import EchoPlugin
from test_web_support import login

from core import clock, scheduler
from core.db import db
from core.errors import ConfigurationError
from core.hookspecs import hookimpl
from core.models import BackfillRun, Slot, SlotStatus, Task, Upload

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


def slot_row(moment: datetime, name: str = "echo.hourly") -> Slot:
    db.session.expire_all()
    return db.session.execute(
        sa.select(Slot).filter_by(report_type=name, slot_at=clock.utc_naive(moment))).scalar_one()


def periods(name: str = "echo.hourly") -> list[str]:
    db.session.expire_all()
    return sorted(db.session.execute(sa.select(Upload.period).filter_by(report_type=name)).scalars())


def task(name: str = "echo.hourly") -> Task:
    return db.session.execute(sa.select(Task).filter_by(report_type=name)).scalar_one()


class HisDown(EchoPlugin):
    """The echo plugin whose hospital database is unreachable while ``down`` is set."""

    def __init__(self):
        super().__init__()
        self.down = True
        self.crash = False

    @hookimpl
    def schedule(self, report_type, slot, source, settings):
        if self.crash:
            raise KeyboardInterrupt  # the process dies mid-planning (not an Exception: nothing catches it)
        if self.down:
            raise ConnectionError("HIS 数据库连接失败")
        return super().schedule(report_type, slot, source, settings)


@pytest.fixture
def his_down(echo, registry_with):
    plugin = HisDown()
    registry_with(plugin)
    return plugin


def test_a_slot_whose_planning_failed_is_recorded_in_error_and_can_be_replanned(his_down):
    with pytest.raises(ConnectionError):
        scheduler.run_slot("echo.hourly", at(2025, 2, 17, 8), enqueue=False)
    failed = slot_row(at(2025, 2, 17, 8))
    assert failed.status == SlotStatus.ERROR and "HIS" in failed.message
    assert scheduler.run_slot("echo.hourly", at(2025, 2, 17, 8), enqueue=False) == []  # not by accident

    his_down.down = False
    counts = scheduler.replan_slots([failed.id], enqueue=False)

    assert counts == {"slots": 1, "uploads": 1, "errors": 0}
    assert slot_row(at(2025, 2, 17, 8)).status == SlotStatus.PLANNED
    assert slot_row(at(2025, 2, 17, 8)).runs == 2
    assert periods() == ["2025-02-17 08:00"]
    assert scheduler.replan_slots([failed.id], enqueue=False)["slots"] == 0  # planned: left alone


def test_backfill_replan_from_the_cli_plans_error_and_skipped_slots_again(his_down, monkeypatch):
    from core.cli import main

    clock.freeze(at(2025, 2, 17, 12, 0))
    task().last_slot_at = clock.utc_naive(at(2025, 2, 17, 8, 30))
    db.session.commit()
    scheduler.tick()  # 09:00, 10:00 skipped by the 'latest' policy; 11:00, 12:00 ... 12:00 fails (HIS down)
    assert slot_row(at(2025, 2, 17, 9)).status == SlotStatus.SKIPPED
    assert slot_row(at(2025, 2, 17, 12)).status == SlotStatus.ERROR
    his_down.down = False

    plain = CliRunner().invoke(main, ["backfill", "echo.hourly", "2025-02-17 09:00", "2025-02-17 12:00"])
    assert plain.exit_code == 0, plain.output
    assert periods() == []  # without --replan, slots already recorded are left as they are
    replanned = CliRunner().invoke(main, ["backfill", "--replan", "echo.hourly", "2025-02-17 09:00",
                                          "2025-02-17 12:00"])
    assert replanned.exit_code == 0, replanned.output
    assert periods() == ["2025-02-17 09:00", "2025-02-17 10:00", "2025-02-17 11:00", "2025-02-17 12:00"]
    assert "已计划 4 个上报" in replanned.output


def test_tick_records_its_slots_before_its_watermark_so_a_crash_loses_none(his_down):
    his_down.down, his_down.crash = False, True
    clock.freeze(at(2025, 2, 17, 8, 0, 5))
    task().last_slot_at = clock.utc_naive(at(2025, 2, 17, 7, 30))
    db.session.commit()
    with pytest.raises(KeyboardInterrupt):
        scheduler.tick()
    db.session.rollback()
    assert clock.from_db(task().last_slot_at) == at(2025, 2, 17, 8)  # the watermark moved ...
    assert slot_row(at(2025, 2, 17, 8)).status == SlotStatus.PLANNING  # ... and the slot is on record

    his_down.crash = False
    clock.freeze(at(2025, 2, 17, 8, 1))
    scheduler.tick()
    assert periods() == []  # a slot being planned is not taken from a runner that may be alive
    clock.freeze(at(2025, 2, 17, 8, 0, 5) + scheduler.PLANNING_TIMEOUT + timedelta(minutes=1))
    scheduler.tick()
    assert periods() == ["2025-02-17 08:00"]  # the interrupted slot was planned by a later tick
    assert slot_row(at(2025, 2, 17, 8)).status == SlotStatus.PLANNED


def test_backfill_and_run_now_never_plan_a_period_that_has_not_ended(echo):
    clock.freeze(at(2025, 2, 17, 10, 30))
    assert scheduler.backfill("echo.hourly", at(2025, 2, 17, 0), at(2025, 2, 17, 23, 59), dry_run=True) == 11
    scheduler.backfill("echo.hourly", at(2025, 2, 17, 0), at(2025, 2, 17, 23, 59), enqueue=False)
    assert len(periods()) == 11 and periods()[-1] == "2025-02-17 10:00"
    with pytest.raises(ConfigurationError, match="尚未结束"):
        scheduler.run_slot("echo.hourly", at(2025, 2, 17, 11), "manual", enqueue=False)

    clock.freeze(at(2025, 2, 17, 11, 0, 5))
    task().last_slot_at = clock.utc_naive(at(2025, 2, 17, 10, 30))
    db.session.commit()
    scheduler.tick()
    assert periods()[-1] == "2025-02-17 11:00"  # its real run was not skipped


def test_two_ticks_at_once_plan_each_slot_once(echo):
    from core.app import process_app

    clock.freeze(at(2025, 2, 17, 12, 0, 5))
    monthly = task("echo.monthly")
    monthly.last_slot_at = clock.utc_naive(at(2024, 6, 15))
    db.session.commit()
    errors = []

    def one_tick():
        try:
            with process_app().app_context():
                scheduler.tick(report_type="echo.monthly")
                db.session.remove()
        except Exception as exc:  # pragma: no cover - shown by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=one_tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(periods("echo.monthly")) == 8  # 2024-07 .. 2025-02, every one once
    rows = db.session.execute(sa.select(Slot).filter_by(report_type="echo.monthly")).scalars().all()
    assert {s.runs for s in rows} == {1}, [(s.slot_at, s.status, s.runs, s.origin, s.message) for s in rows]


@pytest.mark.slow
def test_a_long_backfill_runs_in_the_background_with_its_progress_shown(echo, work, monkeypatch):
    monkeypatch.setattr(scheduler, "BACKFILL_CHUNK_SLOTS", 30)
    operator = login(echo_app(), "operator")
    clock.freeze(at(2025, 3, 1, 0, 30))
    t = task()

    preview = operator.get(f"/tasks/{t.id}/backfill/preview?start=2020-01-01&end=2020-12-31").get_data(as_text=True)
    assert 'id="backfill-count">8784<' in preview and "一次最多" not in preview  # no 5,000 cap

    answer = operator.post(f"/tasks/{t.id}/backfill", {"start": "2025-02-26", "end": "2025-02-28"})
    assert answer.status_code == 302  # the request only records the run and hands it to a worker
    run = db.session.execute(sa.select(BackfillRun)).scalar_one()
    assert (run.status, run.total, run.done) == ("queued", 72, 0)
    assert periods() == []

    work()  # the run's chunks, one job after another, then the uploads they planned

    db.session.expire_all()
    run = db.session.get(BackfillRun, run.id)
    assert (run.status, run.done, run.uploads, run.errors) == ("done", 72, 72, 0)
    assert len(echo.state["records"]) == 72
    page = operator.get(f"/tasks/{t.id}/backfill/runs").get_data(as_text=True)
    assert "已完成" in page and "72" in page


@pytest.mark.parametrize("expression", ["*/15 * * * *", "0 * * * *", "30 2 * * *", "0 0 1 * *", "5 9-17 * * 1-5",
                                        "0 0 29 2 *", "*/7 */5 13 * 5", "0 0 L * *"])
@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York"])
def test_slots_are_counted_as_many_as_they_are_listed(expression, zone):
    tz = ZoneInfo(zone)
    for start, end in [(datetime(2023, 1, 1, 7, 13, tzinfo=tz), datetime(2024, 12, 31, 23, 59, 59, tzinfo=tz)),
                       (datetime(2024, 3, 9, 23, 59, 59, tzinfo=tz), datetime(2024, 3, 12, 0, 0, tzinfo=tz)),
                       (datetime(2024, 3, 10, 0, 0, tzinfo=tz), datetime(2024, 3, 10, 5, 0, tzinfo=tz))]:
        assert scheduler.count_slots(expression, zone, start, end) == \
            len(scheduler.slots_between(expression, zone, start, end)), (start, end)


def test_a_backfill_since_2020_at_15_minutes_is_counted_without_walking_its_slots(echo, monkeypatch):
    operator = login(echo_app(), "operator")
    clock.freeze(at(2025, 3, 1, 0, 30))
    t = task()
    t.cron = "*/15 * * * *"
    db.session.commit()
    walked = []
    listing = scheduler.slots_between
    monkeypatch.setattr(scheduler, "slots_between", lambda *a, **k: walked.append(listing(*a, **k)) or walked[-1])

    preview = operator.get(f"/tasks/{t.id}/backfill/preview?start=2020-01-01&end=2025-03-01").get_data(as_text=True)
    slots = ((at(2025, 3, 1) - at(2020, 1, 1)).days * 96) + 3  # and 00:00, 00:15 and 00:30 today
    assert f'id="backfill-count">{slots}<' in preview
    answer = operator.post(f"/tasks/{t.id}/backfill", {"start": "2020-01-01", "end": "2025-03-01"})
    assert answer.status_code == 302
    assert db.session.execute(sa.select(BackfillRun)).scalar_one().total == slots
    assert sum(len(w) for w in walked) < 1000  # a quarter of a million slots were walked per request before


def test_the_task_page_lists_slots_with_their_state_and_replans_one(his_down):
    operator = login(echo_app(), "operator")
    with pytest.raises(ConnectionError):
        scheduler.run_slot("echo.hourly", at(2025, 2, 17, 8), enqueue=False)
    failed = slot_row(at(2025, 2, 17, 8))
    t = task()
    page = operator.get(f"/tasks/{t.id}?state=open").get_data(as_text=True)
    assert 'data-status="error"' in page and "重新计划" in page and "onclick" not in page
    assert login(echo_app(), "viewer", "v1").post(f"/tasks/{t.id}/slots/{failed.id}/replan").status_code == 403
    assert operator.raw.post(f"/tasks/{t.id}/slots/{failed.id}/replan").status_code == 400  # no CSRF token

    his_down.down = False
    done = operator.post(f"/tasks/{t.id}/slots/{failed.id}/replan", follow_redirects=True).get_data(as_text=True)
    assert "已重新计划" in done
    assert slot_row(at(2025, 2, 17, 8)).status == SlotStatus.PLANNED
    assert periods() == ["2025-02-17 08:00"]


def test_the_task_page_replans_a_range(his_down):
    operator = login(echo_app(), "operator")
    for hour in (8, 9, 10):
        with pytest.raises(ConnectionError):
            scheduler.run_slot("echo.hourly", at(2025, 2, 17, hour), enqueue=False)
    his_down.down = False
    t = task()
    operator.post(f"/tasks/{t.id}/slots/replan", {"start": "2025-02-17", "end": "2025-02-17"})
    assert periods() == ["2025-02-17 08:00", "2025-02-17 09:00", "2025-02-17 10:00"]


def echo_app():
    from flask import current_app

    return current_app._get_current_object()
