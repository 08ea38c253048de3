"""Prometheus metrics (GET /metrics), computed from the ledger and Redis at scrape time, so every
figure is the same whichever admin process answers and survives restarts (no per-process counters).
Totals over all history (uploads by status, the latency histogram) come from the statistics aggregates
(``core.aggregates``), kept in the ledger's transactions, so a scrape costs the same in the tenth year;
the rest are indexed reads of what is in flight.

    baosong_uploads{report_type,status}                 uploads in the ledger
    baosong_retry_backlog                               uploads waiting for an automatic retry
    baosong_oldest_pending_age_seconds                  age of the oldest pending upload (0: none)
    baosong_oldest_retry_age_seconds                    age of the oldest upload waiting for a retry
    baosong_queue_depth{queue}                          RQ jobs waiting
    baosong_workers_alive                               RQ workers with a live heartbeat
    baosong_scheduler_leader                            1 when a scheduler holds the leader lease
    baosong_scheduler_last_tick_age_seconds             seconds since the periodic tick ran (-1: never)
    baosong_attempt_duration_seconds{regulator}         histogram of attempt latency
    baosong_missed_slots{report_type,reason}            slots skipped by catch-up or failed to plan
    baosong_database_up, baosong_redis_up               1 when the database / Redis answers
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from core import clock
from core.aggregates import LATENCY_BOUNDS_MS, StatCounter, status_metric
from core.db import db
from core.models import Slot, Upload, UploadStatus
from core.plugins import registry

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The aggregates' latency buckets: regulators answer in tens of milliseconds to tens of seconds.
_BUCKET_METRICS = tuple(f"latency_le:{bound}" for bound in LATENCY_BOUNDS_MS) + ("latency_le:inf",)
_STATUS_METRICS = {status_metric(status): status for status in UploadStatus.ALL if status != UploadStatus.SENDING}


def _age_seconds(moment) -> float:
    if moment is None:
        return 0.0
    return max(0.0, (clock.now() - clock.from_db(moment)).total_seconds())


def _regulator_of(report_type: str) -> str:
    declared = registry().report_types.get(report_type)
    return declared.regulator if declared else report_type.split(".")[0]


class LedgerCollector:
    """A prometheus_client collector reading the ledger (and Redis) on every scrape."""

    def collect(self):
        yield from self._ledger()
        yield from self._redis()

    def _ledger(self):
        up = GaugeMetricFamily("baosong_database_up", "1 when the database answers")
        try:
            totals = self._totals()
        except Exception:
            db.session.rollback()
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        uploads = GaugeMetricFamily("baosong_uploads", "Uploads in the ledger by report type and status",
                                    labels=["report_type", "status"])
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for (report_type, metric), value in totals.items():
            if metric in _STATUS_METRICS:
                counts[(report_type, _STATUS_METRICS[metric])] += value
        # An upload being sent stays counted in its previous status until its attempt finishes.
        for report_type, counted_status, count in db.session.execute(
                sa.select(Upload.report_type, Upload.counted_status, sa.func.count())
                .where(Upload.status == UploadStatus.SENDING)
                .group_by(Upload.report_type, Upload.counted_status)).all():
            counts[(report_type, UploadStatus.SENDING)] += count
            if counted_status:
                counts[(report_type, counted_status)] -= count
        for (report_type, status), count in sorted(counts.items()):
            if count:
                uploads.add_metric([report_type, status], count)
        yield uploads
        backlog = db.session.scalar(sa.select(sa.func.count()).select_from(Upload)
                                    .where(Upload.status == UploadStatus.RETRY_WAIT))
        yield GaugeMetricFamily("baosong_retry_backlog", "Uploads waiting for an automatic retry", value=backlog)
        for status, name, text in ((UploadStatus.PENDING, "pending", "pending upload"),
                                   (UploadStatus.RETRY_WAIT, "retry", "upload waiting for a retry")):
            oldest = db.session.scalar(sa.select(sa.func.min(Upload.created_at)).where(Upload.status == status))
            yield GaugeMetricFamily(f"baosong_oldest_{name}_age_seconds", f"Age of the oldest {text} (0: none)",
                                    value=round(_age_seconds(oldest), 3))
        yield self._latency(totals)
        missed = GaugeMetricFamily("baosong_missed_slots", "Slots skipped by the catch-up policy or failed to plan",
                                   labels=["report_type", "reason"])
        for report_type, status, count in db.session.execute(
                sa.select(Slot.report_type, Slot.status, sa.func.count())
                .where(Slot.status.in_(("skipped", "error"))).group_by(Slot.report_type, Slot.status)).all():
            missed.add_metric([report_type, status], count)
        yield missed

    @staticmethod
    def _totals() -> dict[tuple[str, str], int]:
        """Each report type's all-time sum of the status and latency counters (one indexed query)."""
        metrics = (*_STATUS_METRICS, *_BUCKET_METRICS, "latency_n", "latency_sum")
        rows = db.session.execute(
            sa.select(StatCounter.report_type, StatCounter.metric, sa.func.sum(StatCounter.value))
            .where(StatCounter.metric.in_(metrics)).group_by(StatCounter.metric, StatCounter.report_type)).all()
        return {(report_type, metric): int(value or 0) for report_type, metric, value in rows}

    @staticmethod
    def _latency(totals: dict[tuple[str, str], int]) -> HistogramMetricFamily:
        """The aggregates' latency buckets per report type, summed per regulator and made cumulative."""
        per_regulator: dict[str, list[int]] = defaultdict(lambda: [0] * (len(_BUCKET_METRICS) + 2))
        columns = {metric: i for i, metric in enumerate((*_BUCKET_METRICS, "latency_n", "latency_sum"))}
        for (report_type, metric), value in totals.items():
            if metric in columns:
                per_regulator[_regulator_of(report_type)][columns[metric]] += value
        family = HistogramMetricFamily("baosong_attempt_duration_seconds", "Attempt latency per regulator",
                                       labels=["regulator"])
        for regulator, figures in sorted(per_regulator.items()):
            count, total_ms = figures[-2], figures[-1]
            if not count:
                continue
            buckets, running = [], 0
            for bound, in_bucket in zip(LATENCY_BOUNDS_MS, figures[:len(LATENCY_BOUNDS_MS)], strict=True):
                running += in_bucket
                buckets.append((str(bound / 1000), running))
            buckets.append(("+Inf", count))
            family.add_metric([regulator], buckets, total_ms / 1000)
        return family

    def _redis(self):
        from core import health
        from core.queue import queues

        up = GaugeMetricFamily("baosong_redis_up", "1 when Redis answers")
        try:
            conn = health.redis_connection()
            conn.ping()
            depth = GaugeMetricFamily("baosong_queue_depth", "RQ jobs waiting", labels=["queue"])
            for q in queues():
                depth.add_metric([q.name], conn.llen(q.key))
            leader, _ttl = health.scheduler_leader(conn)
            age = health.last_tick_age(conn)
            workers = health.workers_alive(conn)
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield depth
        yield GaugeMetricFamily("baosong_workers_alive", "RQ workers with a live heartbeat", value=workers)
        yield GaugeMetricFamily("baosong_scheduler_leader", "1 when a scheduler holds the leader lease",
                                value=1 if leader else 0)
        yield GaugeMetricFamily("baosong_scheduler_last_tick_age_seconds",
                                "Seconds since the periodic tick ran (-1: never)",
                                value=-1 if age is None else round(age, 3))


def render() -> bytes:
    """The Prometheus text exposition of every metric above."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(LedgerCollector())
    return generate_latest(reg)
