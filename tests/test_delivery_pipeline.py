"""What the pipeline records of how far each attempt got, and what the next attempt is told: a request
that may have arrived is resent idempotently; one that never left is resent as new."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from echo_regulator import EchoPlugin
from test_delivery_transport import RawServer, closes_at_once

from core import ledger, pipeline
from core.db import db
from core.errors import BaosongError
from core.hook_types import TRANSPORT_ANSWERED, TRANSPORT_MAYBE, TRANSPORT_NOT_SENT, Outcome
from core.hookspecs import hookimpl
from core.models import Attempt, RegulatorSetting, Upload, UploadStatus
from core.scheduler import run_slot
from core.settings import save_regulator_setting

SLOT = datetime(2025, 2, 17, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def only_upload() -> Upload:
    db.session.expire_all()
    return db.session.execute(sa.select(Upload)).scalar_one()


def attempts() -> list[Attempt]:
    return list(db.session.execute(sa.select(Attempt).order_by(Attempt.number)).scalars())


def point_echo_at(url: str) -> None:
    save_regulator_setting("echo", "url", url)
    db.session.commit()


class Recording(EchoPlugin):
    """The echo plugin, keeping every context it was handed."""

    def __init__(self):
        super().__init__()
        self.contexts = []

    @hookimpl
    def build_payload(self, upload):
        self.contexts.append(upload)
        return super().build_payload(upload)


def test_a_connection_dropped_after_the_regulator_read_the_request_is_resent_idempotently(echo):
    server = RawServer(closes_at_once)
    try:
        point_echo_at(server.url)
        [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
        assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT
    finally:
        server.close()
    assert len(server.requests) == 1
    first = attempts()[0]
    assert first.delivery == TRANSPORT_MAYBE
    assert only_upload().delivery_uncertain  # before: "连接失败" was taken as never sent

    point_echo_at(f"{echo.url}/report")
    assert pipeline.attempt(upload_id, 1) == UploadStatus.SUCCEEDED
    second = attempts()[1]
    assert second.resend and second.delivery == TRANSPORT_ANSWERED
    assert echo.state["requests"][-1]["resend"] is True


def test_a_refused_connection_is_recorded_as_not_sent_and_resent_as_new(echo):
    with socket_free_port() as port:
        point_echo_at(f"http://127.0.0.1:{port}/report")
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT
    assert attempts()[0].delivery == TRANSPORT_NOT_SENT
    assert not only_upload().delivery_uncertain

    point_echo_at(f"{echo.url}/report")
    assert pipeline.attempt(upload_id, 1) == UploadStatus.SUCCEEDED
    assert attempts()[1].resend is False
    assert echo.state["requests"][-1]["resend"] is False


def test_a_5xx_answer_may_have_been_stored_so_the_retry_is_a_resend(echo):
    echo.state["mode"] = "fail"
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    pipeline.attempt(upload_id, 0)
    assert attempts()[0].delivery == TRANSPORT_ANSWERED
    assert only_upload().delivery_uncertain


def test_a_post_hook_raising_after_it_was_called_counts_as_maybe_delivered(echo, registry_with):
    class RaisingTransport(EchoPlugin):
        @hookimpl
        def post(self, upload, request):
            raise ConnectionResetError("peer reset after the body was written")

    registry_with(RaisingTransport())
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT
    [first] = attempts()
    assert first.delivery == TRANSPORT_MAYBE and "ConnectionResetError" in first.message
    assert only_upload().delivery_uncertain


def test_an_answer_the_plugin_cannot_read_counts_as_maybe_delivered(echo, registry_with):
    class Unreadable(EchoPlugin):
        @hookimpl
        def parse_response(self, upload, response):
            raise BaosongError("应答无法解析")

    registry_with(Unreadable())
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT  # never a rejection: it was sent
    assert only_upload().delivery_uncertain


def test_settings_that_cannot_be_decrypted_are_a_visible_attempt_error_not_a_stuck_upload(echo):
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    row = db.session.execute(sa.select(RegulatorSetting).filter_by(regulator="echo", key="token")).scalar_one()
    row.value = "enc:not-a-fernet-token"
    db.session.commit()

    assert pipeline.attempt(upload_id, 0) == UploadStatus.RETRY_WAIT
    upload = only_upload()
    assert "读取监管平台设置失败" in upload.last_message and "无法解密" in upload.last_message
    [first] = attempts()
    assert first.outcome == "retry" and first.delivery is None
    assert echo.state["requests"] == []


def test_the_plugin_sees_earlier_attempts_and_a_manual_retry_keeps_the_uncertainty(echo, registry_with):
    plugin = Recording()
    registry_with(plugin)
    echo.state["mode"] = "fail"
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    pipeline.attempt(upload_id, 0)
    assert plugin.contexts[0].history == () and not plugin.contexts[0].delivery_uncertain

    upload = only_upload()
    upload.status = UploadStatus.FAILED
    ledger.mark_for_manual_retry(upload)
    db.session.commit()
    echo.state["mode"] = "ok"
    assert pipeline.attempt(upload_id, 1) == UploadStatus.SUCCEEDED

    second = plugin.contexts[1]
    assert second.delivery_uncertain and second.resend
    [earlier] = second.history
    assert (earlier.number, earlier.delivery, earlier.outcome, earlier.code) == (1, TRANSPORT_ANSWERED, "retry",
                                                                                 None)
    assert earlier.operation_sent == "new"


class FollowsUp(EchoPlugin):
    """Answers 'not found' to the first send and asks for a follow-up as new, like keydata's dataFlag 2."""

    def __init__(self, always: bool = False):
        super().__init__()
        self.always = always
        self.contexts = []

    @hookimpl
    def build_payload(self, upload):
        self.contexts.append(upload)
        return super().build_payload(upload)

    @hookimpl
    def sign(self, upload, payload):
        request = super().sign(upload, payload)
        request.operation = "update" if not upload.result.get("flag_next") else "new"
        return request

    @hookimpl
    def parse_response(self, upload, response):
        if self.always or not upload.result.get("flag_next"):
            return Outcome("reject", code="404", message="记录不存在", result={"flag_next": 1}, follow_up=True)
        return Outcome("success", code="0", message="ok")


