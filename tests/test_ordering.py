"""Ordering between uploads (core.ordering): a dependent upload waits until its prerequisites succeeded,
is never sent before them, a failed prerequisite holds the chain with its reason; 冲销 then 重传 in that
order, with crashes between the steps (nothing sent out of order, nothing counted twice)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from echo_regulator import EchoPlugin

from core import clock, ledger, ordering, pipeline
from core.db import db
from core.errors import BaosongError
from core.hook_types import Payload, ReportType, UploadPlan
from core.hookspecs import hookimpl
from core.models import Upload, UploadStatus

HOSPITAL = ReportType("echo.hospital", "机构信息", "echo")
DEPARTMENT = ReportType("echo.department", "科室信息", "echo")
STAFF = ReportType("echo.staff", "人员信息", "echo")
CASE = ReportType("echo.case", "病案首页", "echo", reversal="echo.case")


class OrderedEcho(EchoPlugin):
    """The echo regulator's plugin with event-driven report types and a reversal interface."""

    @hookimpl
    def register_report_types(self):
        return [HOSPITAL, DEPARTMENT, STAFF, CASE]

    @hookimpl
    def build_payload(self, upload):
        record = {"key": upload.business_key, "type": upload.report_type.name, "operation": upload.operation,
                  "requestId": upload.idempotency_key, "resend": upload.resend, "n": len(upload.rows)}
        return Payload(records=[record], document=record)


@pytest.fixture
def ordered(echo, registry_with):
    from core.scheduler import ensure_tasks

    reg = registry_with(OrderedEcho())
    ensure_tasks()
    echo.registry = reg
    return echo


def plan(report_type: ReportType, key: str, *depends_on: tuple[str, str]) -> int:
    [upload_id] = ledger.record_plans(report_type, [UploadPlan(business_key=key, period="2025-02", rows=[{"k": key}],
                                                                depends_on=list(depends_on))])
    return upload_id


def status(upload_id: int) -> Upload:
    db.session.expire_all()
    return db.session.get(Upload, upload_id)


def sent_keys(echo) -> list[str]:
    return [r["key"] for r in echo.state["requests"]]


def run(upload_id: int) -> str:
    upload = status(upload_id)
    return pipeline.attempt(upload_id, upload.attempts)


def test_a_dependent_waits_is_never_claimed_and_is_released_when_its_prerequisite_succeeds(ordered, work):
    department = plan(DEPARTMENT, "D1", ("echo.hospital", "H1"))  # its prerequisite is not planned yet
    waiting = status(department)
    assert waiting.status == UploadStatus.WAITING and waiting.status_label == "等待前置上报"
    assert "echo.hospital H1" in waiting.last_message and "尚未生成" in waiting.last_message
    assert run(department) == "skipped"  # the claim refuses a waiting upload
    assert ordered.state["requests"] == []

    hospital = plan(HOSPITAL, "H1")
    assert status(department).status == UploadStatus.WAITING
    assert run(hospital) == UploadStatus.SUCCEEDED
    assert status(department).status == UploadStatus.PENDING  # released in the prerequisite's transaction
    work()  # released uploads were enqueued after the commit
    assert status(department).status == UploadStatus.SUCCEEDED
    assert sent_keys(ordered) == ["H1", "D1"]


def test_a_rejected_prerequisite_holds_the_whole_chain_with_its_reason_until_it_succeeds(ordered, work):
    hospital = plan(HOSPITAL, "H2")
    department = plan(DEPARTMENT, "D2", ("echo.hospital", "H2"))
    staff = plan(STAFF, "S2", ("echo.department", "D2"))
    ordered.state["mode"] = "reject"
    assert run(hospital) == UploadStatus.REJECTED
    held = status(department)
    assert held.status == UploadStatus.WAITING
    assert f"#{hospital}" in held.last_message and "被拒绝" in held.last_message and "n 字段取值错误" in held.last_message
    assert status(staff).status == UploadStatus.WAITING and f"#{department}" in status(staff).last_message
    work()  # nothing runnable: the dependents are not sent
    assert sent_keys(ordered) == ["H2"]

    ordered.state["mode"] = "ok"
    ledger.mark_for_manual_retry(status(hospital))
    db.session.commit()
    assert run(hospital) == UploadStatus.SUCCEEDED
    work()
    assert [status(i).status for i in (hospital, department, staff)] == [UploadStatus.SUCCEEDED] * 3
    assert sent_keys(ordered) == ["H2", "H2", "D2", "S2"]


def test_a_cancelled_prerequisite_holds_its_dependent(ordered):
    hospital = plan(HOSPITAL, "H3")
    department = plan(DEPARTMENT, "D3", ("echo.hospital", "H3"))
    ledger.cancel(status(hospital))
    db.session.commit()
    assert status(department).status == UploadStatus.WAITING
    assert "已取消" in status(department).last_message


def test_the_sweep_releases_a_dependent_whose_prerequisite_finished_in_a_racing_transaction(ordered, work):
    hospital = plan(HOSPITAL, "H4")
    department = plan(DEPARTMENT, "D4", ("echo.hospital", "H4"))
    # The prerequisite's success was committed by a transaction that did not see the dependent yet.
    db.session.execute(db.update(Upload).where(Upload.id == hospital).values(status=UploadStatus.SUCCEEDED))
    db.session.commit()
    assert status(department).status == UploadStatus.WAITING
    pipeline.sweep()
    assert status(department).status == UploadStatus.PENDING
    work()
    assert status(department).status == UploadStatus.SUCCEEDED


