"""统计分析: daily and monthly trends of the key indicators sent (from succeeded uploads' rows), upload
volumes, and success rate and latency per regulator (from Attempt.duration_ms). Every chart has its table.

Indicators are the numeric fields of the report type's schema. An hourly report sends the day's running
totals, so a day's value is the latest succeeded upload for that day (per department, then summed over
departments); a month adds its days up. Ratio-like fields (type number/decimal, e.g. average CMI) are
averaged instead of summed.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from statistics import mean

import sqlalchemy as sa
from flask import Blueprint, render_template, request

from core import clock
from core.db import db
from core.models import Attempt, Upload, UploadStatus
from core.plugins import registry
from web.helpers import regulator_of, regulator_title, report_type_title

bp = Blueprint("stats", __name__, url_prefix="/stats")
RANGES = {"7": "近 7 天", "30": "近 30 天", "90": "近 90 天", "365": "近一年"}
SUMMED_TYPES = ("integer",)
AVERAGED_TYPES = ("number", "decimal")
_PERIOD_DATE = re.compile(r"(\d{4})[-/年]?(\d{1,2})(?:[-/月]?(\d{1,2}))?")
PALETTE = ["#1366d6", "#1a7f37", "#c62828", "#b26a00", "#6f42c1", "#0b7285", "#5c6f82", "#d6336c"]


def _range(days: int) -> tuple[date, date, datetime, datetime]:
    tz = clock.default_timezone()
    today = clock.local_now().date()
    first = today - timedelta(days=days - 1)
    return first, today, clock.utc_naive(datetime.combine(first, time(), tz)), \
        clock.utc_naive(datetime.combine(today + timedelta(days=1), time(), tz))


def period_day(period: str, created_at: datetime | None) -> date | None:
    """The business day a period label stands for ("2025/02/17 07:59:59" -> 2025-02-17; "2025-01" -> 1st)."""
    match = _PERIOD_DATE.search(period or "")
    if match:
        try:
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3) or 1))
        except ValueError:
            pass
    if created_at is None:
        return None
    return clock.from_db(created_at).astimezone(clock.default_timezone()).date()


def numeric_fields(report_type: str) -> list[tuple[str, str, str]]:
    declared = registry().report_types.get(report_type)
    schema = getattr(declared, "schema", None)
    if schema is None:
        return []
    return [(f.name, f.title or f.name, f.type) for f in schema.fields if f.type in SUMMED_TYPES + AVERAGED_TYPES]


def _as_number(value) -> float | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _records_in(document) -> list[dict]:
    if isinstance(document, list):
        return [r for r in document if isinstance(r, dict)]
    if isinstance(document, dict):
        lists = [v for v in document.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        return lists[0] if lists else [document]
    return []


def _sent_records(upload_ids: list[int]) -> dict[int, list[dict]]:
    """Records as sent (the successful attempt's plaintext), for uploads whose rows are HIS-side."""
    out: dict[int, list[dict]] = {}
    for start in range(0, len(upload_ids), 500):
        rows = db.session.execute(
            sa.select(Attempt.upload_id, Attempt.plaintext)
            .where(Attempt.upload_id.in_(upload_ids[start:start + 500]), Attempt.outcome == "success")
        ).all()
        for upload_id, plaintext in rows:
            try:
                out[upload_id] = _records_in(json.loads(plaintext or ""))
            except ValueError:
                continue
    return out


def indicator_table(report_type: str, days: int, granularity: str) -> tuple[list[str], dict[str, dict[str, float]]]:
    """(period labels, {field: {label: value}}) for the report type's numeric fields."""
    fields = numeric_fields(report_type)
    if not fields:
        return [], {}
    names = {name for name, _, _ in fields}
    _, _, start_utc, end_utc = _range(days)
    query = (sa.select(Upload.id, Upload.period, Upload.department, Upload.rows, Upload.created_at, Upload.operation)
             .where(Upload.report_type == report_type, Upload.status == UploadStatus.SUCCEEDED,
                    Upload.created_at >= start_utc, Upload.created_at < end_utc)
             .order_by(Upload.id))
    # Per (day, department): the upload with the latest period label (the day's most complete running
    # totals), the latest recorded among equal labels (an update or withdrawal supersedes).
    chosen: dict[tuple[date, str], tuple[str, int, list[dict] | None]] = {}
    for row in db.session.execute(query.execution_options(yield_per=500)):
        day = period_day(row.period, row.created_at)
        if day is None:
            continue
        key = (day, row.department or "")
        if key in chosen and (chosen[key][0], chosen[key][1]) > (row.period or "", row.id):
            continue
        records = None if row.operation == "delete" else _records_in(row.rows)
        chosen[key] = (row.period or "", row.id, records)
    latest = {key: (uid, records) for key, (_, uid, records) in chosen.items()}
    # Rows without the interface's field names: read what was sent instead.
    missing = [uid for uid, records in latest.values() if records and not names & set(records[0])]
    if missing:
        sent = _sent_records(missing)
        latest = {k: (uid, sent.get(uid, records) if uid in sent else records) for k, (uid, records) in latest.items()}
    per_day: dict[date, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (day, _department), (_uid, records) in latest.items():
        for record in records or []:
            for name in names:
                value = _as_number(record.get(name))
                if value is not None:
                    per_day[day][name].append(value)
    kinds = {name: kind for name, _, kind in fields}

    def combine(name: str, values: list[float]) -> float:
        return round(mean(values), 4) if kinds[name] in AVERAGED_TYPES else sum(values)

    daily = {day: {n: combine(n, v) for n, v in values.items()} for day, values in per_day.items()}
    if granularity == "month":
        buckets: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for day, values in daily.items():
            for name, value in values.items():
                buckets[f"{day:%Y-%m}"][name].append(value)
        table = {label: {n: combine(n, v) for n, v in values.items()} for label, values in buckets.items()}
    else:
        table = {f"{day:%Y-%m-%d}": values for day, values in daily.items()}
    labels = _all_labels(days, granularity) or sorted(table)
    return labels, {name: {label: table[label][name] for label in table if name in table[label]} for name in names}


def _all_labels(days: int, granularity: str) -> list[str]:
    """Every day (or month) of the range, so days without data show as gaps, not as missing."""
    first, today, _, _ = _range(days)
    labels = [first + timedelta(days=i) for i in range((today - first).days + 1)]
    if granularity == "month":
        return sorted({f"{d:%Y-%m}" for d in labels})
    return [f"{d:%Y-%m-%d}" for d in labels]


def volume_table(report_type: str, days: int) -> tuple[list[str], dict[str, dict[str, int]]]:
    first, today, start_utc, end_utc = _range(days)
    labels = [f"{first + timedelta(days=i):%Y-%m-%d}" for i in range((today - first).days + 1)]
    tz = clock.default_timezone()
    series: dict[str, dict[str, int]] = {"成功": {}, "失败": {}, "其他": {}}
    query = sa.select(Upload.created_at, Upload.status).where(
        Upload.created_at >= start_utc, Upload.created_at < end_utc)
    if report_type:
        query = query.where(Upload.report_type == report_type)
    for created_at, status in db.session.execute(query.execution_options(yield_per=5000)):
        label = f"{clock.from_db(created_at).astimezone(tz):%Y-%m-%d}"
        bucket = "成功" if status == UploadStatus.SUCCEEDED else \
            "失败" if status in (UploadStatus.FAILED, UploadStatus.REJECTED, UploadStatus.RETRY_WAIT) else "其他"
        series[bucket][label] = series[bucket].get(label, 0) + 1
    return labels, series


def _percentile(values: list[int], fraction: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def regulator_table(days: int) -> tuple[list[dict], list[str], dict[str, dict[str, float]]]:
    """Per regulator: attempts, success rate, latency (avg/p95/max); and the daily success rate."""
    first, today, start_utc, end_utc = _range(days)
    labels = [f"{first + timedelta(days=i):%Y-%m-%d}" for i in range((today - first).days + 1)]
    tz = clock.default_timezone()
    durations: dict[str, list[int]] = defaultdict(list)
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    daily: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    query = (sa.select(Upload.report_type, Attempt.started_at, Attempt.duration_ms, Attempt.outcome)
             .join(Upload, Upload.id == Attempt.upload_id)
             .where(Attempt.started_at >= start_utc, Attempt.started_at < end_utc))
    for report_type, started_at, duration_ms, outcome in db.session.execute(query.execution_options(yield_per=5000)):
        regulator = regulator_of(report_type)
        ok = 1 if outcome == "success" else 0
        totals[regulator][0] += 1
        totals[regulator][1] += ok
        if duration_ms is not None:
            durations[regulator].append(duration_ms)
        day = daily[regulator][f"{clock.from_db(started_at).astimezone(tz):%Y-%m-%d}"]
        day[0] += 1
        day[1] += ok
    summary = []
    for regulator, (attempts, ok) in sorted(totals.items()):
        values = durations[regulator]
        summary.append(dict(regulator=regulator, title=regulator_title(regulator), attempts=attempts, succeeded=ok,
                            rate=round(ok * 100 / attempts, 1) if attempts else 0.0,
                            avg_ms=int(mean(values)) if values else 0, p95_ms=_percentile(values, 0.95),
                            max_ms=max(values) if values else 0))
    rates = {regulator_title(reg): {label: round(v[1] * 100 / v[0], 1) for label, v in per_day.items() if v[0]}
             for reg, per_day in daily.items()}
    return summary, labels, rates


SERIES_COLORS = {"成功": "#1a7f37", "失败": "#c62828", "其他": "#9aa5b1"}


def chart_spec(kind: str, labels: list[str], series: dict[str, dict], *, stacked: bool = False,
           y_title: str = "", right_axis: frozenset[str] = frozenset(), y1_title: str = "") -> dict:
    """A chart spec for static/app.js; series named in ``right_axis`` use a second y axis (ratios next
    to counts)."""
    datasets = []
    for i, (name, values) in enumerate(series.items()):
        color = SERIES_COLORS.get(name, PALETTE[i % len(PALETTE)])
        dataset = {"label": name, "data": [values.get(label) for label in labels], "borderColor": color,
                   "backgroundColor": color, "spanGaps": False, "tension": 0.2, "pointRadius": 2}
        if name in right_axis:
            dataset["yAxisID"] = "y1"
            dataset["borderDash"] = [6, 3]
        datasets.append(dataset)
    # A dict: templates embed it with |tojson (which escapes <, > and &), never as a pre-made string.
    return {"type": kind, "labels": labels, "datasets": datasets, "stacked": stacked,
            "yTitle": y_title, "y1": bool(right_axis & set(series)), "y1Title": y1_title}


@bp.get("/")
def index():
    candidates = [(name, rt.title) for name, rt in sorted(registry().report_types.items()) if numeric_fields(name)]
    report_type = request.args.get("report_type") or (candidates[0][0] if candidates else "")
    days_key = request.args.get("days") if request.args.get("days") in RANGES else "30"
    days = int(days_key)
    granularity = "month" if request.args.get("granularity") == "month" else "day"
    fields = numeric_fields(report_type)
    titles = {name: title for name, title, _ in fields}
    chosen = [f for f in request.args.getlist("indicator") if f in titles] or [n for n, _, _ in fields[:3]]
    labels, table = indicator_table(report_type, days, granularity) if report_type else ([], {})
    volume_labels, volume = volume_table(report_type, days)
    summary, rate_labels, rates = regulator_table(days)
    return render_template(
        "stats.html", candidates=candidates, report_type=report_type, days=days_key, ranges=RANGES,
        granularity=granularity, fields=fields, titles=titles, chosen=chosen, labels=labels, table=table,
        indicator_chart=chart_spec("line", labels, {titles[n]: table.get(n, {}) for n in chosen},
                               right_axis=frozenset(titles[n] for n, _, kind in fields if kind in AVERAGED_TYPES),
                               y1_title="比例/均值（虚线）"),
        volume_labels=volume_labels, volume=volume,
        volume_chart=chart_spec("bar", volume_labels, volume, stacked=True, y_title="上报数"),
        summary=summary, rate_labels=rate_labels, rates=rates,
        rate_chart=chart_spec("line", rate_labels, rates, y_title="成功率 %"),
        title_of=report_type_title,
    )
