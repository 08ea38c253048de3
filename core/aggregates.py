"""Statistics aggregates that do not grow with history, kept in step with the ledger.

Two tables, both keyed by report type and local business day (``clock.default_timezone``):

- ``stat_counters``: additive counters — uploads by their current status (``uploads:<status>``), attempts
  (``attempts``, ``attempts_ok``) and attempt latency (``latency_n``, ``latency_sum``, ``latency_max`` and
  histogram buckets ``latency_le:<ms>``) by the day the attempt started.
- ``stat_indicators``: per day and department, the indicator values of the latest succeeded upload (the
  greatest (period, upload id), as an hourly report sends the day's running totals): ``{field: [sum, n]}``
  over its records. Their sum over the day's departments is kept in ``stat_counters`` too
  (``ind_sum:<field>`` in units of 1/10,000, ``ind_n:<field>``): when a department's latest upload is
  replaced, the day's totals move by the difference, so a year's trend reads 365 rows per field.

They are written in the same transaction as the ledger change that causes them (``core.ledger`` calls
``settle`` on every status it records and ``record_finished`` from ``finish``), so they cannot drift;
``rebuild`` recomputes them from the ledger (``baosong stats rebuild``, run with the workers stopped).

An upload is counted once, in the status it was last settled in (``Upload.counted_status``): a change
moves it from the old counter to the new one. SENDING is transient and not a counted status: an upload
being sent stays counted where it was until its attempt finishes.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from core import clock
from core.db import db
from core.models import Attempt, Upload, UploadStatus

# Upper bounds (ms) of the latency histogram's buckets; a last bucket takes everything slower.
LATENCY_BOUNDS_MS = (50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000)
ATTEMPT_OUTCOMES = ("success", "retry", "reject")  # finished through core.ledger.finish
INDICATOR_SCALE = 10_000  # indicator sums are kept as integers in units of 1/10,000
SUMMED_TYPES = ("integer",)
AVERAGED_TYPES = ("number", "decimal")
_PERIOD_DATE = re.compile(r"(\d{4})[-/年]?(\d{1,2})(?:[-/月]?(\d{1,2}))?")


class StatCounter(db.Model):
    __tablename__ = "stat_counters"
    __table_args__ = (sa.Index("ix_stat_counters_metric", "metric", "report_type", "day", "value"),)

    report_type: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    metric: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class StatIndicator(db.Model):
    __tablename__ = "stat_indicators"

    report_type: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    department: Mapped[str] = mapped_column(sa.String(64), primary_key=True, default="")
    period: Mapped[str] = mapped_column(sa.String(64), default="")
    upload_id: Mapped[int] = mapped_column()
    figures: Mapped[dict] = mapped_column(sa.JSON, default=dict)  # {field: [sum, n]}


def status_metric(status: str) -> str:
    return f"uploads:{status}"


def bucket_metric(duration_ms: int) -> str:
    for bound in LATENCY_BOUNDS_MS:
        if duration_ms <= bound:
            return f"latency_le:{bound}"
    return "latency_le:inf"


def local_day(moment: datetime) -> date:
    return clock.from_db(moment).astimezone(clock.default_timezone()).date()


def period_day(period: str, created_at: datetime | None) -> date | None:
    """The business day a period label stands for ("2025/02/17 07:59:59" -> 2025-02-17; "2025-01" -> 1st)."""
    match = _PERIOD_DATE.search(period or "")
    if match:
        try:
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3) or 1))
        except ValueError:
            pass
    return local_day(created_at) if created_at is not None else None


def numeric_fields(report_type: str) -> list[tuple[str, str, str]]:
    """(name, title, type) of the report type's numeric schema fields: its indicators."""
    from core.plugins import registry

    declared = registry().report_types.get(report_type)
    schema = getattr(declared, "schema", None)
    if schema is None:
        return []
    return [(f.name, f.title or f.name, f.type) for f in schema.fields if f.type in SUMMED_TYPES + AVERAGED_TYPES]


