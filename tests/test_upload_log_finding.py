"""Finding uploads in the log as an IT admin does: by 统计期 (the period the data is about) as well as by
upload time, and an exact total on request above the cap."""

from __future__ import annotations

from datetime import datetime

from test_web_support import login

from core.db import db
from core.models import Upload, UploadStatus


def _upload(key: str, period: str, created: datetime) -> int:
    row = Upload(report_type="webtest.daily", business_key=key, period=period, status=UploadStatus.SUCCEEDED,
                 idempotency_key=key, search_text=key, created_at=created, rows=[])
    db.session.add(row)
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
