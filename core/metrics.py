"""Prometheus metrics (GET /metrics), computed from the ledger and Redis at scrape time, so every
figure is the same whichever admin process answers and survives restarts (no per-process counters).

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
from core.db import db
from core.models import Attempt, Slot, Upload, UploadStatus
from core.plugins import registry

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Attempt latency buckets (seconds): regulators answer in tens of milliseconds to tens of seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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
            rows = db.session.execute(
                sa.select(Upload.report_type, Upload.status, sa.func.count()).group_by(Upload.report_type,
                                                                                     Upload.status)).all()
        except Exception:
            db.session.rollback()
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        uploads = GaugeMetricFamily("baosong_uploads", "Uploads in the ledger by report type and status",
                                    labels=["report_type", "status"])
        backlog = 0
        for report_type, status, count in rows:
            uploads.add_metric([report_type, status], count)
            if status == UploadStatus.RETRY_WAIT:
                backlog += count
        yield uploads
        yield GaugeMetricFamily("baosong_retry_backlog", "Uploads waiting for an automatic retry", value=backlog)
        for status, name, text in ((UploadStatus.PENDING, "pending", "pending upload"),
                                   (UploadStatus.RETRY_WAIT, "retry", "upload waiting for a retry")):
            oldest = db.session.scalar(sa.select(sa.func.min(Upload.created_at)).where(Upload.status == status))
            yield GaugeMetricFamily(f"baosong_oldest_{name}_age_seconds", f"Age of the oldest {text} (0: none)",
                                    value=round(_age_seconds(oldest), 3))
        yield self._latency()
        missed = GaugeMetricFamily("baosong_missed_slots", "Slots skipped by the catch-up policy or failed to plan",
                                   labels=["report_type", "reason"])
        for report_type, status, count in db.session.execute(
                sa.select(Slot.report_type, Slot.status, sa.func.count())
                .where(Slot.status.in_(("skipped", "error"))).group_by(Slot.report_type, Slot.status)).all():
            missed.add_metric([report_type, status], count)
        yield missed

    def _latency(self) -> HistogramMetricFamily:
        """Bucket counts per report type in one grouped query, then summed per regulator."""
        seconds = Attempt.duration_ms / 1000.0
        columns = [sa.func.sum(sa.case((seconds <= bound, 1), else_=0)) for bound in LATENCY_BUCKETS]
        rows = db.session.execute(
            sa.select(Upload.report_type, *columns, sa.func.count(), sa.func.sum(seconds))
            .select_from(Attempt).join(Upload, Upload.id == Attempt.upload_id)
            .where(Attempt.duration_ms.is_not(None))
            .group_by(Upload.report_type)).all()
        per_regulator: dict[str, list[float]] = defaultdict(lambda: [0.0] * (len(LATENCY_BUCKETS) + 2))
        for report_type, *figures in rows:
            totals = per_regulator[_regulator_of(report_type)]
            for i, figure in enumerate(figures):
                totals[i] += float(figure or 0)
        family = HistogramMetricFamily("baosong_attempt_duration_seconds", "Attempt latency per regulator",
                                       labels=["regulator"])
        for regulator, totals in sorted(per_regulator.items()):
            count, total = totals[-2], totals[-1]
            buckets = [(str(bound), totals[i]) for i, bound in enumerate(LATENCY_BUCKETS)] + [("+Inf", count)]
            family.add_metric([regulator], buckets, total)
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
