"""Indicator aggregates with the key-data plugin: a day's figures are those of its latest succeeded
upload per department (hourly running totals), kept incrementally and equal to a rebuild."""

from __future__ import annotations

import sqlalchemy as sa
from test_keydata_flow import DEPT, HOURLY, at, faults, his_url, keydata, keydata_registry  # noqa: F401

from core import aggregates, clock, pipeline
from core.db import db
from core.models import Upload, UploadStatus
from core.scheduler import backfill


def send_all() -> None:
    ids = db.session.execute(sa.select(Upload.id, Upload.attempts).where(
        Upload.status.in_((UploadStatus.PENDING, UploadStatus.RETRY_WAIT))).order_by(Upload.id)).all()
    for upload_id, attempts in ids:
        pipeline.attempt(upload_id, attempts)


def test_indicator_aggregates_follow_the_latest_upload_of_each_day_and_department(keydata):  # noqa: F811
    clock.freeze(at(2025, 2, 20, 9, 0))
    backfill(HOURLY, at(2025, 1, 31, 20, 0), at(2025, 2, 1, 3, 0), enqueue=False)
    backfill(DEPT, at(2025, 1, 31, 22, 0), at(2025, 2, 1, 1, 0), enqueue=False)
    faults(keydata, error_rate=1.0, status=500, count=3)  # three attempts fail, then succeed on retry
    send_all()
    send_all()
    db.session.expire_all()
    uploads = db.session.execute(sa.select(Upload)).scalars().all()
    assert uploads and all(u.status == UploadStatus.SUCCEEDED for u in uploads)
    assert sum(u.attempts == 2 for u in uploads) == 3

    _, indicators = aggregates.snapshot()
    for upload in uploads:
        day = aggregates.period_day(upload.period, None)
        latest = max((u for u in uploads if u.report_type == upload.report_type
                      and aggregates.period_day(u.period, None) == day and u.department == upload.department),
                     key=lambda u: (u.period, u.id))
        assert indicators[(upload.report_type, day, upload.department or "")][1] == latest.id
    counters, _ = aggregates.snapshot()
    jan31 = at(2025, 1, 31, 0, 0).date()
    last_hour = next(u for u in uploads if u.report_type == HOURLY and u.period == "2025/01/31 23:59:59")
    assert counters[(HOURLY, jan31, "ind_sum:clinicPersonTimes")] == \
        last_hour.rows[0]["clinicPersonTimes"] * aggregates.INDICATOR_SCALE

    before = aggregates.snapshot()
    aggregates.rebuild()
    assert aggregates.snapshot() == before
