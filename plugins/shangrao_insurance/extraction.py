"""Incremental extraction: which hospital rows go into which batch, and how far we have got.

Rows are read in a stable order, ``(_wm_ts, _wm_id)`` = (the row's update time, its primary key), after a
*position* (the last row already planned), so rows with equal timestamps are never skipped: the query
asks for ``_wm_ts > :after_ts OR (_wm_ts = :after_ts AND _wm_id > :after_id)``, and only up to the
slot's own time (``:until``), so a catch-up or back-fill slot plans exactly what existed then.

Two views of progress, per service:

planned-through
    The core watermark ``shangrao.<service>.planned``. It advances in the same database transaction that
    records the planned batches in the ledger (``core.ledger.record_plans``), with each batch's rows
    frozen there and its msgid fixed. A crash before that commit plans nothing and moves nothing, so the
    next run reads the same rows again (no skip); a crash after it leaves batches the worker sends (or the
    sweep re-sends with the same msgid, which the regulator answers 40005 = already received), so no row
    is read twice (no double). Rows held back (a field fails its table, or one row alone is too big for
    ``data``) are passed too: they are recorded with their reason and come back only when the hospital
    changes them (their update time moves).

accepted-through
    Computed from the ledger: the position up to which *every* planned batch has been accepted by the
    regulator. It stops before the first batch that is still pending, retrying, failed, rejected or
    cancelled, so a rejected batch is never silently passed: its rows stay in that upload for a person
    to fix and retry, and this view shows where the gap is.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from core import ledger
from core.db import db
from core.errors import ConfigurationError
from core.hook_types import Problem, ReportType, Settings, UploadPlan
from core.models import Upload, UploadStatus

from . import common

log = logging.getLogger("baosong.shangrao")

QUERY = "rows"
TS_COLUMN = "_wm_ts"
ID_COLUMN = "_wm_id"
START_TS = "1900-01-01 00:00:00"  # before any hospital record: the first run reads everything
PAGE_SIZE = 2000
_INT_WIDTH = 20  # integer keys are zero-padded so positions compare as text in key order


@dataclass(frozen=True)
class Position:
    """(update time, primary key) of a row; the text form compares like the pair. A key of None is
    the start of that second (before every row of it)."""

    ts: str
    key: Any

    def is_after(self, other: Position) -> bool:
        if self.ts != other.ts:
            return self.ts > other.ts
        if other.key is None:
            return self.key is not None
        return self.key is not None and self.key > other.key

    def text(self) -> str:
        if self.key is None:
            return f"{self.ts}|"
        if isinstance(self.key, int) and not isinstance(self.key, bool):
            return f"{self.ts}|i:{self.key:0{_INT_WIDTH}d}"
        return f"{self.ts}|s:{self.key}"

    @classmethod
    def parse(cls, text: str) -> Position:
        ts, _, key = text.partition("|")
        if key.startswith("i:"):
            return cls(ts, int(key[2:]))
        return cls(ts, key[2:] if key else None)


def watermark_name(service: str) -> str:
    return f"shangrao.{service}.planned"


def _as_text_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def start_position(settings: Settings) -> Position:
    """Where the first run starts: everything, or the configured go-live time."""
    since = settings.get("initial_since").strip()
    if not since:
        return Position(START_TS, None)
    try:
        datetime.strptime(since, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ConfigurationError(f"首次上报起点 initial_since 应为 yyyy-MM-dd HH:mm:ss，实际为 {since!r}") from None
    return Position(since, None)  # rows strictly after this moment


def planned_through(service: str, settings: Settings) -> Position:
    mark = ledger.watermark(watermark_name(service))
    return Position.parse(mark) if mark else start_position(settings)


def fetch(report_type: ReportType, source, after: Position, until: str, max_rows: int) \
        -> list[tuple[Position, dict[str, Any]]]:
    """Rows after ``after`` up to ``until`` in (time, key) order, at most ``max_rows``, paged by key."""
    out: list[tuple[Position, dict[str, Any]]] = []
    while len(out) < max_rows:
        limit = min(PAGE_SIZE, max_rows - len(out))
        page = source.query(report_type, QUERY, after_ts=after.ts, after_id=after.key, until=until, limit=limit)
        for raw in page:
            row = dict(raw)
            try:
                position = Position(_as_text_time(row.pop(TS_COLUMN)), row.pop(ID_COLUMN))
            except KeyError:
                raise ConfigurationError(
                    f"{report_type.title} 的查询须返回 {TS_COLUMN}（更新时间）和 {ID_COLUMN}（主键）两列"
                ) from None
            if not position.is_after(after):
                raise ConfigurationError(
                    f"{report_type.title} 的查询没有按 ({TS_COLUMN}, {ID_COLUMN}) 升序返回水位之后的记录"
                )
            after = position
            out.append((position, row))
        if len(page) < limit:
            break
    return out


def clean_row(row: dict[str, Any]) -> dict[str, Any]:
    """Wire form of one row: empty values left out, decimals and times in the document's forms."""
    return {k: common.normalise_value(v) for k, v in row.items() if v is not None and v != ""}


