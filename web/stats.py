"""统计分析: daily and monthly trends of the key indicators sent, upload volumes, and success rate and
latency per regulator. Every chart has its table.

Every figure is read from the aggregates ``core.aggregates`` keeps in step with the ledger (one row per
report type × day, and × department for indicators), so a view costs the same in a hospital's tenth year
as in its first: a 365-day view reads at most 365 rows per series, never the uploads or attempts.

Indicators are the numeric fields of the report type's schema. An hourly report sends the day's running
totals, so a day's value is the latest succeeded upload for that day (per department, then summed over
departments); a month adds its days up. Ratio-like fields (type number/decimal, e.g. average CMI) are
averaged instead of summed.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from statistics import mean

import sqlalchemy as sa
from flask import Blueprint, render_template, request

from core import clock
from core.aggregates import (
    AVERAGED_TYPES,
    INDICATOR_SCALE,
    LATENCY_BOUNDS_MS,
    StatCounter,
    numeric_fields,
    period_day,
    status_metric,
)
from core.db import db
from core.models import UploadStatus
from core.plugins import registry
from web.helpers import regulator_of, regulator_title, report_type_title

__all__ = ["bp", "chart_spec", "numeric_fields", "period_day"]

bp = Blueprint("stats", __name__, url_prefix="/stats")
RANGES = {"7": "近 7 天", "30": "近 30 天", "90": "近 90 天", "365": "近一年"}
PALETTE = ["#1366d6", "#1a7f37", "#c62828", "#b26a00", "#6f42c1", "#0b7285", "#5c6f82", "#d6336c"]
VOLUME_BUCKETS = {
    UploadStatus.SUCCEEDED: "成功",
    UploadStatus.FAILED: "失败", UploadStatus.REJECTED: "失败", UploadStatus.RETRY_WAIT: "失败",
}
ATTEMPT_METRICS = ("attempts", "attempts_ok", "latency_n", "latency_sum", "latency_max",
                   *(f"latency_le:{b}" for b in (*LATENCY_BOUNDS_MS, "inf")))


def _range(days: int) -> tuple[date, date]:
    today = clock.local_now().date()
    return today - timedelta(days=days - 1), today


def _day_labels(first: date, last: date) -> list[str]:
    return [f"{first + timedelta(days=i):%Y-%m-%d}" for i in range((last - first).days + 1)]


def indicator_table(report_type: str, days: int, granularity: str) -> tuple[list[str], dict[str, dict[str, float]]]:
    """(period labels, {field: {label: value}}) for the report type's numeric fields."""
    fields = numeric_fields(report_type)
    if not fields:
        return [], {}
    first, today = _range(days)
    kinds = {name: kind for name, _, kind in fields}
    # Per day: {field: [sum, n]} over every department's latest succeeded upload of that day.
    metrics = {f"ind_sum:{name}": (name, 0) for name in kinds} | {f"ind_n:{name}": (name, 1) for name in kinds}
    per_day: dict[date, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    rows = db.session.execute(
        sa.select(StatCounter.day, StatCounter.metric, StatCounter.value)
        .where(StatCounter.report_type == report_type, StatCounter.day >= first, StatCounter.day <= today,
               StatCounter.metric.in_(metrics))
    )
    for day, metric, value in rows:
        name, part = metrics[metric]
        per_day[day][name][part] += value / INDICATOR_SCALE if part == 0 else value

    def daily_value(name: str, total: float, n: int) -> float:
        return round(total / n, 4) if kinds[name] in AVERAGED_TYPES else round(total, 4)

    daily = {day: {n: daily_value(n, t, c) for n, (t, c) in values.items() if c}
             for day, values in per_day.items()}
    if granularity == "month":
        buckets: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for day, values in daily.items():
            for name, value in values.items():
                buckets[f"{day:%Y-%m}"][name].append(value)
        table = {label: {n: round(mean(v), 4) if kinds[n] in AVERAGED_TYPES else sum(v) for n, v in values.items()}
                 for label, values in buckets.items()}
        labels = sorted({f"{first + timedelta(days=i):%Y-%m}" for i in range((today - first).days + 1)})
    else:
        table = {f"{day:%Y-%m-%d}": values for day, values in daily.items()}
        labels = _day_labels(first, today)
    return labels, {name: {label: table[label][name] for label in table if name in table[label]} for name in kinds}


def _period(granularity: str):
    """The label a counter row is summed under, computed by the database: its day, or its month
    ("YYYY-MM", the first 7 characters of the ISO date on SQLite and PostgreSQL alike)."""
    if granularity == "month":
        return sa.func.substr(sa.cast(StatCounter.day, sa.String), 1, 7)
    return StatCounter.day


def _label(value) -> str:
    return value if isinstance(value, str) else f"{value:%Y-%m-%d}"


def _labels(first: date, last: date, granularity: str) -> list[str]:
    if granularity == "month":
        return sorted({f"{first + timedelta(days=i):%Y-%m}" for i in range((last - first).days + 1)})
    return _day_labels(first, last)


def volume_table(report_type: str, days: int, granularity: str = "day") -> tuple[list[str], dict[str, dict[str, int]]]:
    """Uploads per day (or month) they were recorded, by outcome: succeeded, failed, other."""
    first, today = _range(days)
    series: dict[str, dict[str, int]] = {"成功": {}, "失败": {}, "其他": {}}
    metrics = {status_metric(s): VOLUME_BUCKETS.get(s, "其他") for s in UploadStatus.ALL}
    period = _period(granularity)
    query = (sa.select(period, StatCounter.metric, sa.func.sum(StatCounter.value))
             .where(StatCounter.metric.in_(metrics), StatCounter.day >= first, StatCounter.day <= today)
             .group_by(StatCounter.metric, period))
    if report_type:
        query = query.where(StatCounter.report_type == report_type)
    for value_period, metric, value in db.session.execute(query):
        if value:
            bucket = series[metrics[metric]]
            label = _label(value_period)
            bucket[label] = bucket.get(label, 0) + int(value)
    return _labels(first, today, granularity), series


def _histogram_percentile(buckets: dict[str, int], fraction: float, maximum: int) -> int:
    """The upper bound of the bucket holding the given fraction of attempts (at most the maximum)."""
    total = sum(buckets.values())
    if not total:
        return 0
    seen = 0
    for bound in (*LATENCY_BOUNDS_MS, "inf"):
        seen += buckets.get(f"latency_le:{bound}", 0)
        if seen >= fraction * total:
            return maximum if bound == "inf" else min(bound, maximum)
    return maximum


def regulator_table(days: int, granularity: str = "day") -> tuple[list[dict], list[str], dict[str, dict[str, float]]]:
    """Per regulator: attempts, success rate, latency (avg/p95/max); and the daily (monthly) success rate."""
    first, today = _range(days)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    daily: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    in_range = (StatCounter.day >= first, StatCounter.day <= today)
    rows = db.session.execute(
        sa.select(StatCounter.report_type, StatCounter.metric, sa.func.sum(StatCounter.value),
                  sa.func.max(StatCounter.value))
        .where(StatCounter.metric.in_(ATTEMPT_METRICS), *in_range)
        .group_by(StatCounter.metric, StatCounter.report_type)  # the order of ix_stat_counters_metric
    )
    for report_type, metric, total, maximum in rows:
        values = totals[regulator_of(report_type)]
        if metric == "latency_max":
            values[metric] = max(values[metric], int(maximum or 0))
        else:
            values[metric] += int(total or 0)
    period = _period(granularity)
    rows = db.session.execute(
        sa.select(StatCounter.report_type, period, StatCounter.metric, sa.func.sum(StatCounter.value))
        .where(StatCounter.metric.in_(("attempts", "attempts_ok")), *in_range)
        .group_by(StatCounter.metric, StatCounter.report_type, period)
    )
    for report_type, value_period, metric, value in rows:
        daily[regulator_of(report_type)][_label(value_period)][0 if metric == "attempts" else 1] += int(value)
    summary = []
    for regulator, values in sorted(totals.items()):
        attempts, ok, timed = values["attempts"], values["attempts_ok"], values["latency_n"]
        if not attempts:
            continue
        maximum = values["latency_max"]
        buckets = {k: v for k, v in values.items() if k.startswith("latency_le:")}
        summary.append(dict(regulator=regulator, title=regulator_title(regulator), attempts=attempts, succeeded=ok,
                            rate=round(ok * 100 / attempts, 1),
                            avg_ms=int(values["latency_sum"] / timed) if timed else 0,
                            p95_ms=_histogram_percentile(buckets, 0.95, maximum), max_ms=maximum))
    rates = {regulator_title(reg): {label: round(v[1] * 100 / v[0], 1) for label, v in per_day.items() if v[0]}
             for reg, per_day in daily.items()}
    return summary, _labels(first, today, granularity), rates


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


def _busiest(candidates: list[tuple[str, str]]) -> str:
    """The default view: the report type with the most indicator figures in the last 30 days (a hospital's
    hourly key data rather than whichever name sorts first), else the first candidate."""
    from core.aggregates import StatIndicator

    if not candidates:
        return ""
    since = clock.local_now().date() - timedelta(days=30)
    counts = dict(db.session.execute(
        sa.select(StatIndicator.report_type, sa.func.count())
        .where(StatIndicator.report_type.in_([name for name, _ in candidates]), StatIndicator.day >= since)
        .group_by(StatIndicator.report_type)).all())
    return max(candidates, key=lambda c: (counts.get(c[0], 0), -candidates.index(c)))[0]


@bp.get("/")
def index():
    candidates = [(name, rt.title) for name, rt in sorted(registry().report_types.items()) if numeric_fields(name)]
    report_type = request.args.get("report_type") or _busiest(candidates)
    days_key = request.args.get("days") if request.args.get("days") in RANGES else "30"
    days = int(days_key)
    granularity = "month" if request.args.get("granularity") == "month" else "day"
    fields = numeric_fields(report_type)
    titles = {name: title for name, title, _ in fields}
    chosen = [f for f in request.args.getlist("indicator") if f in titles] or [n for n, _, _ in fields[:3]]
    labels, table = indicator_table(report_type, days, granularity) if report_type else ([], {})
    volume_labels, volume = volume_table(report_type, days, granularity)
    summary, rate_labels, rates = regulator_table(days, granularity)
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