# -- writing -------------------------------------------------------------------------------------------

def _insert(table: sa.Table, dialect: str | None = None):
    """The dialect's INSERT (for ON CONFLICT): of the session's database unless ``dialect`` is given."""
    if (dialect or db.session.get_bind().dialect.name) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def add_counters(deltas: dict[tuple[str, date, str], int]) -> None:
    """Add to counters (``latency_max`` keeps the maximum instead): one upsert statement, compiled once
    per dialect and run for all rows at once (executemany). Keys are sorted so concurrent writers take
    row locks in the same order (no deadlock on PostgreSQL)."""
    deltas = {k: v for k, v in deltas.items() if v or k[2] == "latency_max"}
    if not deltas:
        return
    rows = [dict(report_type=rt, day=day, metric=metric, value=value)
            for (rt, day, metric), value in sorted(deltas.items())]
    connection = db.session.connection()  # the session's transaction, without the ORM's execute path
    connection.execute(_counter_upsert(connection.dialect.name), rows)


@functools.cache
def _counter_upsert(dialect: str):
    table = StatCounter.__table__
    stmt = _insert(table, dialect)
    new = stmt.excluded.value
    return stmt.on_conflict_do_update(
        index_elements=[table.c.report_type, table.c.day, table.c.metric],
        set_={"value": sa.case(
            (table.c.metric == "latency_max", sa.case((new > table.c.value, new), else_=table.c.value)),
            else_=table.c.value + new)},
    )


def settle(*uploads: Upload) -> None:
    """Count each upload in its current status (moving it from the status it was counted in)."""
    deltas: dict[tuple[str, date, str], int] = defaultdict(int)
    for upload in uploads:
        _settle_into(deltas, upload)
    add_counters(deltas)


def _settle_into(deltas: dict, upload: Upload) -> None:
    status = upload.status
    if status == UploadStatus.SENDING or upload.counted_status == status:
        return
    if upload.created_at is None:  # not flushed yet: the column default, set now so the day is known
        upload.created_at = clock.utc_naive(clock.now())
    day = local_day(upload.created_at)
    if upload.counted_status:
        deltas[(upload.report_type, day, status_metric(upload.counted_status))] -= 1
    deltas[(upload.report_type, day, status_metric(status))] += 1
    upload.counted_status = status


def _attempt_deltas(deltas: dict, report_type: str, started_at: datetime, duration_ms: int | None,
                    outcome: str | None) -> None:
    day = local_day(started_at)
    deltas[(report_type, day, "attempts")] += 1
    if outcome == "success":
        deltas[(report_type, day, "attempts_ok")] += 1
    if duration_ms is not None:
        deltas[(report_type, day, "latency_n")] += 1
        deltas[(report_type, day, "latency_sum")] += duration_ms
        deltas[(report_type, day, bucket_metric(duration_ms))] += 1
        key = (report_type, day, "latency_max")
        deltas[key] = max(deltas.get(key, 0), duration_ms)


def _current_attempt(upload: Upload) -> Attempt | None:
    """The attempt being finished: already in the session (the pipeline added it), else by its key."""
    for obj in list(db.session.identity_map.values()) + list(db.session.new):
        if isinstance(obj, Attempt) and obj.upload_id == upload.id and obj.number == upload.attempts:
            return obj
    return db.session.execute(
        sa.select(Attempt).where(Attempt.upload_id == upload.id, Attempt.number == upload.attempts)
    ).scalar_one_or_none()


