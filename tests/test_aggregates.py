"""The statistics aggregates equal the ledger: kept in the same transaction as each status change
(including retry -> succeeded, manual retry, cancel and crash recovery), and `stats rebuild` gives the
same figures from the ledger alone."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from core import aggregates, clock, ledger, pipeline, settings
from core.db import db
from core.models import Attempt, Upload, UploadStatus
from core.scheduler import run_slot

T0 = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai: the run crosses a local midnight


def ledger_status_counts() -> Counter:
    """uploads:<status> per (report type, local day) straight from the ledger."""
    counts: Counter = Counter()
    for upload in db.session.execute(sa.select(Upload)).scalars():
        status = upload.counted_status if upload.status == UploadStatus.SENDING else upload.status
        counts[(upload.report_type, aggregates.local_day(upload.created_at), f"uploads:{status}")] += 1
    return counts


def counter_part(counters: dict, prefix: str) -> dict:
    return {k: v for k, v in counters.items() if k[2].startswith(prefix)}


def plan(hour: int) -> int:
    [upload_id] = run_slot("echo.hourly", datetime(2025, 3, 1, hour, tzinfo=UTC), enqueue=False)
    return upload_id


def fetch(upload_id: int) -> Upload:
    db.session.expire_all()
    return db.session.get(Upload, upload_id)


def run_faulty_history(echo, die_after_taking) -> dict[str, int]:
    """Uploads through every transition: success, retry then success, retries exhausted, reject,
    manual retry of a rejection, cancel, and a worker killed mid-send recovered by the sweep."""
    clock.freeze(T0)
    settings.set_flag("retry_max", "2")
    db.session.commit()
    ids = {name: plan(hour) for hour, name in enumerate(
        ["ok", "retry_then_ok", "exhausted", "rejected", "rejected_then_ok", "cancelled", "crashed", "pending"])}
    assert pipeline.attempt(ids["ok"], 0) == UploadStatus.SUCCEEDED

    echo.state["mode"] = "fail"
    assert pipeline.attempt(ids["retry_then_ok"], 0) == UploadStatus.RETRY_WAIT
    assert pipeline.attempt(ids["exhausted"], 0) == UploadStatus.RETRY_WAIT
    assert pipeline.attempt(ids["cancelled"], 0) == UploadStatus.RETRY_WAIT
    clock.freeze(T0 + timedelta(minutes=40))  # the next attempts start on the next local day
    assert pipeline.attempt(ids["exhausted"], 1) == UploadStatus.RETRY_WAIT
    assert pipeline.attempt(ids["exhausted"], 2) == UploadStatus.FAILED
    echo.state["mode"] = "ok"
    assert pipeline.attempt(ids["retry_then_ok"], 1) == UploadStatus.SUCCEEDED

    echo.state["mode"] = "reject"
    assert pipeline.attempt(ids["rejected"], 0) == UploadStatus.REJECTED
    assert pipeline.attempt(ids["rejected_then_ok"], 0) == UploadStatus.REJECTED
    echo.state["mode"] = "ok"
    ledger.mark_for_manual_retry(fetch(ids["rejected_then_ok"]))
    db.session.commit()
    assert pipeline.attempt(ids["rejected_then_ok"], 1) == UploadStatus.SUCCEEDED

    ledger.cancel(fetch(ids["cancelled"]))
    db.session.commit()

    # A worker takes it and dies before answering: the lease expires and the sweep recovers it.
    die_after_taking(ids["crashed"], 0)
    assert fetch(ids["crashed"]).status == UploadStatus.SENDING
    pipeline.sweep(clock.now() + timedelta(minutes=5))
    assert fetch(ids["crashed"]).status == UploadStatus.RETRY_WAIT
    return ids


def test_aggregates_equal_the_ledger_after_a_run_with_faults_retries_and_a_crash(echo, redis_conn, die_after_taking):
    ids = run_faulty_history(echo, die_after_taking)
    db.session.expire_all()
    counters, _ = aggregates.snapshot()

    assert counter_part(counters, "uploads:") == {k: v for k, v in ledger_status_counts().items()}
    statuses = Counter()
    for (_, _, metric), value in counter_part(counters, "uploads:").items():
        statuses[metric.removeprefix("uploads:")] += value
    assert statuses == Counter({UploadStatus.SUCCEEDED: 3, UploadStatus.FAILED: 1, UploadStatus.REJECTED: 1,
                                UploadStatus.CANCELLED: 1, UploadStatus.RETRY_WAIT: 1, UploadStatus.PENDING: 1})
    # Each upload is counted once, whatever it went through.
    assert sum(statuses.values()) == len(ids)

    finished = db.session.execute(sa.select(Attempt).where(Attempt.outcome.in_(aggregates.ATTEMPT_OUTCOMES))).scalars().all()
    attempts = sum(v for k, v in counters.items() if k[2] == "attempts")
    assert attempts == len(finished) == 10
    assert sum(v for k, v in counters.items() if k[2] == "attempts_ok") == 3
    assert sum(v for k, v in counters.items() if k[2] == "latency_sum") == sum(a.duration_ms for a in finished)
    assert sum(v for k, v in counters.items() if k[2].startswith("latency_le:")) == len(finished)
    days = {k[1] for k in counters if k[2] == "attempts"}
    assert len(days) == 2  # attempts counted by the local day they started

    before = aggregates.snapshot()
    result = aggregates.rebuild()
    assert result["uploads"] == len(ids)
    assert aggregates.snapshot() == before


def test_a_rebuild_repairs_aggregates_that_were_lost(echo, redis_conn, die_after_taking):
    run_faulty_history(echo, die_after_taking)
    expected = aggregates.snapshot()
    db.session.execute(sa.delete(aggregates.StatCounter))
    db.session.execute(sa.update(Upload).values(counted_status=None))
    db.session.commit()
    assert aggregates.needs_rebuild()
    aggregates.rebuild()
    assert aggregates.snapshot() == expected
    assert not aggregates.needs_rebuild()


def test_stats_rebuild_command_recomputes_from_the_ledger(echo, redis_conn, database_url, die_after_taking):
    from click.testing import CliRunner

    from core.cli import main

    run_faulty_history(echo, die_after_taking)
    expected = aggregates.snapshot()
    db.session.execute(sa.delete(aggregates.StatCounter))
    db.session.commit()
    db.session.remove()
    answer = CliRunner().invoke(main, ["stats", "rebuild"])
    assert answer.exit_code == 0, answer.output
    assert "已重建统计：8 条上报" in answer.output
    db.session.expire_all()
    assert aggregates.snapshot() == expected


def test_a_latency_lands_in_the_bucket_of_its_upper_bound():
    assert aggregates.bucket_metric(0) == "latency_le:50"
    assert aggregates.bucket_metric(50) == "latency_le:50"
    assert aggregates.bucket_metric(51) == "latency_le:100"
    assert aggregates.bucket_metric(10**6) == "latency_le:inf"


def test_bulk_retry_counts_from_the_aggregates_equal_the_ledger(echo, redis_conn, die_after_taking):
    from web.upload_query import FAILURE_STATUSES, UploadFilter, exact_count

    run_faulty_history(echo, die_after_taking)
    db.session.expire_all()
    uploads = db.session.execute(sa.select(Upload)).scalars().all()
    days = sorted({aggregates.local_day(u.created_at) for u in uploads})
    for flt in (UploadFilter(), UploadFilter(report_type="echo.hourly"), UploadFilter(status="failed"),
                UploadFilter(start=str(days[-1])), UploadFilter(end=str(days[0])),
                UploadFilter(report_type="echo.monthly")):
        expected = sum(1 for u in uploads if u.status in FAILURE_STATUSES
                       and (not flt.report_type or u.report_type == flt.report_type)
                       and (not flt.statuses() or u.status in flt.statuses())
                       and (not flt.start or str(aggregates.local_day(u.created_at)) >= flt.start)
                       and (not flt.end or str(aggregates.local_day(u.created_at)) <= flt.end))
        assert exact_count(flt, failures_only=True) == expected, flt
    assert exact_count(UploadFilter(), failures_only=True) == 3
