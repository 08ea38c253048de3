"""The admin through Flask's test client: every page, permissions, CSRF, throttling, masking, retries,
tasks, export, statistics and users."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import sqlalchemy as sa
from test_web_support import PATIENT_ID, csrf_from, install_webtest, login, make_user, plan_and_send

from core import clock, ledger, settings
from core.db import db
from core.models import AuditLog, HeldBack, Task, Upload, UploadStatus


@pytest.fixture
def webtest(app, registry_with, serve):
    return install_webtest(registry_with, serve)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def audit_actions() -> list[str]:
    db.session.expire_all()
    return [a.action for a in db.session.execute(sa.select(AuditLog).order_by(AuditLog.id)).scalars()]


def insert_uploads(n: int, **overrides) -> list[int]:
    """Ledger rows directly (no plugin needed): statuses cycle, one department in three is 0302."""
    statuses = [UploadStatus.SUCCEEDED, UploadStatus.FAILED, UploadStatus.RETRY_WAIT, UploadStatus.REJECTED]
    base = datetime(2025, 3, 1, 2, 0)
    rows = []
    for i in range(n):
        values = dict(report_type="webtest.daily", business_key=f"bk-{i:05d}", period=f"2025/03/{1 + i % 28:02d}",
                      department="0302" if i % 3 == 0 else "0301", status=statuses[i % 4], attempts=1,
                      idempotency_key=f"msg-{i:05d}", search_text=f"bk-{i:05d} msg-{i:05d} CARD{i:06d}",
                      last_message="服务繁忙" if i % 4 else "上传成功", created_at=base + timedelta(minutes=i),
                      rows=[{"visits": i}])
        values.update(overrides)
        rows.append(Upload(**values))
    db.session.add_all(rows)
    db.session.commit()
    return [r.id for r in rows]


# --- login, sessions, CSRF, roles ---------------------------------------------------------------

def test_nothing_is_visible_without_login_except_static(app):
    client = app.test_client()
    for path in ("/", "/uploads/", "/uploads/1", "/retries/", "/tasks/", "/stats/", "/users/", "/users/audit",
                 "/uploads/export.xlsx", "/no-such-page"):
        answer = client.get(path)
        assert answer.status_code == 302 and "/login" in answer.headers["Location"], path
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/static/vendor/htmx.min.js").status_code == 200
    assert client.get("/static/vendor/chart.umd.min.js").status_code == 200
    polled = client.get("/dashboard/panel", headers={"HX-Request": "true"})
    assert polled.status_code == 401 and "/login" in polled.headers["HX-Redirect"]


@pytest.mark.slow
def test_login_failures_look_the_same_and_lock_by_user_and_address(app):
    make_user("alice", "operator")
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))

    def attempt(username, password, address="10.0.0.1"):
        return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                           environ_base={"REMOTE_ADDR": address})

    unknown, wrong = attempt("nobody", "x" * 12), attempt("alice", "wrong-password")
    assert unknown.status_code == wrong.status_code == 401
    assert "用户名或密码错误" in unknown.get_data(as_text=True)
    assert "用户名或密码错误" in wrong.get_data(as_text=True)
    for _ in range(4):  # five failures in all
        attempt("alice", "wrong-password")
    locked = attempt("alice", "Passw0rd-123")  # the right password, but locked
    assert locked.status_code == 429 and "登录失败次数过多" in locked.get_data(as_text=True)
    for _ in range(5):  # an unknown user is locked the same way
        last = attempt("nobody", "x" * 12)
    assert last.status_code == 429
    elsewhere = attempt("alice", "Passw0rd-123", address="10.0.0.2")
    assert elsewhere.status_code == 302
    assert "login_locked" in audit_actions() and "login" in audit_actions()


def test_a_form_without_csrf_token_is_refused(app):
    admin = login(app, "admin")
    refused = admin.post("/retries/auto", {"stopped": "1"}, csrf=False)
    assert refused.status_code == 400 and "CSRF" in refused.get_data(as_text=True)
    assert settings.flag("auto_retry_stopped") == "0"
    wrong = admin.raw.post("/retries/auto", data={"stopped": "1"}, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 400
    via_header = admin.raw.post("/retries/auto", data={"stopped": "1"}, headers={"X-CSRF-Token": admin.token})
    assert via_header.status_code == 302
    db.session.expire_all()
    assert settings.flag("auto_retry_stopped") == "1"
    # Login itself needs the token too.
    assert app.test_client().post("/login", data={"username": "x", "password": "y"}).status_code == 400


def test_viewer_sees_pages_but_cannot_retry_or_change_anything(app, webtest):
    ids = insert_uploads(4)
    task = db.session.execute(sa.select(Task).filter_by(report_type="webtest.daily")).scalar_one()
    viewer = login(app, "viewer")
    for path in ("/", "/uploads/", f"/uploads/{ids[1]}", "/retries/", "/tasks/", f"/tasks/{task.id}", "/stats/"):
        assert viewer.get(path).status_code == 200, path
    page = viewer.get(f"/uploads/{ids[1]}").get_data(as_text=True)
    assert "重试</button>" not in page
    assert viewer.post(f"/uploads/{ids[1]}/retry").status_code == 403
    assert viewer.post(f"/tasks/{task.id}/pause").status_code == 403
    assert viewer.post("/retries/auto", {"stopped": "1"}).status_code == 403
    assert viewer.post("/retries/bulk", {"status": "failures"}).status_code == 403
    assert viewer.get("/users/").status_code == 403
    assert viewer.get("/users/audit").status_code == 403
    db.session.expire_all()
    assert db.session.get(Upload, ids[1]).status == UploadStatus.FAILED
    assert db.session.get(Task, task.id).enabled


def test_operator_is_not_admin(app):
    operator = login(app, "operator")
    assert operator.get("/users/").status_code == 403
    assert operator.post("/users/", {"username": "eve", "role": "admin"}).status_code == 403
    assert operator.get("/users/audit").status_code == 200


def test_logout_ends_the_session(app):
    user = login(app, "operator")
    assert user.post("/auth/logout" if False else "/logout").status_code == 302
    assert user.get("/").status_code == 302


# --- upload log ---------------------------------------------------------------------------------

def test_upload_log_filters_sort_and_keyset_pages(app):
    insert_uploads(130)
    user = login(app, "viewer")
    first = user.get("/uploads/").get_data(as_text=True)
    assert "共 <strong>130</strong> 条" in first
    assert first.count('href="/uploads/') >= 50
    assert "bk-00129" not in first  # business keys are not a list column, but the newest row is first:
    newest = db.session.execute(sa.select(Upload.id).order_by(Upload.created_at.desc())).scalars().first()
    assert f'href="/uploads/{newest}"' in first

    failures = user.get("/uploads/?status=failures").get_data(as_text=True)
    assert f"共 <strong>{sum(1 for i in range(130) if i % 4)}</strong> 条" in failures
    dept = user.get("/uploads/?department=0302&status=failed").get_data(as_text=True)
    expected = sum(1 for i in range(130) if i % 3 == 0 and i % 4 == 1)
    assert f"共 <strong>{expected}</strong> 条" in dept
    found = user.get("/uploads/?q=card000077").get_data(as_text=True)  # case-insensitive
    assert "共 <strong>1</strong> 条" in found
    day = user.get("/uploads/?start=2025-03-01&end=2025-03-01").get_data(as_text=True)
    # created 02:00 UTC + i minutes = 10:00 Shanghai onwards: all 130 on 2025-03-01 local
    assert "共 <strong>130</strong> 条" in day
    assert "共 <strong>0</strong> 条" in user.get("/uploads/?start=2025-03-02").get_data(as_text=True)

    # Keyset pages: 50 + 50 + 30, no overlap, and back again.
    seen: list[str] = []
    url = "/uploads/"
    pages = 0
    while url:
        html = user.get(url).get_data(as_text=True)
        rows = _row_ids(html)
        seen += rows
        pages += 1
        nxt = _link(html, "next")
        url = nxt
    assert pages == 3 and len(seen) == 130 and len(set(seen)) == 130
    second = user.get(_link(user.get("/uploads/").get_data(as_text=True), "next")).get_data(as_text=True)
    back = user.get(_link(second, "prev")).get_data(as_text=True)
    assert _row_ids(back) == seen[:50]

    ascending = _row_ids(user.get("/uploads/?order=asc").get_data(as_text=True))
    assert ascending[0] == seen[-1]

    partial = user.get("/uploads/?status=rejected", headers={"HX-Request": "true", "HX-Target": "upload-results"})
    text = partial.get_data(as_text=True)
    assert text.lstrip().startswith('<div id="upload-results">') and "<html" not in text


def _row_ids(html: str) -> list[str]:
    import re

    return re.findall(r'<tr>\s*<td><a href="/uploads/(\d+)">', html)


def _link(html: str, rel: str) -> str | None:
    import re

    match = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    return match.group(1).replace("&amp;", "&") if match else None


def test_count_is_capped_for_broad_filters(app, monkeypatch):
    import web.upload_query as uq

    monkeypatch.setattr(uq, "COUNT_CAP", 20)
    insert_uploads(30)
    user = login(app, "viewer")
    assert "超过 <strong>20</strong> 条" in user.get("/uploads/").get_data(as_text=True)


def test_excel_export_is_exactly_the_filtered_set(app):
    insert_uploads(60)
    user = login(app, "operator")
    answer = user.get("/uploads/export.xlsx?status=failed&department=0301")
    assert answer.status_code == 200
    assert answer.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert answer.is_streamed
    book = openpyxl.load_workbook(io.BytesIO(answer.get_data()), read_only=True)
    rows = list(book.active.iter_rows(values_only=True))
    assert rows[0][:3] == ("ID", "上报时间", "报表类型")
    expected = {i for i in range(60) if i % 4 == 1 and i % 3 != 0}
    assert {r[6] for r in rows[1:]} == {f"bk-{i:05d}" for i in expected}
    assert all(r[8] == "失败" for r in rows[1:])
    assert "upload.export" in audit_actions()


def test_excel_export_masks_patient_identifiers_unless_the_role_may_see_them(app):
    phone = "13912345678"
    insert_uploads(1, business_key=f"visit-{PATIENT_ID}", last_message=f"患者 {PATIENT_ID} 电话 {phone} 重复")

    def exported(role: str) -> tuple:
        answer = login(app, role).get("/uploads/export.xlsx")
        return list(openpyxl.load_workbook(io.BytesIO(answer.get_data()), read_only=True).active
                    .iter_rows(values_only=True))[1]

    row = exported("operator")
    assert PATIENT_ID not in repr(row) and phone not in repr(row)
    assert row[6] == f"visit-{PATIENT_ID[:6]}********{PATIENT_ID[-4:]}" and "139****5678" in row[11]
    row = exported("admin")
    assert row[6] == f"visit-{PATIENT_ID}" and PATIENT_ID in row[11] and phone in row[11]
    assert "patient.unmasked_view" in audit_actions()


# --- upload detail: masking and actions --------------------------------------------------------

def test_detail_shows_attempts_and_masks_patient_identifiers_unless_admin(app, webtest):
    webtest.failing = True
    (upload_id,) = plan_and_send(1)
    operator = login(app, "operator")
    page = operator.get(f"/uploads/{upload_id}").get_data(as_text=True)
    assert "HTTP 503" in page and "服务繁忙" in page
    assert webtest.url + "/upload" in page
    assert "auth-SECRET-42" not in page  # secret header masked in the ledger
    assert PATIENT_ID not in page and "张三" not in page
    assert "360***********1234" in page or "360102********1234" in page
    assert "张*" in page
    admin = login(app, "admin")
    admin_page = admin.get(f"/uploads/{upload_id}").get_data(as_text=True)
    assert PATIENT_ID in admin_page and "张三" in admin_page
    assert "auth-SECRET-42" not in admin_page
    # The log's free text finds it by ID number; the list does not show the number to an operator.
    listing = operator.get(f"/uploads/?q={PATIENT_ID}").get_data(as_text=True)
    assert "共 <strong>1</strong> 条" in listing


def test_retry_one_marks_enqueues_and_audits(app, webtest, redis_conn):
    from core.queue import queue

    webtest.failing = True
    settings.set_flag("retry_max", "0")
    db.session.commit()
    (upload_id,) = plan_and_send(1)
    assert db.session.get(Upload, upload_id).status == UploadStatus.FAILED
    operator = login(app, "operator")
    answer = operator.post(f"/uploads/{upload_id}/retry")
    assert answer.status_code == 302
    db.session.expire_all()
    upload = db.session.get(Upload, upload_id)
    assert upload.status == UploadStatus.RETRY_WAIT
    assert f"upload-{upload_id}-a1" in queue().job_ids
    entry = db.session.execute(sa.select(AuditLog).filter_by(action="upload.retry")).scalar_one()
    assert entry.actor == "operator-user" and entry.before["status"] == UploadStatus.FAILED
    # A succeeded upload cannot be retried.
    webtest.failing = False
    from core.pipeline import attempt

    attempt(upload_id, 1)
    refused = operator.post(f"/uploads/{upload_id}/retry", follow_redirects=True)
    assert "不能重试" in refused.get_data(as_text=True)


def test_cancel_an_upload(app, webtest):
    webtest.failing = True
    (upload_id,) = plan_and_send(1)
    operator = login(app, "operator")
    operator.post(f"/uploads/{upload_id}/cancel")
    db.session.expire_all()
    assert db.session.get(Upload, upload_id).status == UploadStatus.CANCELLED
    assert "upload.cancel" in audit_actions()


# --- retries ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_bulk_retry_shows_count_then_retries_in_background(app, webtest, work):
    webtest.failing = True
    settings.set_flag("retry_max", "0")
    db.session.commit()
    ids = plan_and_send(5)
    insert_uploads(3, report_type="other.type", status=UploadStatus.FAILED)  # outside the filter
    operator = login(app, "operator")
    page = operator.get("/retries/?report_type=webtest.daily").get_data(as_text=True)
    assert 'id="failure-count">5<' in page
    confirm = operator.get("/retries/confirm?report_type=webtest.daily", headers={"HX-Request": "true"})
    assert 'id="confirm-count">5<' in confirm.get_data(as_text=True)
    webtest.failing = False
    answer = operator.post("/retries/bulk", {"report_type": "webtest.daily", "expected": "5"})
    assert answer.status_code == 302
    progress_url = answer.headers["Location"]
    work()  # the bulk job, then the five upload attempts it enqueued
    db.session.expire_all()
    assert {db.session.get(Upload, i).status for i in ids} == {UploadStatus.SUCCEEDED}
    assert db.session.execute(
        sa.select(sa.func.count()).where(Upload.report_type == "other.type", Upload.status == UploadStatus.FAILED)
    ).scalar() == 3
    assert len(webtest.accepted) == 5
    progress = operator.get(progress_url.replace("/bulk/", "/bulk/") + "/progress").get_data(as_text=True)
    assert "已完成" in progress and 'data-status="succeeded">5<' in progress and "hx-trigger" not in progress
    assert "retry.bulk" in audit_actions()


def test_bulk_retry_runs_in_chunks_and_can_be_stopped(app, webtest):
    from web.models import BulkRetry
    from web.retries import run_bulk_retry

    webtest.failing = True
    settings.set_flag("retry_max", "0")
    db.session.commit()
    ids = plan_and_send(6)
    job = BulkRetry(filters={"ids": ids}, total=6, created_by="t")
    db.session.add(job)
    db.session.commit()
    result = run_bulk_retry(job.id, chunk=2, pause=0)
    assert result == {"done": 6, "skipped": 0, "status": "done"}
    stopped = BulkRetry(filters={"ids": ids}, total=6, created_by="t", status="queued")
    db.session.add(stopped)
    db.session.commit()
    stopped.status = "stopped"
    db.session.commit()
    assert run_bulk_retry(stopped.id) == {"skipped": True}


def test_a_bulk_retry_whose_worker_was_killed_is_resumed_from_where_it_got_to(app, webtest, work, redis_conn):
    """A worker killed in the middle of a bulk retry (or a flushed Redis) left it 进行中 with no job: the
    admin's housekeeping, run after every sweep, enqueues it again and it goes on after what it had done."""
    from core.operations import periodic
    from core.pipeline import sweep
    from web.models import BulkRetry
    from web.retries import ALIVE_KEY, resume_interrupted, run_bulk_retry

    webtest.failing = True
    settings.set_flag("retry_max", "0")
    db.session.commit()
    ids = plan_and_send(6)
    webtest.failing = False
    # What the killed run left: its first step committed (two marked, counted), nothing enqueued.
    for upload_id in ids[:2]:
        ledger.mark_for_manual_retry(db.session.get(Upload, upload_id))
    job = BulkRetry(filters={"ids": ids}, total=6, done=2, created_by="t", status="running")
    db.session.add(job)
    db.session.commit()

    redis_conn.set(ALIVE_KEY.format(job.id), "1", ex=60)  # while a run holds it, it is not resumed
    assert resume_interrupted() == []
    assert run_bulk_retry(job.id) == {"skipped": True, "running": True}  # and a second run does not start
    redis_conn.delete(ALIVE_KEY.format(job.id))  # the killed run's key expires

    periodic()
    assert resume_interrupted() == []  # enqueued once: the waiting job is seen
    work()  # the resumed bulk (marks the last four), then their attempts
    sweep()  # the two the killed run marked but never enqueued
    work()
    db.session.expire_all()
    job = db.session.get(BulkRetry, job.id)
    assert (job.status, job.done, job.skipped) == ("done", 6, 0)
    assert {db.session.get(Upload, i).status for i in ids} == {UploadStatus.SUCCEEDED}
    assert len(webtest.accepted) == 6  # each upload sent once: nothing re-marked twice
    assert not redis_conn.exists(ALIVE_KEY.format(job.id))


