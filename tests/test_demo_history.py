"""The demo carries three months of upload history, planned from the demo hospital by the plugins' own
schedule hooks, with successes, retries, failures and rejections, counted in the statistics."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa

import plugins.keydata.models  # noqa: F401  (keydata plans need its tables)
from core.db import db
from core.models import Attempt, Slot, Upload, UploadStatus

NOW = datetime(2025, 2, 18, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai"))  # the test hospital's data ends here


def test_history_is_planned_from_the_hospital_and_shows_every_outcome(app, his):
    from core import aggregates
    from demo import history
    from plugins.keydata import demo_seed

    demo_seed.seed_mappings()  # as the demo's sandbox seed does: two thirds of the departments mapped
    db.session.add(Upload(report_type="twopath.2511", business_key="filing-1-submit-1", period="2025-02-01",
                          status=UploadStatus.SUCCEEDED, idempotency_key="f1", search_text="", rows=[]))
    db.session.commit()  # a filing the demo seeds first is an event, not history: it does not stop the seed
    counts = history.seed(days=14, now=NOW)
    assert counts.get("keydata.hospital_daily") == 14  # one day-final upload per day
    assert counts.get("keydata.dept_daily", 0) > 14  # one per department and day
    statuses = dict(db.session.execute(sa.select(Upload.status, sa.func.count()).group_by(Upload.status)).all())
    assert statuses[UploadStatus.SUCCEEDED] > 0.8 * sum(statuses.values())
    assert set(statuses) - {UploadStatus.SUCCEEDED}  # some failures or rejections, as in a real quarter
    retried = db.session.scalar(sa.select(sa.func.count()).select_from(Upload).where(
        Upload.status == UploadStatus.SUCCEEDED, Upload.attempts > 1))
    assert retried > 0
    first = db.session.execute(sa.select(Upload).where(Upload.report_type == "keydata.hospital_daily")
                               .order_by(Upload.created_at)).scalars().first()
    assert first.rows and any(isinstance(v, int | float) for v in first.rows[0].values())  # real figures
    attempt = db.session.execute(sa.select(Attempt).where(Attempt.upload_id == first.id)).scalars().first()
    assert "演示历史" in attempt.response_body  # says what it is
    # The history is counted: the aggregates equal a rebuild from the ledger.
    before = aggregates.snapshot()
    aggregates.rebuild()
    assert aggregates.snapshot() == before and before[0]
    # Slots are recorded, so the scheduler never plans those days again; a second seed writes nothing.
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Slot)) >= 14
    assert history.seed(days=14, now=NOW) == {}


def test_the_statistics_page_opens_on_the_report_type_with_figures(app, his):
    from demo import history
    from plugins.keydata import demo_seed
    from tests.test_web_support import login

    demo_seed.seed_mappings()
    history.seed(days=14, now=NOW)
    from core import clock

    clock.freeze(NOW)
    page = login(app, "viewer").get("/stats/").get_data(as_text=True)
    chosen = page.split('name="report_type"', 1)[1].split("</select>", 1)[0]
    selected = chosen.split("selected", 1)[0].rsplit('value="', 1)[1].split('"', 1)[0]
    assert selected.startswith("keydata."), selected  # the hourly key data, not whatever sorts first
