"""Retry policy: every 5 minutes, at most 3 times, times kept in the ledger; the stop switch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from core import clock, ledger, pipeline, settings
from core.db import db
from core.models import Upload, UploadStatus
from core.scheduler import run_slot

T0 = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)


def upload() -> Upload:
    db.session.expire_all()
    return db.session.execute(sa.select(Upload)).scalar_one()


def test_a_failure_is_retried_every_five_minutes_three_times_then_stays_failed(echo, work):
    echo.state["mode"] = "fail"
    clock.freeze(T0)
    [upload_id] = run_slot("echo.hourly", T0.astimezone(ZoneInfo("Asia/Shanghai")), enqueue=False)
    pipeline.attempt(upload_id, 0)
    for retry in range(1, 4):
        current = upload()
        assert current.status == UploadStatus.RETRY_WAIT
        due = clock.from_db(current.next_retry_at)
        assert due == clock.now() + timedelta(minutes=5)
        assert pipeline.sweep(due - timedelta(seconds=1))["retried"] == 0  # not early
        clock.freeze(due)
        assert pipeline.sweep()["retried"] == 1
        work()
        assert upload().attempts == retry + 1
    final = upload()
    assert final.status == UploadStatus.FAILED and final.next_retry_at is None
    assert len(echo.state["requests"]) == 4
    clock.freeze(T0 + timedelta(hours=1))
    assert pipeline.sweep()["retried"] == 0


def test_a_person_can_retry_a_failed_upload_and_it_succeeds(echo, work):
    echo.state["mode"] = "fail"
    settings.set_flag("retry_max", "0")
    db.session.commit()
    [upload_id] = run_slot("echo.hourly", datetime(2025, 3, 1, 10, tzinfo=UTC), enqueue=False)
    pipeline.attempt(upload_id, 0)
    assert upload().status == UploadStatus.FAILED

    echo.state["mode"] = "ok"
    current = upload()
    ledger.mark_for_manual_retry(current)
    db.session.commit()
    from core.queue import enqueue_upload

    enqueue_upload(current.id, current.attempts)
    work()
    assert upload().status == UploadStatus.SUCCEEDED


def test_the_interval_and_count_are_settings(echo):
    echo.state["mode"] = "fail"
    settings.set_flag("retry_interval_minutes", "15")
    db.session.commit()
    clock.freeze(T0)
    [upload_id] = run_slot("echo.hourly", T0, enqueue=False)
    pipeline.attempt(upload_id, 0)
    assert clock.from_db(upload().next_retry_at) == T0 + timedelta(minutes=15)


def test_the_stop_switch_holds_automatic_retries_until_released(echo):
    echo.state["mode"] = "fail"
    clock.freeze(T0)
    [upload_id] = run_slot("echo.hourly", T0, enqueue=False)
    pipeline.attempt(upload_id, 0)
    settings.set_flag("auto_retry_stopped", "1")
    db.session.commit()
    later = T0 + timedelta(minutes=30)
    assert pipeline.sweep(later)["retried"] == 0
    assert upload().status == UploadStatus.RETRY_WAIT  # kept, not lost
    settings.set_flag("auto_retry_stopped", "0")
    db.session.commit()
    assert pipeline.sweep(later)["retried"] == 1


def test_a_transport_timeout_marks_the_next_attempt_as_a_resend(echo):
    from core.settings import save_regulator_setting

    save_regulator_setting("echo", "timeout", "0.5")
    db.session.commit()
    echo.state["hang"] = 1.5
    [upload_id] = run_slot("echo.hourly", T0, enqueue=False)
    pipeline.attempt(upload_id, 0)
    current = upload()
    assert current.status == UploadStatus.RETRY_WAIT and current.delivery_uncertain
    echo.state["hang"] = 0
    pipeline.attempt(upload_id, 1)
    assert echo.state["requests"][-1]["resend"] is True
    assert len(echo.state["records"]) == 1  # same requestId: one record at the regulator