def plan(report_type: ReportType, slot: datetime, source, settings: Settings) -> list[UploadPlan]:
    """Plan the batches of one slot: everything changed since the planned-through position."""
    service = common.service_of(report_type.name)
    common.check_ready(settings, service)
    code = common.institution_code(settings)
    profile = common.sm2_profile(settings)
    max_chars = common.positive_int(settings, "max_data_chars", common.DEFAULT_MAX_DATA_CHARS)
    max_rows = common.positive_int(settings, "max_rows_per_run", 100000)
    dictionaries = common.load_dictionaries(settings)
    schema = common.schema_for(service)
    key_field = common.KEY_FIELDS[service]

    after = planned_through(service, settings)
    # The HIS keeps naive wall-clock times of the report type's zone (Asia/Shanghai).
    until = slot.astimezone(ZoneInfo(report_type.timezone)).strftime("%Y-%m-%d %H:%M:%S")
    fetched = fetch(report_type, source, after, until, max_rows)
    if not fetched:
        return []

    held_back: list[Problem] = []
    valid: list[tuple[Position, dict[str, Any]]] = []
    read_index: list[int] = []  # index in ``fetched`` of each valid row, for problems found later
    for index, (position, raw) in enumerate(fetched):
        row = clean_row(raw)
        problems = schema.validate(row, dictionaries=dictionaries, index=index)
        if problems:
            key = row.get(key_field)
            for problem in problems:
                problem.record_key = None if key in (None, "") else str(key)
            held_back.extend(problems)
        else:
            valid.append((position, row))
            read_index.append(index)

    batches, oversized = common.cut_batches([row for _, row in valid], profile, max_chars)
    for item in oversized:
        held_back.append(Problem(
            None, f"单条记录加密后 data 为 {item.ciphertext_chars} 字符，超过上限 {max_chars} 字符，无法发送",
            record_index=read_index[item.index], record_key=str(item.row.get(key_field, "")) or None,
        ))
    last = fetched[-1][0]
    period = f"{fetched[0][0].ts} ~ {last.ts}"
    plans: list[UploadPlan] = []
    positions = [position for position, _ in valid]
    for batch in batches:
        first, end = positions[batch.start], positions[batch.start + len(batch.rows) - 1]
        keys = sorted({str(r.get(key_field)) for r in batch.rows if r.get(key_field)})
        plans.append(UploadPlan(
            business_key=batch_key(service, first, end),
            period=f"{first.ts} ~ {end.ts}",
            rows=batch.rows,
            idempotency_key=common.new_msgid(code),
            search_keys=keys,
        ))
    if not plans:  # every row read was held back: a plan without rows records them and the watermark
        plans.append(UploadPlan(business_key=batch_key(f"{service}:held", fetched[0][0], last), period=period,
                                rows=None))
    # The watermark and the held-back records ride on the last plan: one transaction with the batches.
    plans[-1].watermark = (watermark_name(service), last.text())
    plans[-1].held_back = held_back
    log.info("%s: %d rows read, %d batches planned, %d problems held back, planned through %s",
             report_type.name, len(fetched), len(plans), len(held_back), last.ts)
    return plans


# --- progress ------------------------------------------------------------------------------------

_BUSINESS_KEY_MAX = 200  # Upload.business_key
_END_RE = re.compile(r"\.\.(?=\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\|)")


def batch_key(prefix: str, first: Position, end: Position) -> str:
    """'<service>:<first position>..<last position>': deterministic, so planning the same rows twice
    records them once, and the end position is read back for accepted-through."""
    key = f"{prefix}:{first.text()}..{end.text()}"
    if len(key) > _BUSINESS_KEY_MAX:  # very long primary keys: the first position is only hashed
        key = f"{prefix}:{hashlib.sha1(first.text().encode()).hexdigest()[:16]}..{end.text()}"
    if len(key) > _BUSINESS_KEY_MAX:
        raise ConfigurationError(f"主键过长（{len(str(end.key))} 字符），无法作为批次标识；请在查询中缩短 {ID_COLUMN}")
    return key


def batch_end(business_key: str) -> Position:
    parts = _END_RE.split(business_key, maxsplit=1)
    return Position.parse(parts[1]) if len(parts) == 2 else Position("", None)


def accepted_through(service: str, settings: Settings | None = None) -> Position | None:
    """The position up to which every planned batch was accepted (None: nothing accepted yet)."""
    name = common.report_type_name(service)
    first_open = db.session.scalar(
        sa.select(sa.func.min(Upload.id)).where(Upload.report_type == name,
                                                Upload.status != UploadStatus.SUCCEEDED)
    )
    query = sa.select(Upload.business_key).where(Upload.report_type == name,
                                                 Upload.status == UploadStatus.SUCCEEDED)
    if first_open is not None:
        query = query.where(Upload.id < first_open)
    key = db.session.scalar(query.order_by(Upload.id.desc()).limit(1))
    return batch_end(key) if key else None


def progress(service: str, settings: Settings) -> dict[str, Any]:
    """Both views plus what lies between them, for the admin and tests."""
    name = common.report_type_name(service)
    counts = dict(db.session.execute(
        sa.select(Upload.status, sa.func.count(Upload.id)).where(Upload.report_type == name)
        .group_by(Upload.status)
    ).all())
    accepted = accepted_through(service, settings)
    planned_mark = ledger.watermark(watermark_name(service))
    return {
        "service": service,
        "planned_through": Position.parse(planned_mark).ts if planned_mark else None,
        "accepted_through": accepted.ts if accepted else None,
        "batches": counts,
        "open_batches": sum(n for status, n in counts.items() if status != UploadStatus.SUCCEEDED),
        "rejected_batches": counts.get(UploadStatus.REJECTED, 0),
    }