def _accepted_case(ordered, key: str) -> int:
    case = plan(CASE, key)
    assert run(case) == UploadStatus.SUCCEEDED
    return case


def test_reverse_then_resend_sends_the_reversal_first_and_refuses_a_second_reversal(ordered, work):
    case = _accepted_case(ordered, "C1")
    reverse_id, resend_id = ordering.reverse_and_resend(case, "operator")
    assert status(reverse_id).operation == "delete" and status(reverse_id).parent_id == case
    assert status(resend_id).status == UploadStatus.WAITING and status(resend_id).parent_id == case
    with pytest.raises(BaosongError, match="未完成的冲销"):
        ordering.reverse_and_resend(case, "operator")  # a double click
    work()
    assert [r["operation"] for r in ordered.state["requests"]] == ["new", "delete", "new"]
    assert status(resend_id).status == UploadStatus.SUCCEEDED
    assert db.session.query(Upload).filter(Upload.parent_id == case).count() == 2


def test_reversal_needs_a_declared_interface_and_an_accepted_upload(ordered):
    hospital = plan(HOSPITAL, "H5")
    with pytest.raises(BaosongError, match="没有冲销接口"):
        ordering.reverse_and_resend(hospital, "operator")
    case = plan(CASE, "C5")
    with pytest.raises(BaosongError, match="只有已成功"):
        ordering.reverse_and_resend(case, "operator")


def _send_then_die(ordered, die_after_taking, upload_id: int) -> None:
    """What a worker killed after its request left leaves behind: a taken upload, an attempt row with
    no outcome, and a regulator that received (and stored) the request."""
    die_after_taking(upload_id, status(upload_id).attempts)
    upload = status(upload_id)
    record = {"key": upload.business_key, "type": upload.report_type, "operation": upload.operation,
              "requestId": upload.idempotency_key, "resend": False, "n": len(upload.rows)}
    answer = requests.post(f"{ordered.url}/report", json=record, headers={"X-Token": ordered.token}, timeout=5)
    assert answer.json()["code"] == 0


def test_a_crash_after_the_reversal_left_never_sends_the_resend_early_nor_reverses_twice(ordered, work, redis_conn,
                                                                                       die_after_taking):
    case = _accepted_case(ordered, "C6")
    reverse_id, resend_id = ordering.reverse_and_resend(case, "operator")
    redis_conn.flushdb()  # the reversal's job is lost with the crash too
    _send_then_die(ordered, die_after_taking, reverse_id)
    work()
    assert status(resend_id).status == UploadStatus.WAITING  # the reversal's answer was never recorded

    counts = pipeline.sweep(now=clock.now() + timedelta(minutes=5))  # lease expired: recovered, retried
    assert counts["recovered"] == 1
    assert status(reverse_id).delivery_uncertain
    assert status(resend_id).status == UploadStatus.WAITING
    work()
    assert status(reverse_id).status == UploadStatus.SUCCEEDED, status(reverse_id).last_message
    assert status(resend_id).status == UploadStatus.SUCCEEDED
    operations = [(r["operation"], r["requestId"]) for r in ordered.state["requests"]]
    reversal_key = status(reverse_id).idempotency_key
    # The reversal went twice with the same requestId (the regulator keeps one record), then the re-send.
    assert operations[1:] == [("delete", reversal_key), ("delete", reversal_key),
                              ("new", status(resend_id).idempotency_key)]
    assert sum(1 for r in ordered.state["records"].values() if r["operation"] == "delete") == 1
    assert ordered.state["requests"][2]["resend"] is True


def test_a_crash_between_the_reversal_succeeding_and_the_resend_being_enqueued(ordered, work, redis_conn):
    case = _accepted_case(ordered, "C7")
    reverse_id, resend_id = ordering.reverse_and_resend(case, "operator")
    redis_conn.flushdb()
    assert run(reverse_id) == UploadStatus.SUCCEEDED
    redis_conn.flushdb()  # the re-send's job is lost: it is PENDING in the ledger
    assert status(resend_id).status == UploadStatus.PENDING
    work()
    assert status(resend_id).status == UploadStatus.PENDING
    pipeline.sweep(now=clock.now() + timedelta(minutes=5))  # the pending requeue finds it
    work()
    assert status(resend_id).status == UploadStatus.SUCCEEDED
    assert [r["operation"] for r in ordered.state["requests"]] == ["new", "delete", "new"]


def test_the_detail_page_shows_the_chain(ordered, app):
    from test_web_support import login

    hospital = plan(HOSPITAL, "H8")
    department = plan(DEPARTMENT, "D8", ("echo.hospital", "H8"))
    client = login(app, "viewer")
    page = client.get(f"/uploads/{department}").get_data(as_text=True)
    assert "前置上报" in page and f"#{hospital}" in page and "等待前置上报" in page
    assert "前置上报全部成功之前不会发送" in page
    page = client.get(f"/uploads/{hospital}").get_data(as_text=True)
    assert "依赖本上报" in page and f"#{department}" in page
