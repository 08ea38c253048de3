"""The indexed forms of the hot queries return what the plain ones would: the "failures" page merged
from one index range per status, in order, across keyset pages."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.db import db
from core.models import Upload, UploadStatus
from web.upload_query import FAILURE_STATUSES, UploadFilter, page

STATUSES = [UploadStatus.SUCCEEDED, UploadStatus.FAILED, UploadStatus.RETRY_WAIT, UploadStatus.REJECTED]


def test_the_failures_page_merges_its_statuses_in_order_across_keyset_pages(app):
    start = datetime(2025, 3, 1)
    for i in range(130):
        db.session.add(Upload(report_type="echo.hourly" if i % 3 else "echo.monthly", business_key=f"k{i}",
                              status=STATUSES[(i * 7) % 4], idempotency_key=f"i{i}",
                              created_at=start + timedelta(minutes=(i * 37) % 130)))
    db.session.commit()
    all_rows = db.session.execute(db.select(Upload)).scalars().all()
    for order in ("desc", "asc"):
        for report_type in ("", "echo.hourly"):
            flt = UploadFilter(status="failures", order=order, report_type=report_type)
            expected = sorted(((u.created_at, u.id) for u in all_rows if u.status in FAILURE_STATUSES
                               and (not report_type or u.report_type == report_type)), reverse=order == "desc")
            seen, cursor = [], None
            while True:
                result = page(flt, after=cursor, size=20)
                seen += [(r.created_at, r.id) for r in result.rows]
                if not result.next_cursor:
                    break
                cursor = result.next_cursor
            assert seen == expected
            assert result.prev_cursor  # the last page links back to the one before it
            back = page(flt, before=result.prev_cursor, size=20)
            assert [(r.created_at, r.id) for r in back.rows] == expected[-20 - len(result.rows):-len(result.rows)]
