"""The scheduler's obligations with the key-data plugin and its sandbox: the 00:00 run (the previous day's
full-day figures) survives a "latest" catch-up across midnight, and records held back for an unmapped
department are sent once it is mapped (and the dashboard warning clears), or by a manual 补报."""

from __future__ import annotations

import sqlalchemy as sa
from test_keydata_flow import at, held, his_url, keydata, keydata_registry  # noqa: F401 (fixtures)
from test_web_support import login

from core import clock, pipeline, scheduler
from core.db import db
from core.models import HeldBack, Slot, SlotStatus, Task, Upload, UploadStatus
from plugins.keydata import models
from plugins.keydata.demo_seed import DEMO_MAPPING

HOURLY = "keydata.hospital_daily"
DEPT = "keydata.dept_daily"


def send_pending() -> None:
    db.session.expire_all()
    for upload in db.session.execute(sa.select(Upload).filter_by(status=UploadStatus.PENDING)).scalars().all():
        pipeline.attempt(upload.id, upload.attempts)


def test_a_scheduler_down_across_midnight_still_sends_the_full_day_slot(keydata):  # noqa: F811
    task = db.session.execute(sa.select(Task).filter_by(report_type=HOURLY)).scalar_one()
    task.last_slot_at = clock.utc_naive(at(2025, 1, 31, 22, 30))  # last seen before the outage
    db.session.commit()
    clock.freeze(at(2025, 2, 1, 2, 10))

    scheduler.tick(report_type=HOURLY)
    send_pending()

    statuses = {clock.from_db(s.slot_at): s.status for s in
                db.session.execute(sa.select(Slot).filter_by(report_type=HOURLY)).scalars()}
    assert statuses == {at(2025, 1, 31, 23): SlotStatus.SKIPPED, at(2025, 2, 1, 0): SlotStatus.PLANNED,
                        at(2025, 2, 1, 1): SlotStatus.SKIPPED, at(2025, 2, 1, 2): SlotStatus.PLANNED}
    # The regulator holds the whole of 31 January, not just "the latest hour".
    assert held(keydata, report="hospital_daily", statDate="2025/01/31 23:59:59")
    assert held(keydata, report="hospital_daily", statDate="2025/02/01 01:59:59")


def test_held_back_department_records_are_sent_once_the_department_is_mapped(keydata, work):  # noqa: F811
    from web.dashboard import held_back_groups

    clock.freeze(at(2025, 1, 31, 12, 0))
    for hour in (10, 11):
        scheduler.run_slot(DEPT, at(2025, 1, 31, hour), enqueue=False)
    send_pending()
    slots = db.session.execute(sa.select(Slot).filter_by(report_type=DEPT)).scalars().all()
    assert {s.status for s in slots} == {SlotStatus.HELD_BACK}
    unmapped = sorted({h.record_key for h in db.session.execute(sa.select(HeldBack)).scalars()})
    assert unmapped and not set(unmapped) & set(DEMO_MAPPING)
    warnings_before = sum(g.count for g in held_back_groups())
    first, *others = unmapped

    operator = login(current_app(), "operator")
    answer = operator.post("/config/departments/map", {"local_code": first, "local_name": "内分泌代谢科",
                                                       "national_code": "A03.07"})
    assert answer.status_code in (200, 302)
    work()  # the re-plan job, then the uploads it planned

    for stat_date in ("2025/01/31 09:59:59", "2025/01/31 10:59:59"):
        sent = held(keydata, report="dept_daily", statDate=stat_date, departNoExp=first)
        assert [r["departNo"] for r in sent] == ["A03.07"]
    db.session.expire_all()
    open_rows = db.session.execute(sa.select(HeldBack).filter_by(resolved=False)).scalars().all()
    assert first not in {h.record_key for h in open_rows}
    assert sum(g.count for g in held_back_groups()) < warnings_before

    # The rest mapped outside the admin: the task page's 补报 sends them.
    for code in others:
        models.set_mapping(code, "x", "A03.07", "admin")
    db.session.commit()
    task = db.session.execute(sa.select(Task).filter_by(report_type=DEPT)).scalar_one()
    operator.post(f"/tasks/{task.id}/slots/replan", {"held_back": "1"})
    work()
    db.session.expire_all()
    assert db.session.execute(sa.select(HeldBack).filter_by(resolved=False)).scalars().all() == []
    assert {s.status for s in db.session.execute(sa.select(Slot).filter_by(report_type=DEPT)).scalars()} == {
        SlotStatus.PLANNED}
    assert held_back_groups() == []
    sent = held(keydata, report="dept_daily", statDate="2025/01/31 10:59:59")
    assert {r["departNoExp"] for r in sent} >= set(unmapped)


def current_app():
    from flask import current_app as app

    return app._get_current_object()
