"""Finding uploads in the log as an IT admin does: by 统计期 (the period the data is about) as well as by
upload time, and an exact total on request above the cap."""

from __future__ import annotations

from datetime import datetime

from test_web_support import login

import plugins.keydata.models  # noqa: F401  (the department mapping table)
from core import aggregates
from core.db import db
from core.models import Upload, UploadStatus


def _upload(key: str, period: str, created: datetime) -> int:
    row = Upload(report_type="webtest.daily", business_key=key, period=period, status=UploadStatus.SUCCEEDED,
                 idempotency_key=key, search_text=key, created_at=created, rows=[])
    db.session.add(row)
    db.session.flush()
    aggregates.settle(row)  # as core.ledger does: the statistics count every upload
    db.session.commit()
    return row.id


def test_the_period_filter_finds_uploads_by_what_they_report_whatever_the_label_form(app):
    sent_today = datetime(2026, 11, 30, 3, 0)
    inside = [
        _upload("a", "2025/02/17 07:59:59", sent_today),  # keydata hourly, sent (back-filled) much later
        _upload("b", "2025-02-18", sent_today),  # two-channel date
        _upload("c", "2025-02-17 00:00:00 ~ 2025-02-17 06:00:00", sent_today),  # a Shangrao batch
        _upload("d", "2025/02", sent_today),  # a monthly report
    ]
    _upload("e", "2025/02/19 00:59:59", sent_today)
    _upload("f", "2025-03-01", datetime(2025, 2, 17, 9, 0))  # sent inside the range, about another period
    _upload("g", "2025/01", sent_today)
    viewer = login(app, "viewer")
    page = viewer.get("/uploads/?period_start=2025-02-17&period_end=2025-02-18").get_data(as_text=True)
    shown = {int(i) for i in __import__("re").findall(r'href="/uploads/(\d+)"', page)}
    assert shown == set(inside)
    assert "统计期从" in page


def test_an_exact_total_on_request_when_the_count_is_capped(app, monkeypatch):
    import web.upload_query as uq

    monkeypatch.setattr(uq, "COUNT_CAP", 5)
    for i in range(8):
        _upload(f"k{i}", f"2025/03/0{i + 1}", datetime(2025, 3, 1 + i))
    viewer = login(app, "viewer")
    capped = viewer.get("/uploads/").get_data(as_text=True)
    assert "超过 <strong>5</strong> 条" in capped and "统计精确总数" in capped
    exact = viewer.get("/uploads/?count=exact").get_data(as_text=True)
    assert "共 <strong>8</strong> 条" in exact


def test_the_department_filter_accepts_a_name_as_well_as_a_code(app):
    from plugins.keydata import models

    models.ensure_setup()
    models.set_mapping("0101", "心血管内科", "A03.04", "admin")
    models.set_mapping("0102", "呼吸内科", "A03.01", "admin")
    db.session.commit()
    cardio = Upload(report_type="keydata.dept_daily", business_key="c", period="2025/02/17 07:59:59", department="0101",
                    status=UploadStatus.SUCCEEDED, idempotency_key="c", search_text="c", rows=[])
    lung = Upload(report_type="keydata.dept_daily", business_key="l", period="2025/02/17 07:59:59", department="0102",
                  status=UploadStatus.SUCCEEDED, idempotency_key="l", search_text="l", rows=[])
    db.session.add_all([cardio, lung])
    db.session.commit()
    viewer = login(app, "viewer")
    import re

    for text in ("0101", "心血管", "心血管内科"):
        page = viewer.get(f"/uploads/?department={text}").get_data(as_text=True)
        assert {int(i) for i in re.findall(r'href="/uploads/(\d+)"', page)} == {cardio.id}, text
    page = viewer.get("/uploads/").get_data(as_text=True)
    assert '<option value="0102">呼吸内科</option>' in page  # suggestions while typing


def test_an_exact_total_with_a_period_filter_counts_the_ledger(app, monkeypatch):
    import web.upload_query as uq

    monkeypatch.setattr(uq, "COUNT_CAP", 2)
    for i in range(5):
        _upload(f"p{i}", f"2025/03/0{i + 1} 07:59:59", datetime(2025, 4, 1))
    page = login(app, "viewer").get("/uploads/?period_start=2025-03-02&period_end=2025-03-04&count=exact")
    assert "共 <strong>3</strong> 条" in page.get_data(as_text=True)


def test_a_page_of_failures_reads_the_identifier_roles_once_not_once_per_row(app):
    """Each failure row's message is masked by role: the roles flag is read once per request (a
    flag left at its default is not in the session's identity map, so every read was a query)."""
    import sqlalchemy as sa

    for i in range(30):
        row = Upload(report_type="webtest.daily", business_key=f"f{i}", period=f"2025/03/{i % 28 + 1:02d}",
                     status=UploadStatus.FAILED, idempotency_key=f"f{i}", search_text=f"f{i}", rows=[],
                     last_code="E500", last_message=f"身份证 36010219800101{i:04d} 校验失败", created_at=datetime(2025, 3, 1))
        db.session.add(row)
        db.session.flush()
        aggregates.settle(row)
    db.session.commit()
    viewer = login(app, "viewer")
    flag_reads = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "FROM flags" in statement:
            flag_reads.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        page = viewer.get("/uploads/?status=failures").get_data(as_text=True)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert page.count("校验失败") == 30 and "360102198001010007" not in page  # masked on every row
    assert len(flag_reads) <= 2, len(flag_reads)