def test_stop_automatic_retries_switch(app):
    operator = login(app, "operator")
    operator.post("/retries/auto", {"stopped": "1"})
    db.session.expire_all()
    assert settings.flag("auto_retry_stopped") == "1"
    assert "自动重试已停止" in operator.get("/").get_data(as_text=True)
    operator.post("/retries/auto", {"stopped": "0"})
    db.session.expire_all()
    assert settings.flag("auto_retry_stopped") == "0"
    entries = db.session.execute(sa.select(AuditLog).filter_by(action="retry.auto_stop")).scalars().all()
    assert [e.after["stopped"] for e in entries] == [True, False]


# --- tasks --------------------------------------------------------------------------------------

def test_tasks_pause_resume_run_now_and_edit_cron(app, webtest):
    task = db.session.execute(sa.select(Task).filter_by(report_type="webtest.daily")).scalar_one()
    operator = login(app, "operator")
    listing = operator.get("/tasks/").get_data(as_text=True)
    assert "测试日报" in listing and "0 * * * *" in listing
    operator.post(f"/tasks/{task.id}/pause")
    db.session.expire_all()
    assert not db.session.get(Task, task.id).enabled
    assert "已暂停" in operator.get("/tasks/").get_data(as_text=True)
    operator.post(f"/tasks/{task.id}/resume")
    db.session.expire_all()
    assert db.session.get(Task, task.id).enabled

    clock.freeze(clock.now())  # both clicks in the same minute, whatever the wall clock does
    try:
        ran = operator.post(f"/tasks/{task.id}/run", follow_redirects=True).get_data(as_text=True)
        again = operator.post(f"/tasks/{task.id}/run", follow_redirects=True).get_data(as_text=True)
    finally:
        clock.freeze(None)
    assert "计划 1 条上报" in ran
    assert db.session.execute(sa.select(sa.func.count(Upload.id))).scalar() == 1
    assert "没有新的上报" in again and "更新重发" in again  # says what to do instead
    assert db.session.execute(sa.select(sa.func.count(Upload.id))).scalar() == 1

    preview = operator.get("/tasks/preview?cron=30+8+*+*+1-5&timezone=Asia/Shanghai").get_data(as_text=True)
    assert preview.count("<li>") == 5 and "08:30" in preview
    bad = operator.get("/tasks/preview?cron=61+*+*+*+*").get_data(as_text=True)
    assert 'id="cron-error"' in bad
    operator.post(f"/tasks/{task.id}/cron", {"cron": "not a cron"})
    db.session.expire_all()
    assert db.session.get(Task, task.id).cron == "0 * * * *"
    operator.post(f"/tasks/{task.id}/cron", {"cron": "15  */2 * * *"})
    db.session.expire_all()
    assert db.session.get(Task, task.id).cron == "15 */2 * * *"
    actions = audit_actions()
    for action in ("task.pause", "task.resume", "task.run_now", "task.cron"):
        assert action in actions