def record_finished(upload: Upload) -> None:
    """An attempt of ``upload`` finished (``core.ledger.finish``): its status, the attempt's latency and,
    when it succeeded, the indicator values it sent. Runs in the caller's transaction.

    Everything is worked out first; then the session is flushed and the rows every worker shares (the
    day's indicator row and counters) are written last, just before the caller commits. Those rows are
    locked from their write to the commit on PostgreSQL, and SQLite holds its one write lock from a
    transaction's first write: written first, they kept the other workers waiting through the flush."""
    deltas: dict[tuple[str, date, str], int] = defaultdict(int)
    _settle_into(deltas, upload)
    attempt = _current_attempt(upload)
    if attempt is not None:
        _attempt_deltas(deltas, upload.report_type, attempt.started_at or clock.utc_naive(clock.now()),
                        attempt.duration_ms, attempt.outcome)
    indicator = None
    if upload.status == UploadStatus.SUCCEEDED:
        fields = numeric_fields(upload.report_type)
        if fields:
            records = _indicator_records(upload, fields, attempt.plaintext if attempt is not None else None)
            day = period_day(upload.period, upload.created_at)
            if day is not None:
                indicator = (day, figures(records, fields))
    db.session.flush()
    if indicator is not None:
        day, values = indicator
        _replace_indicator(deltas, upload.report_type, day, upload.department or "", upload.period or "",
                           upload.id, values)
    add_counters(deltas)


def indicator_deltas(deltas: dict, report_type: str, day: date, values: dict, sign: int) -> None:
    for name, (total, n) in values.items():
        deltas[(report_type, day, f"ind_sum:{name}")] += sign * round(total * INDICATOR_SCALE)
        deltas[(report_type, day, f"ind_n:{name}")] += sign * n


def _replace_indicator(deltas: dict, report_type: str, day: date, department: str, period: str, upload_id: int,
                       values: dict) -> None:
    """Make this upload the department's figures for the day if it is the latest one, moving the day's
    totals by the difference. An existing row is locked on PostgreSQL (two workers finishing the same
    department-day take turns; a concurrent first insert waits, then finds the row); SQLite has one
    writer anyway.

    This runs while the caller's transaction holds SQLite's one write turn, so its statements are built
    once per process (``_indicator_statements``) and run on plain rows: building an ORM query and loading
    an object here took a fifth of the time a finishing upload held the turn."""
    connection = db.session.connection()  # the session's transaction, without the ORM's execute path
    read, insert, update = _indicator_statements(connection.dialect.name)
    key = {"k_report_type": report_type, "k_day": day, "k_department": department}
    # Most finishes replace the day's row (an hourly report sends the day's running totals): read it
    # first, insert only the day's first.
    current = connection.execute(read, key).first()
    if current is None:
        inserted = connection.execute(insert, {"report_type": report_type, "day": day, "department": department,
                                               "period": period, "upload_id": upload_id, "figures": values}).first()
        if inserted is not None:
            indicator_deltas(deltas, report_type, day, values, +1)
            return
        current = connection.execute(read, key).one()  # a concurrent first insert won; it is locked now
    if (period, upload_id) <= (current.period, current.upload_id):
        return
    indicator_deltas(deltas, report_type, day, current.figures or {}, -1)
    indicator_deltas(deltas, report_type, day, values, +1)
    connection.execute(update, {**key, "new_period": period, "new_upload_id": upload_id, "new_figures": values})


@functools.cache
def _indicator_statements(dialect: str) -> tuple:
    """(read, insert, update) of one department-day's indicator row, for ``dialect``."""
    table = StatIndicator.__table__
    is_key = sa.and_(table.c.report_type == sa.bindparam("k_report_type"), table.c.day == sa.bindparam("k_day"),
                     table.c.department == sa.bindparam("k_department"))
    read = sa.select(table.c.period, table.c.upload_id, table.c.figures).where(is_key)
    if dialect == "postgresql":
        read = read.with_for_update()
    insert = _insert(table, dialect).on_conflict_do_nothing().returning(table.c.upload_id)
    update = sa.update(table).where(is_key).values(period=sa.bindparam("new_period"),
                                                   upload_id=sa.bindparam("new_upload_id"),
                                                   figures=sa.bindparam("new_figures", type_=table.c.figures.type))
    return read, insert, update


