"""Statistics of filings (by year / month, per drug or disease) and the log search."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa

from core import clock
from core.db import db
from core.models import Upload
from plugins.twopath.models import Filing, FilingStatus

S = FilingStatus
# Status groups shown as columns.
COLUMNS = {
    "approved": (S.APPROVED,),
    "rejected": (S.REJECTED,),
    "pending": (S.PENDING_REVIEW, S.SUBMITTING, S.REVOKING),
    "revoked": (S.REVOKED,),
    "unsent": (S.DRAFT, S.DOCTOR_APPROVED, S.SUBMIT_REJECTED),
}


@dataclass
class StatRow:
    period: str
    kind: str
    code: str
    name: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def statistics(*, by: str = "month", year: str | None = None, kind: str | None = None) -> list[StatRow]:
    """Filings per period (year or month of the application date), kind and drug/disease."""
    width = 4 if by == "year" else 7
    period = sa.func.substr(Filing.appy_date, 1, width)
    query = sa.select(period, Filing.kind, Filing.item_code, sa.func.max(Filing.item_name), Filing.status,
                      sa.func.count()).group_by(period, Filing.kind, Filing.item_code, Filing.status)
    if year:
        query = query.where(sa.func.substr(Filing.appy_date, 1, 4) == year)
    if kind:
        query = query.where(Filing.kind == kind)
    rows: dict[tuple[str, str, str], StatRow] = {}
    group_of = {status: name for name, statuses in COLUMNS.items() for status in statuses}
    for p, k, code, name, status, count in db.session.execute(query):
        row = rows.setdefault((p, k, code), StatRow(p, k, code, name or ""))
        column = group_of.get(status, "unsent")
        row.counts[column] = row.counts.get(column, 0) + count
    return sorted(rows.values(), key=lambda r: (r.period, r.kind, r.code), reverse=False)


@dataclass
class SearchResult:
    filings: list[Filing]
    uploads: list[Upload]


def search(*, card_no: str = "", certno: str = "", appy_no: str = "", start: date | None = None,
           end: date | None = None, limit: int = 200) -> SearchResult:
    """Filings and interface calls by card number, ID number, application number and date range
    (local dates, inclusive; the ledger stores UTC)."""
    filing_query = sa.select(Filing).order_by(Filing.id.desc()).limit(limit)
    upload_query = sa.select(Upload).where(Upload.report_type.like("twopath.%")).order_by(Upload.id.desc()) \
        .limit(limit)
    for value, column in ((card_no, Filing.card_no), (certno, Filing.certno), (appy_no, Filing.appy_no)):
        if value:
            filing_query = filing_query.where(column == value.strip())
            upload_query = upload_query.where(Upload.search_text.contains(value.strip()))
    tz = clock.default_timezone()
    if start:
        moment = clock.utc_naive(datetime.combine(start, time.min, tz))
        filing_query = filing_query.where(Filing.created_at >= moment)
        upload_query = upload_query.where(Upload.created_at >= moment)
    if end:
        moment = clock.utc_naive(datetime.combine(end + timedelta(days=1), time.min, tz))
        filing_query = filing_query.where(Filing.created_at < moment)
        upload_query = upload_query.where(Upload.created_at < moment)
    return SearchResult(list(db.session.execute(filing_query).scalars()),
                        list(db.session.execute(upload_query).scalars()))