def test_task_changes_reach_rq_scheduler(app, webtest, redis_conn):
    from rq_scheduler import Scheduler

    from core.queue import connection, queue
    from web.tasks import task_jobs

    task = db.session.execute(sa.select(Task).filter_by(report_type="webtest.daily")).scalar_one()
    operator = login(app, "operator")
    resumed = operator.post(f"/tasks/{task.id}/resume", follow_redirects=True).get_data(as_text=True)
    assert "Redis 不可用" not in resumed
    assert len(task_jobs(Scheduler(queue=queue(), connection=connection()), "webtest.daily")) == 1
    operator.post(f"/tasks/{task.id}/pause")
    assert task_jobs(Scheduler(queue=queue(), connection=connection()), "webtest.daily") == []


@pytest.mark.slow
def test_backfill_preview_counts_slots_and_backfill_plans_them(app, webtest, work):
    task = db.session.execute(sa.select(Task).filter_by(report_type="webtest.daily")).scalar_one()
    operator = login(app, "operator")
    preview = operator.get(f"/tasks/{task.id}/backfill/preview?start=2025-03-01&end=2025-03-02").get_data(as_text=True)
    assert 'id="backfill-count">48<' in preview
    bad = operator.get(f"/tasks/{task.id}/backfill/preview?start=2025-03-02&end=2025-03-01").get_data(as_text=True)
    assert "早于" in bad
    operator.post(f"/tasks/{task.id}/backfill", {"start": "2025-03-01", "end": "2025-03-01"})
    work()
    db.session.expire_all()
    uploads = db.session.execute(sa.select(Upload).filter_by(report_type="webtest.daily")).scalars().all()
    assert len(uploads) == 24 and {u.status for u in uploads} == {UploadStatus.SUCCEEDED}
    assert "task.backfill" in audit_actions()