def test_a_follow_up_is_its_own_attempt_and_does_not_use_the_retry_budget(echo, registry_with):
    plugin = FollowsUp()
    registry_with(plugin)
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)

    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED
    first, second = attempts()
    assert (first.outcome, first.code, first.operation_sent) == ("reject", "404", "update")
    assert (second.outcome, second.operation_sent) == ("success", "new")
    upload = only_upload()
    assert upload.auto_retries == 0 and upload.attempts == 2
    assert upload.result["flag_next"] == 1  # merged although the first outcome was a rejection
    assert plugin.contexts[1].result == {"flag_next": 1}
    assert plugin.finished == [(upload_id, "success")]  # only the final outcome is reported


def test_follow_ups_are_bounded_then_the_outcome_applies(echo, registry_with):
    registry_with(FollowsUp(always=True))
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)

    assert pipeline.attempt(upload_id, 0) == UploadStatus.REJECTED
    assert len(attempts()) == 1 + pipeline.MAX_FOLLOW_UPS
    assert "不再跟进" in only_upload().last_message


def test_a_result_is_merged_whatever_the_outcome_kind(echo, registry_with):
    class KeepsState(EchoPlugin):
        @hookimpl
        def parse_response(self, upload, response):
            return Outcome("retry", message="稍后", result={"strategy": "query_first"})

    registry_with(KeepsState())
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    pipeline.attempt(upload_id, 0)
    assert only_upload().result == {"strategy": "query_first"}


def test_an_attempt_lease_outlives_the_request_timeout(echo, registry_with):
    seen = {}

    class SlowRegulator(EchoPlugin):
        @hookimpl
        def sign(self, upload, payload):
            request = super().sign(upload, payload)
            request.timeout = 600.0
            return request

        @hookimpl
        def post(self, upload, request):
            row = db.session.get(Upload, upload.id)
            seen["lease_until"], seen["updated_at"] = row.lease_until, row.updated_at
            from core.hook_types import Response

            return Response(status=200, body='{"code": 0, "receipt": "R"}')

    registry_with(SlowRegulator())
    [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
    assert pipeline.attempt(upload_id, 0) == UploadStatus.SUCCEEDED
    lease = (seen["lease_until"] - seen["updated_at"]).total_seconds()
    assert lease >= 600 + pipeline.LEASE_MARGIN_SECONDS - 5
    assert pipeline.attempt_lease_seconds(120, (5, 30)) == 120
    assert pipeline.attempt_lease_seconds(120, 300) == 360


def test_the_upload_page_shows_how_far_each_attempt_got(echo):
    from test_web_support import login

    server = RawServer(closes_at_once)
    try:
        point_echo_at(server.url)
        [upload_id] = run_slot("echo.hourly", SLOT, enqueue=False)
        pipeline.attempt(upload_id, 0)  # read, then the connection closed: it may have arrived
    finally:
        server.close()
    with socket_free_port() as port:
        point_echo_at(f"http://127.0.0.1:{port}/report")
    pipeline.attempt(upload_id, 1)  # refused: it never left
    point_echo_at(f"{echo.url}/report")
    pipeline.attempt(upload_id, 2)
    page = login(_app(), "operator").get(f"/uploads/{upload_id}").get_data(as_text=True)
    assert sorted(re.findall(r'title="投递情况">([^<]+)<', page)) == sorted(["可能已送达", "未发出", "已应答"])
    assert 'class="tag tag-warn" title="投递情况">可能已送达<' in page


def _app():
    from flask import current_app

    return current_app._get_current_object()


class socket_free_port:
    """A port nothing listens on (bound, then released)."""

    def __enter__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()
