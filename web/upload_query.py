"""The upload-log filter, shared by the log page, its Excel export and bulk retry.

The filter lives in the URL (bookmarkable). Listing uses keyset pagination on (created_at, id) — the
indexes (created_at), (report_type, created_at) and (status, created_at) serve both the filter and the
order (SQLite appends the rowid to every index; PostgreSQL uses an incremental sort), so a page costs the
same at a million rows as at a thousand. The count is capped (COUNT_CAP): beyond it the page says
"超过 10,000 条" instead of scanning everything on each click.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

import sqlalchemy as sa

from core import clock
from core.db import db
from core.models import Upload, UploadStatus

PAGE_SIZE = 50
COUNT_CAP = 10_000
FAILURE_STATUSES = (UploadStatus.FAILED, UploadStatus.RETRY_WAIT, UploadStatus.REJECTED)
STATUS_CHOICES = [("failures", "全部失败（失败/待重试/被拒绝）")] + [(s, UploadStatus.LABELS[s]) for s in UploadStatus.ALL]
FILTER_NAMES = {"start": "开始", "end": "结束", "report_type": "类型", "status": "状态", "department": "科室",
                "q": "关键字", "period_start": "统计期起", "period_end": "统计期止"}


def filter_value_label(key: str, value: str, title_of=None) -> str:
    """A filter's value as the admin should read it (状态：失败, never 状态：failed)."""
    if key == "status":
        return dict(STATUS_CHOICES).get(value, value)
    if key == "report_type" and title_of is not None:
        return title_of(value)
    return value

# Columns the list needs (not rows/result, which can be large).
LIST_COLUMNS = (
    Upload.id, Upload.created_at, Upload.report_type, Upload.period, Upload.department, Upload.status,
    Upload.attempts, Upload.last_code, Upload.last_message, Upload.business_key, Upload.operation,
)


def _parse_day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


@dataclass
class UploadFilter:
    start: str = ""  # YYYY-MM-DD, local
    end: str = ""  # YYYY-MM-DD, local, inclusive
    report_type: str = ""
    status: str = ""  # an UploadStatus, or "failures"
    department: str = ""
    q: str = ""  # free text on business keys (msgid, application no., ID/card number...)
    period_start: str = ""  # 统计期 from (YYYY-MM-DD): the period the data is about, not when it was sent
    period_end: str = ""  # 统计期 to, inclusive
    order: str = "desc"

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> UploadFilter:
        values = {f.name: (args.get(f.name) or "").strip()[:200] for f in fields(cls)}
        flt = cls(**values)
        if flt.order not in ("asc", "desc"):
            flt.order = "desc"
        if flt.status and flt.status != "failures" and flt.status not in UploadStatus.ALL:
            flt.status = ""
        if not _parse_day(flt.start):
            flt.start = ""
        if not _parse_day(flt.end):
            flt.end = ""
        for name in ("period_start", "period_end"):
            if not _parse_day(getattr(flt, name)):
                setattr(flt, name, "")
        return flt

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v and not (k == "order" and v == "desc")}

    def query_string(self, **changes) -> str:
        values = {**self.as_dict(), **{k: v for k, v in changes.items() if v is not None}}
        return urlencode({k: v for k, v in values.items() if v})

    @property
    def active(self) -> bool:
        return any(v for k, v in self.as_dict().items() if k != "order")

    def conditions(self, *, failures_only: bool = False) -> list:
        tz = clock.default_timezone()
        where = []
        start, end = _parse_day(self.start), _parse_day(self.end)
        if start:
            where.append(Upload.created_at >= clock.utc_naive(datetime.combine(start, time(), tz)))
        if end:
            where.append(Upload.created_at < clock.utc_naive(datetime.combine(end + timedelta(days=1), time(), tz)))
        if self.report_type:
            where.append(Upload.report_type == self.report_type)
        statuses = self.statuses()
        if failures_only:
            statuses = [s for s in (statuses or FAILURE_STATUSES) if s in FAILURE_STATUSES] or ["-none-"]
        if statuses:
            where.append(Upload.status == statuses[0] if len(statuses) == 1 else Upload.status.in_(statuses))
        if self.department:
            codes = department_codes(self.department)
            where.append(Upload.department == codes[0] if len(codes) == 1 else Upload.department.in_(codes))
        period = period_condition(_parse_day(self.period_start), _parse_day(self.period_end))
        if period is not None:
            where.append(period)
        if self.q:
            from web import search_index

            where.append(search_index.condition(db.engine, self.q))
        return where

    def statuses(self) -> list[str]:
        if self.status == "failures":
            return list(FAILURE_STATUSES)
        return [self.status] if self.status else []