def test_pages_work_when_redis_is_down(app, webtest, monkeypatch):
    task = db.session.execute(sa.select(Task).filter_by(report_type="webtest.daily")).scalar_one()
    operator = login(app, "operator")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    paused = operator.post(f"/tasks/{task.id}/pause", follow_redirects=True)
    assert paused.status_code == 200 and "Redis 不可用" in paused.get_data(as_text=True)
    db.session.expire_all()
    assert not db.session.get(Task, task.id).enabled
    assert "Redis 不可用" in operator.get("/").get_data(as_text=True)


# --- dashboard ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_dashboard_progress_alerts_and_warnings(app, webtest):
    clock.freeze(datetime(2025, 3, 10, 14, 20, tzinfo=SHANGHAI))
    webtest.failing = False
    plan_and_send(10, start=datetime(2025, 3, 10, 14, 0, tzinfo=SHANGHAI))  # 05:00..14:00 today
    webtest.failing = True
    settings.set_flag("retry_max", "0")
    db.session.commit()
    plan_and_send(2, start=datetime(2025, 3, 10, 4, 0, tzinfo=SHANGHAI))  # 03:00, 04:00 fail
    db.session.add(HeldBack(report_type="webtest.daily", period="2025/03/10", field="dept_code",
                            reason="科室 0999 未映射到标准科室"))
    db.session.commit()
    user = login(app, "operator")
    page = user.get("/").get_data(as_text=True)
    assert "12/24" in page  # 12 of today's 24 hourly slots ran
    assert "到现在应执行 15 个时段" in page and "缺 3" in page  # 00:00..14:00
    assert "失败告警" in page and "2 条上报失败" in page and "服务繁忙" in page
    assert "/uploads/?report_type=webtest.daily&amp;status=failures" in page
    assert "未映射科室" in page and "科室 0999 未映射到标准科室" in page
    assert "03-10 15:00" in page  # next run
    panel = user.get("/dashboard/panel", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-trigger="every 15s"' in panel and "<html" not in panel
    key = __import__("re").search(r'name="key" value="([0-9a-f]+)"', page).group(1)
    user.post("/dashboard/held-back/resolve", {"report_type": "webtest.daily", "key": key})
    db.session.expire_all()
    assert db.session.execute(sa.select(HeldBack.resolved)).scalar() is True


# --- statistics ---------------------------------------------------------------------------------

def test_statistics_from_succeeded_uploads(app, webtest):
    now = clock.now().astimezone(SHANGHAI).replace(minute=0, second=0, microsecond=0)
    plan_and_send(3, start=now)
    user = login(app, "viewer")
    page = user.get("/stats/?report_type=webtest.daily&days=7").get_data(as_text=True)
    assert 'id="indicator-table"' in page and 'id="regulator-table"' in page
    assert "测试监管平台" in page and "100.0%" in page
    chart = json.loads(page.split('<script type="application/json" id="indicator-chart">')[1].split("</script>")[0])
    # A day's value is the latest succeeded upload of that day (hourly running totals).
    latest_by_day: dict[str, int] = {}
    for i in range(3):
        moment = now - timedelta(hours=i)
        day = moment.strftime("%Y-%m-%d")
        latest_by_day.setdefault(day, 10 + moment.hour)
    visits = next(d for d in chart["datasets"] if d["label"] == "门诊人次")
    shown = {day: value for day, value in zip(chart["labels"], visits["data"], strict=True) if value is not None}
    assert shown == latest_by_day
    assert len(chart["labels"]) == 7  # every day of the range, empty days as gaps
    monthly = user.get("/stats/?report_type=webtest.daily&days=30&granularity=month").get_data(as_text=True)
    assert "月份" in monthly


def test_period_day_parsing():
    from web.stats import period_day

    assert str(period_day("2025/02/17 07:59:59", None)) == "2025-02-17"
    assert str(period_day("2025-01", None)) == "2025-01-01"
    assert str(period_day("20250305", None)) == "2025-03-05"


# --- users, audit, first admin ------------------------------------------------------------------

@pytest.mark.slow
def test_admin_manages_users_and_sees_the_audit_log(app):
    admin = login(app, "admin")
    created = admin.post("/users/", {"username": "bob", "role": "viewer"}).get_data(as_text=True)
    password = __import__("re").search(r'id="new-password">([^<]+)<', created).group(1)
    bob = app.test_client()
    token = csrf_from(bob.get("/login").get_data(as_text=True))
    assert bob.post("/login", data={"username": "bob", "password": password, "csrf_token": token}).status_code == 302
    from web.models import User

    user = db.session.execute(sa.select(User).filter_by(username="bob")).scalar_one()
    admin.post(f"/users/{user.id}", {"role": "operator", "active": "0"})
    assert bob.get("/").status_code == 302  # deactivated: logged out
    log = admin.get("/users/audit").get_data(as_text=True)
    assert "新建用户" in log and "修改用户" in log and "operator" in log
    assert admin.post(f"/users/{_me(admin)}", {"role": "viewer", "active": "1"}, follow_redirects=True) \
        .get_data(as_text=True).count("不能降低") == 1


def _me(client) -> int:
    from web.models import User

    return db.session.execute(sa.select(User.id).filter_by(username="admin-user")).scalar_one()


@pytest.mark.slow
def test_own_password_change(app):
    user = login(app, "viewer")
    bad = user.post("/users/me/password", {"current": "Passw0rd-123", "new": "short", "confirm": "short"})
    assert bad.status_code == 400
    ok = user.post("/users/me/password", {"current": "Passw0rd-123", "new": "New-passw0rd-9", "confirm": "New-passw0rd-9"})
    assert ok.status_code == 302
    assert user.get("/").status_code == 200  # this session stays
    fresh = app.test_client()
    token = csrf_from(fresh.get("/login").get_data(as_text=True))
    assert fresh.post("/login", data={"username": "viewer-user", "password": "New-passw0rd-9",
                                      "csrf_token": token}).status_code == 302


def test_ensure_first_admin_once(app):
    from web.users import ensure_first_admin

    created = ensure_first_admin()
    assert created and created[0] == "admin" and len(created[1]) >= 12
    assert ensure_first_admin() is None
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    assert client.post("/login", data={"username": "admin", "password": created[1],
                                       "csrf_token": token}).status_code == 302


def test_create_admin_command(app):
    from click.testing import CliRunner

    from core.cli import main

    result = CliRunner().invoke(main, ["create-admin", "--username", "root"])
    assert result.exit_code == 0, result.output
    assert "密码：" in result.output
    again = CliRunner().invoke(main, ["create-admin", "--username", "root"])
    assert again.exit_code != 0 and "已存在" in again.output
    reset = CliRunner().invoke(main, ["create-admin", "--username", "root", "--reset"])
    assert reset.exit_code == 0


def test_plugin_blueprints_and_menu_entries_come_from_the_hook(app):
    from core.plugins import registry

    contributed = registry().admin_pages()
    assert contributed, "a built-in plugin registers admin pages through register_blueprints"
    for _plugin, pages in contributed:
        assert pages.blueprint.name in app.blueprints
        for entry in pages.nav:
            assert (entry.label, entry.endpoint, entry.role) in app.extensions["baosong_plugin_nav"]


importlib = __import__("importlib")


def test_free_text_search_through_the_trigram_index(app):
    from web import search_index

    assert search_index.install(db.engine)  # FTS5 trigram on SQLite, pg_trgm on PostgreSQL
    ids = insert_uploads(20)
    user = login(app, "viewer")
    assert "共 <strong>1</strong> 条" in user.get("/uploads/?q=card000007").get_data(as_text=True)
    assert "共 <strong>20</strong> 条" in user.get("/uploads/?q=bk").get_data(as_text=True)  # too short: scan
    assert "共 <strong>10</strong> 条" in user.get("/uploads/?q=msg-0000").get_data(as_text=True)  # msg-00000..9
    # A key added to an upload later (e.g. the regulator's application number) is found at once.
    upload = db.session.get(Upload, ids[3])
    upload.search_text += " APPNO-778899"
    db.session.commit()
    assert "共 <strong>1</strong> 条" in user.get("/uploads/?q=appno-778899").get_data(as_text=True)
    db.session.delete(db.session.get(Upload, ids[3]))
    db.session.commit()
    assert "共 <strong>0</strong> 条" in user.get("/uploads/?q=appno-778899").get_data(as_text=True)
    where = str(search_index.condition(db.engine, "card0000").compile(db.engine))
    assert ("IN" in where.upper()) if db.engine.dialect.name == "sqlite" else ("ILIKE" in where.upper())
    if db.engine.dialect.name == "sqlite":  # a very common substring: the index answers as a subquery
        import web.search_index as si

        old, si.MATCH_ID_CAP = si.MATCH_ID_CAP, 5
        try:
            assert search_index.FTS_TABLE in str(search_index.condition(db.engine, "msg-").compile(db.engine))
            assert "共 <strong>19</strong> 条" in user.get("/uploads/?q=msg-").get_data(as_text=True)
        finally:
            si.MATCH_ID_CAP = old
        assert "共 <strong>0</strong> 条" in user.get('/uploads/?q=x"y').get_data(as_text=True)  # quotes escaped


def test_export_reads_in_keyset_chunks_without_gaps(app):
    from web.upload_query import UploadFilter, export_rows

    ids = insert_uploads(30, created_at=datetime(2025, 3, 1, 2, 0))  # equal times: the id breaks ties
    for order in ("desc", "asc"):
        flt = UploadFilter(order=order)
        got = [r.id for r in export_rows(flt, batch=7)]
        assert got == (sorted(ids, reverse=True) if order == "desc" else sorted(ids))
    failures = [r.id for r in export_rows(UploadFilter(status="failures"), batch=4)]
    assert len(failures) == sum(1 for i in range(30) if i % 4)