def _records_in(document) -> list[dict]:
    if isinstance(document, list):
        return [r for r in document if isinstance(r, dict)]
    if isinstance(document, dict):
        lists = [v for v in document.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        return lists[0] if lists else [document]
    return []


def _indicator_records(upload: Upload, fields, plaintext: str | None) -> list[dict]:
    """The records whose values count: none for a withdrawal; the rows, or what was sent when the rows
    are HIS-side (without the interface's field names)."""
    if upload.operation == "delete":
        return []
    records = _records_in(upload.rows)
    names = {name for name, _, _ in fields}
    if records and not names & set(records[0]) and plaintext:
        try:
            return _records_in(json.loads(plaintext))
        except ValueError:
            return records
    return records


def _as_number(value) -> float | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def figures(records: Iterable[dict], fields) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for record in records:
        for name, _, _ in fields:
            value = _as_number(record.get(name))
            if value is not None:
                total = out.setdefault(name, [0.0, 0])
                total[0] += value
                total[1] += 1
    return out


# -- rebuilding ----------------------------------------------------------------------------------------

def rebuild(batch: int = 20_000) -> dict[str, int]:
    """Recompute every aggregate from the ledger (uploads and attempts), in one transaction."""
    db.session.execute(sa.delete(StatCounter))
    db.session.execute(sa.delete(StatIndicator))
    # Every settled upload is counted in its status; one being sent stays where it was counted.
    db.session.execute(sa.update(Upload).where(Upload.status != UploadStatus.SENDING)
                       .where(sa.or_(Upload.counted_status.is_(None), Upload.counted_status != Upload.status))
                       .values(counted_status=Upload.status).execution_options(synchronize_session=False))
    deltas: dict[tuple[str, date, str], int] = defaultdict(int)
    days: dict[datetime, date] = {}

    def day_of(moment: datetime) -> date:  # many uploads share a timestamp's hour: cache per hour
        hour = moment.replace(minute=0, second=0, microsecond=0)
        if hour not in days:
            days[hour] = local_day(hour)
        return days[hour]

    uploads = 0
    query = sa.select(Upload.report_type, Upload.created_at, Upload.counted_status) \
        .where(Upload.counted_status.is_not(None))
    for report_type, created_at, status in db.session.execute(query.execution_options(yield_per=batch)):
        deltas[(report_type, day_of(created_at), status_metric(status))] += 1
        uploads += 1
    attempts = 0
    query = (sa.select(Upload.report_type, Attempt.started_at, Attempt.duration_ms, Attempt.outcome)
             .join(Upload, Upload.id == Attempt.upload_id).where(Attempt.outcome.in_(ATTEMPT_OUTCOMES)))
    for report_type, started_at, duration_ms, outcome in db.session.execute(query.execution_options(yield_per=batch)):
        _attempt_deltas(deltas, report_type, started_at, duration_ms, outcome)
        attempts += 1
    counters = add_counters_bulk(deltas, batch)
    indicators = _rebuild_indicators(batch)
    db.session.commit()
    return {"uploads": uploads, "attempts": attempts, "counters": counters, "indicators": indicators}


def add_counters_bulk(deltas: dict[tuple[str, date, str], int], batch: int) -> int:
    """Insert counters that do not exist yet (a rebuild), in batches."""
    rows = [dict(report_type=rt, day=day, metric=metric, value=value)
            for (rt, day, metric), value in deltas.items() if value]
    for start in range(0, len(rows), batch):
        db.session.execute(sa.insert(StatCounter), rows[start:start + batch])
    return len(rows)


def needs_rebuild() -> bool:
    """Are there settled uploads the aggregates have never counted?"""
    return db.session.execute(
        sa.select(Upload.id).where(Upload.counted_status.is_(None), Upload.status != UploadStatus.SENDING).limit(1)
    ).first() is not None


def _rebuild_indicators(batch: int) -> int:
    from core.plugins import registry

    written = 0
    for report_type in sorted(registry().report_types):
        fields = numeric_fields(report_type)
        if not fields:
            continue
        names = {name for name, _, _ in fields}
        chosen: dict[tuple[date, str], tuple[str, int, list[dict]]] = {}
        query = (sa.select(Upload.id, Upload.period, Upload.department, Upload.rows, Upload.created_at,
                           Upload.operation)
                 .where(Upload.report_type == report_type, Upload.status == UploadStatus.SUCCEEDED))
        for row in db.session.execute(query.execution_options(yield_per=batch)):
            day = period_day(row.period, row.created_at)
            if day is None:
                continue
            key = (day, row.department or "")
            if key in chosen and (chosen[key][0], chosen[key][1]) > (row.period or "", row.id):
                continue
            chosen[key] = (row.period or "", row.id, [] if row.operation == "delete" else _records_in(row.rows))
        missing = [uid for _, uid, records in chosen.values() if records and not names & set(records[0])]
        sent = _sent_records(missing)
        rows = [dict(report_type=report_type, day=day, department=department, period=period, upload_id=uid,
                     figures=figures(sent.get(uid, records), fields))
                for (day, department), (period, uid, records) in chosen.items()]
        totals: dict[tuple[str, date, str], int] = defaultdict(int)
        for row in rows:
            indicator_deltas(totals, report_type, row["day"], row["figures"], +1)
        for start in range(0, len(rows), batch):
            db.session.execute(sa.insert(StatIndicator), rows[start:start + batch])
        add_counters_bulk(totals, batch)
        written += len(rows)
    return written


def _sent_records(upload_ids: list[int]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for start in range(0, len(upload_ids), 500):
        rows = db.session.execute(
            sa.select(Attempt.upload_id, Attempt.plaintext)
            .where(Attempt.upload_id.in_(upload_ids[start:start + 500]), Attempt.outcome == "success")
            .order_by(Attempt.number)
        ).all()
        for upload_id, plaintext in rows:
            try:
                out[upload_id] = _records_in(json.loads(plaintext or ""))
            except ValueError:
                continue
    return out


def snapshot() -> tuple[dict[tuple[str, date, str], int], dict[tuple[str, date, str], tuple]]:
    """The aggregates as plain data (for comparing the incremental ones with a rebuild)."""
    counters = {(c.report_type, c.day, c.metric): c.value
                for c in db.session.execute(sa.select(StatCounter.__table__)) if c.value}
    indicators = {(i.report_type, i.day, i.department): (i.period, i.upload_id, i.figures)
                  for i in db.session.execute(sa.select(StatIndicator.__table__))}
    return counters, indicators


def optimize_planner(*, full: bool = False) -> None:
    """Give the query planner fresh statistics (SQLite has none until ANALYZE): ``full`` after init-db,
    else SQLite's ``PRAGMA optimize`` (cheap: re-analyses only tables that changed a lot). PostgreSQL's
    autovacuum analyses by itself; ``full`` runs ANALYZE there too."""
    dialect = db.session.get_bind().dialect.name
    db.session.commit()
    if dialect == "sqlite":
        db.session.execute(sa.text("PRAGMA analysis_limit=1000"))  # sampled: fast at any size
        db.session.execute(sa.text("ANALYZE" if full else "PRAGMA optimize=0x10002"))
    elif dialect == "postgresql" and full:
        db.session.execute(sa.text("ANALYZE"))
    db.session.commit()


def optimize_planner_hourly() -> bool:
    """``optimize_planner`` at most once an hour across every process (the sweep job calls it)."""
    from core.queue import connection

    try:
        if not connection().set("baosong:planner-optimized", "1", nx=True, ex=3600):
            return False
    except Exception:  # no Redis: the next sweep tries again
        return False
    try:
        optimize_planner()
    except Exception:  # e.g. SQLite busy: let the next sweep try again instead of waiting an hour
        connection().delete("baosong:planner-optimized")
        raise
    return True