def department_choices() -> list[tuple[str, str]]:
    """(local code, local name) of every department a plugin's code mapping knows, for the filter's
    suggestions and for filtering by name."""
    from core.plugins import registry

    found: dict[str, str] = {}
    for dictionary in registry().mapped_dictionaries():
        try:
            for code, mapped in dictionary.mapping.mappings().items():
                found.setdefault(code, mapped.local_name)
        except Exception:  # a plugin's table missing or its database down: filter by code only
            continue
    return sorted(found.items())


def department_codes(text: str) -> list[str]:
    """The department filter accepts a code or (part of) a name: 0101, 心内科, 心内."""
    text = text.strip()
    codes = [text]
    for code, name in department_choices():
        if code != text and text in (name or ""):
            codes.append(code)
    return codes


def period_condition(first: date | None, last: date | None):
    """Uploads whose 统计期 label falls in [first, last]. Plugins write the label in their regulator's form
    (2025/02/17 07:59:59, 2025-02-17, 20250217, a month 2025/02, a range "a ~ b" by its start); each form is
    fixed-width, so a string range per separator is exact and can use an index on the label."""
    if first is None and last is None:
        return None
    first = first or date(1900, 1, 1)
    last = last or date(9999, 12, 30)
    after = last + timedelta(days=1)
    options = []
    for sep in ("/", "-", ""):
        low, high = first.strftime(f"%Y{sep}%m{sep}%d"), after.strftime(f"%Y{sep}%m{sep}%d")
        options.append(sa.and_(Upload.period >= low, Upload.period < high))
    months = []
    cursor = date(first.year, first.month, 1)
    while cursor <= last and len(months) < 600:
        months += [cursor.strftime("%Y/%m"), cursor.strftime("%Y-%m"), cursor.strftime("%Y%m")]
        cursor = date(cursor.year + cursor.month // 12, cursor.month % 12 + 1, 1)
    options.append(Upload.period.in_(months))
    return sa.or_(*options)


def _order(flt: UploadFilter, reverse: bool = False):
    descending = (flt.order == "desc") != reverse
    return (Upload.created_at.desc(), Upload.id.desc()) if descending else (Upload.created_at.asc(), Upload.id.asc())


def encode_cursor(created_at: datetime, upload_id: int) -> str:
    return f"{created_at.isoformat(timespec='microseconds')}_{upload_id}"


def decode_cursor(value: str | None) -> tuple[datetime, int] | None:
    if not value or "_" not in value:
        return None
    stamp, _, ident = value.rpartition("_")
    try:
        return datetime.fromisoformat(stamp), int(ident)
    except ValueError:
        return None


@dataclass
class Page:
    rows: list
    next_cursor: str | None
    prev_cursor: str | None


def page(flt: UploadFilter, *, after: str | None = None, before: str | None = None,
         size: int = PAGE_SIZE) -> Page:
    """One page of the filtered log, keyset-paginated: ``after`` the last row shown (next page) or
    ``before`` the first one (previous page)."""
    where = flt.conditions()
    key = sa.tuple_(Upload.created_at, Upload.id)
    cursor_after, cursor_before = decode_cursor(after), decode_cursor(before)
    reverse = False
    if cursor_after:
        where.append(key < cursor_after if flt.order == "desc" else key > cursor_after)
    elif cursor_before:
        where.append(key > cursor_before if flt.order == "desc" else key < cursor_before)
        reverse = True
    rows = list(db.session.execute(_page_query(flt, where, reverse, size + 1)).all())
    more = len(rows) > size
    rows = rows[:size]
    if reverse:
        rows.reverse()
    if not rows:
        return Page([], None, None)
    first, last = rows[0], rows[-1]
    has_next = more if not reverse else True
    has_prev = (more if reverse else bool(cursor_after))
    return Page(
        rows,
        encode_cursor(last.created_at, last.id) if has_next else None,
        encode_cursor(first.created_at, first.id) if has_prev else None,
    )


def _page_query(flt: UploadFilter, where: list, reverse: bool, limit: int):
    """The page's query. Several statuses ("failures") become one index range each, merged: an IN list
    would make the database sort every matching row to find the newest (SQLite), while each range of
    (status, created_at) or (report_type, status, created_at) is already in order."""
    statuses = flt.statuses()
    if len(statuses) < 2:
        return sa.select(*LIST_COLUMNS).where(*where).order_by(*_order(flt, reverse)).limit(limit)
    others = [c for c in where if not _is_status_condition(c)]
    parts = [sa.select(*LIST_COLUMNS).where(*others, Upload.status == status)
             .order_by(*_order(flt, reverse)).limit(limit).subquery() for status in statuses]
    merged = sa.union_all(*(sa.select(part) for part in parts)).subquery()
    descending = (flt.order == "desc") != reverse
    order = (merged.c.created_at.desc(), merged.c.id.desc()) if descending else \
        (merged.c.created_at.asc(), merged.c.id.asc())
    return sa.select(merged).order_by(*order).limit(limit)


def _is_status_condition(condition) -> bool:
    left = getattr(condition, "left", None)
    return left is not None and getattr(left, "key", None) == "status" and getattr(left, "table", None) is Upload.__table__


def capped_count(flt: UploadFilter, cap: int | None = None, *, failures_only: bool = False) -> tuple[int, bool]:
    """(count, exact): counts at most ``cap + 1`` matching rows so a broad filter stays cheap."""
    cap = COUNT_CAP if cap is None else cap
    inner = sa.select(Upload.id).where(*flt.conditions(failures_only=failures_only)).limit(cap + 1).subquery()
    count = db.session.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one()
    return (cap, False) if count > cap else (count, True)


def exact_count(flt: UploadFilter, *, failures_only: bool = False) -> int:
    """The exact number of matching uploads. A filter of report type, status and days only is answered
    by the statistics aggregates (counters per report type × local day × status, the same local days
    as the filter's): a few hundred rows instead of every matching upload. An upload being sent right
    now is counted in the status it had before."""
    if not flt.department and not flt.q and not flt.period_start and not flt.period_end:
        return _count_from_aggregates(flt, failures_only=failures_only)
    return db.session.execute(
        sa.select(sa.func.count(Upload.id)).where(*flt.conditions(failures_only=failures_only))
    ).scalar_one()


def _count_from_aggregates(flt: UploadFilter, *, failures_only: bool) -> int:
    from core.aggregates import StatCounter, status_metric

    statuses = flt.statuses() or list(UploadStatus.ALL)
    if failures_only:
        statuses = [s for s in statuses if s in FAILURE_STATUSES]
    if not statuses:
        return 0
    query = sa.select(sa.func.coalesce(sa.func.sum(StatCounter.value), 0)).where(
        StatCounter.metric.in_([status_metric(s) for s in statuses]))
    if flt.report_type:
        query = query.where(StatCounter.report_type == flt.report_type)
    start, end = _parse_day(flt.start), _parse_day(flt.end)
    if start:
        query = query.where(StatCounter.day >= start)
    if end:
        query = query.where(StatCounter.day <= end)
    return int(db.session.execute(query).scalar_one())


EXPORT_COLUMNS = (
    Upload.id, Upload.created_at, Upload.report_type, Upload.period, Upload.department, Upload.business_key,
    Upload.operation, Upload.status, Upload.attempts, Upload.last_code, Upload.last_message, Upload.finished_at,
)


def export_rows(flt: UploadFilter, batch: int = 5000):
    """Every matching row, in the page's order, read in keyset chunks: each chunk is a short query of its
    own, so a long export never holds a read transaction (on SQLite that would block the workers'
    writes for minutes) and memory stays at one chunk."""
    key = sa.tuple_(Upload.created_at, Upload.id)
    cursor = None
    while True:
        where = flt.conditions()
        if cursor is not None:
            where.append(key < cursor if flt.order == "desc" else key > cursor)
        rows = db.session.execute(
            sa.select(*EXPORT_COLUMNS).where(*where).order_by(*_order(flt)).limit(batch)
        ).all()
        db.session.rollback()  # end the read transaction between chunks (nothing was written)
        yield from rows
        if len(rows) < batch:
            return
        cursor = (rows[-1].created_at, rows[-1].id)
