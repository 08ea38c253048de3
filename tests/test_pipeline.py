"""The upload pipeline end to end with the echo test plugin, a real HTTP regulator and real RQ."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from echo_regulator import EchoPlugin

from core import pipeline
from core.db import db
from core.hook_types import ReportType
from core.hookspecs import hookimpl
from core.models import Attempt, Upload, UploadStatus
from core.scheduler import run_slot

SHANGHAI = ZoneInfo("Asia/Shanghai")
SLOT = datetime(2025, 2, 17, 8, 0, tzinfo=SHANGHAI)


def only_upload() -> Upload:
    return db.session.execute(sa.select(Upload)).scalar_one()


def test_a_planned_upload_is_sent_by_a_real_worker_and_recorded(echo, work):
    ids = run_slot("echo.hourly", SLOT)
    assert len(ids) == 1
    assert only_upload().status == UploadStatus.PENDING  # durable before anything is sent

    work()

    upload = only_upload()
    assert upload.status == UploadStatus.SUCCEEDED
    assert upload.result == {"receipt": f"R-{upload.idempotency_key[:8]}"}
    [attempt] = upload.attempt_list
    assert attempt.http_status == 200 and attempt.outcome == "success"
    assert attempt.url == f"{echo.url}/report"
    assert '"n": 8' in attempt.plaintext
    assert attempt.duration_ms is not None
    assert list(echo.state["records"]) == [upload.idempotency_key]


def test_planning_the_same_slot_twice_creates_nothing_new(echo):
    assert len(run_slot("echo.hourly", SLOT, enqueue=False)) == 1
    assert run_slot("echo.hourly", SLOT, enqueue=False) == []
    assert db.session.scalar(sa.select(sa.func.count(Upload.id))) == 1


def test_a_rejection_is_recorded_with_the_regulators_message_and_not_retried(echo):
    echo.state["mode"] = "reject"
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)

    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED

    upload = only_upload()
    assert (upload.last_code, upload.last_message) == ("400", "n 字段取值错误")
    assert upload.next_retry_at is None
    assert pipeline.sweep()["retried"] == 0


def test_a_second_runner_cannot_claim_an_attempt_already_taken(echo):
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED
    assert pipeline.attempt(upload_id, 0) == "skipped"
    assert len(echo.state["requests"]) == 1


def test_secrets_never_reach_attempt_records_or_logs(echo, caplog):
    caplog.set_level(logging.DEBUG)
    echo.state["mode"] = "fail"
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    pipeline.attempt(upload_id, 0)

    attempt = db.session.execute(sa.select(Attempt)).scalar_one()
    recorded = " ".join(str(getattr(attempt, c.name)) for c in Attempt.__table__.columns)
    assert echo.token not in recorded
    assert attempt.headers["X-Token"].startswith("to****")
    assert echo.token not in caplog.text
    stored = db.session.execute(sa.text("select value from regulator_settings where key='token'")).scalar()
    assert echo.token not in stored and stored.startswith("enc:")


def test_a_report_type_the_documents_do_not_define_refuses_to_send(echo, registry_with):
    from echo_regulator import EchoPlugin

    class Undefined(EchoPlugin):
        from core.hookspecs import hookimpl

        @hookimpl
        def register_report_types(self):
            return [ReportType(name="echo.hourly", title="未定义", regulator="echo", available=False,
                               unavailable_reason="缺少接口规范")]

    registry_with(Undefined())
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    assert "缺少接口规范" in only_upload().last_message
    assert echo.state["requests"] == []


def test_a_plugin_error_is_kept_with_its_traceback_for_the_admin(echo, registry_with):
    from echo_regulator import EchoPlugin

    from core.hookspecs import hookimpl

    class Broken(EchoPlugin):
        @hookimpl
        def build_payload(self, upload):
            raise KeyError("clinicPersonTimes")

    registry_with(Broken())
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT
    attempt = db.session.execute(sa.select(Attempt)).scalar_one()
    assert "KeyError" in attempt.message and "build_payload" in attempt.traceback
    assert echo.state["requests"] == []


class _BuildHook(EchoPlugin):
    """The echo plugin with something done while an attempt's request is being built."""

    def __init__(self, during_build):
        super().__init__()
        self.during_build = during_build
        self.built: list[int] = []

    @hookimpl
    def build_payload(self, upload):
        self.built.append(upload.rows[0]["n"])
        self.during_build(upload, len(self.built))
        return EchoPlugin.build_payload(self, upload)


def _elsewhere(statement) -> None:
    """Run a statement on a connection of its own and commit it, as another process would."""
    with db.engine.begin() as connection:
        connection.execute(statement)


def test_an_upload_edited_while_its_request_is_built_is_built_again_from_the_edit_and_sent_once(
        echo, registry_with):
    def edit_once(upload, builds):
        if builds == 1:
            _elsewhere(sa.update(Upload).where(Upload.id == upload.id).values(rows=[{"n": 99}]))

    plugin = _BuildHook(edit_once)
    registry_with(plugin)
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)

    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED

    assert plugin.built == [8, 99]  # the first build was from the row before the edit: never sent
    upload = only_upload()
    [attempt] = upload.attempt_list
    assert upload.attempts == 1 and attempt.number == 1
    assert '"n": 99' in attempt.plaintext
    assert [r["n"] for r in echo.state["records"].values()] == [99]


def test_an_upload_another_worker_took_while_its_request_was_built_is_left_to_that_worker(
        echo, registry_with):
    # The other worker's take committed (its attempt 1, the upload SENDING) while ours was building:
    # our compare-and-set finds the row changed, nothing of ours is committed and nothing is sent.
    def taken_elsewhere(upload, builds):
        if builds == 1:
            _elsewhere(sa.insert(Attempt).values(upload_id=upload.id, number=1, worker="other:1", headers={},
                                                 started_at=datetime(2025, 2, 17, 0, 1)))
            _elsewhere(sa.update(Upload).where(Upload.id == upload.id)
                       .values(status=UploadStatus.SENDING, attempts=1))

    registry_with(_BuildHook(taken_elsewhere))
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)

    assert pipeline.attempt(upload_id, 0) == "skipped"

    db.session.expire_all()
    upload = only_upload()
    assert (upload.status, upload.attempts) == (UploadStatus.SENDING, 1)
    assert [a.worker for a in upload.attempt_list] == ["other:1"]
    assert echo.state["requests"] == []


def test_a_worker_that_dies_while_building_leaves_the_upload_runnable_and_nothing_recorded(
        echo, registry_with, redis_conn):
    seen = {}

    def die(upload, builds):
        with db.engine.connect() as connection:  # what the ledger holds at that moment, seen from outside
            seen["status"] = connection.scalar(sa.select(Upload.status).where(Upload.id == upload.id))
            seen["attempts"] = connection.scalar(sa.select(sa.func.count(Attempt.id)))
        raise SystemExit("killed")  # not an Exception: nothing in the pipeline handles it, as with SIGKILL

    registry_with(_BuildHook(die))
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)

    try:
        pipeline.attempt(upload_id, 0)
    except SystemExit:
        db.session.rollback()
    assert seen == {"status": UploadStatus.PENDING, "attempts": 0}
    upload = only_upload()
    assert (upload.status, upload.attempts, upload.attempt_list) == (UploadStatus.PENDING, 0, [])
    redis_conn.flushdb()  # the job died with the worker
    later = datetime.now(SHANGHAI) + timedelta(minutes=2)
    assert pipeline.sweep(later)["requeued"] == 1  # the ledger owes it: enqueued again
