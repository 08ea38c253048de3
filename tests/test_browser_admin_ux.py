# ruff: noqa: F811  (fixtures imported from test_config_support are used as parameters)
"""The admin as a hospital IT admin uses it, in headless Chromium against a real HTTP server: link a
department by typing its national name, find uploads by department name and by 统计期, read the
schedule in words, go back to the plugin's own field mapping (confirmed first), and see a re-run that
planned nothing say what to do instead."""

from __future__ import annotations

import os

import pytest
from test_browser_config import CHROMIUM, log_in, page  # noqa: F401  (the page fixture)
from test_config_support import departments, his, his_url, maptest  # noqa: F401  (fixtures)
from test_web_support import login

from core.db import db

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"chromium not installed ({CHROMIUM})"),
]


def test_link_a_department_by_name_then_find_its_uploads_by_name(app, departments, page):
    from core.models import Upload, UploadStatus
    from plugins.keydata import models

    log_in(page, "olga", "operator")
    page.goto(page.base + "/config/departments/?show=unmapped")
    row = page.locator("#dept-0105")
    row.locator("input[name=national_code]").fill("内分泌专业")  # a name, not a code
    row.locator("form.manual button[type=submit]").click()
    page.wait_for_selector("#dept-0105 .rowmsg")
    assert "已对照" in page.locator("#dept-0105 .rowmsg").inner_text()
    db.session.expire_all()
    assert models.mappings()["0105"].national_code == "A03.07"

    for key, dept, period in (("a", "0105", "2025/02/17 07:59:59"), ("b", "0101", "2025/02/18 07:59:59")):
        db.session.add(Upload(report_type="keydata.dept_daily", business_key=key, period=period, department=dept,
                              status=UploadStatus.SUCCEEDED, idempotency_key=key, search_text=key, rows=[]))
    db.session.commit()
    page.goto(page.base + "/uploads/")
    page.fill("input[name=department]", "内分泌")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "共 1 条" in page.locator(".resultbar").inner_text()
    page.goto(page.base + "/uploads/")
    page.fill("input[name=period_start]", "2025-02-18")
    page.fill("input[name=period_end]", "2025-02-18")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "共 1 条" in page.locator(".resultbar").inner_text()


def test_schedules_read_in_words_and_a_rerun_says_what_to_do(app, maptest, page):
    from core.models import Task

    log_in(page, "otto", "operator")
    page.goto(page.base + "/tasks/")
    row = page.locator("tr[data-report-type='maptest.visits']")
    assert "每小时整点" in row.inner_text()
    task = db.session.execute(db.select(Task).filter_by(report_type="maptest.visits")).scalar_one()
    for _ in range(2):  # the clock is frozen (test_config_support): both runs plan the same minute
        page.goto(page.base + f"/tasks/{task.id}")
        page.goto(page.base + "/tasks/")
        page.locator("tr[data-report-type='maptest.visits'] form[action$='/run'] button").click()
        page.wait_for_load_state("networkidle")
    flashes = page.locator(".flash").all_inner_texts()
    assert any("没有新的上报" in text and "更新重发" in text for text in flashes), flashes


def test_going_back_to_the_plugin_mapping_is_confirmed_and_says_what_it_did(app, maptest, page):
    admin = login(app, "admin", "ada")
    admin.post("/config/fields/maptest.visits/save", {"rules-0-target": "visits", "rules-0-kind": "column",
                                                       "rules-0-source": "cnt", "comment": "初版"})
    log_in(page, "adam", "admin")
    page.goto(page.base + "/config/fields/maptest.visits")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click("#reset-mapping")
    page.wait_for_load_state("networkidle")
    assert asked and "恢复插件默认映射" in asked[0]
    assert "已恢复插件默认映射" in page.locator(".flash").first.inner_text()
    assert page.locator("#current-version").inner_text() == "v2"


def test_stopping_automatic_retries_is_confirmed_a_refusal_changes_nothing_and_the_result_says_what_next(app, page):
    from core import settings

    log_in(page, "oleg", "operator")
    page.goto(page.base + "/retries/")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("#auto-retry-switch")
    page.wait_for_timeout(300)
    assert asked and "停止所有自动重试" in asked[0]
    db.session.expire_all()
    assert settings.flag("auto_retry_stopped") != "1"  # refused: nothing was sent

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#auto-retry-switch")
    page.wait_for_load_state("networkidle")
    db.session.expire_all()
    assert settings.flag("auto_retry_stopped") == "1"
    assert "恢复自动重试" in page.locator(".flash").first.inner_text()
    asked.clear()
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click("#auto-retry-switch")  # resuming is not destructive: no question
    page.wait_for_load_state("networkidle")
    db.session.expire_all()
    assert settings.flag("auto_retry_stopped") == "0" and not asked


def test_preview_export_audit_filter_error_pages_and_ages_as_a_person_meets_them(app, maptest, page, tmp_path):
    """The rest of the round's flows in the browser: a field-mapping preview with no change note, the
    upload log's Excel download with the operation in Chinese, the audit log filtered by a Chinese action
    name, a Chinese page for an address that does not exist, and an old failure on the dashboard with the date it started."""
    from datetime import timedelta

    import openpyxl

    from core import aggregates, clock
    from core.models import Upload, UploadStatus

    log_in(page, "amy", "admin")
    page.goto(page.base + "/config/fields/maptest.visits")
    page.fill("input[name='rules-0-target']", "visits")
    page.fill("input[name='rules-0-source']", "cnt")
    page.click("#preview-form button[type=submit]")  # 修改说明 left empty
    page.wait_for_selector("#field-preview :text('表单中未保存的规则')")
    assert "报文" in page.locator("#field-preview").inner_text()

    old = clock.utc_naive(clock.now() - timedelta(days=400))
    failed = Upload(report_type="maptest.visits", business_key="old", period="2024-10-01",
                    status=UploadStatus.FAILED, idempotency_key="old", search_text="old", rows=[],
                    operation="new", created_at=old, updated_at=old, finished_at=old,
                    last_message="平台拒绝：字段缺失")
    db.session.add(failed)
    db.session.flush()
    aggregates.settle(failed)  # counted as core.ledger would have
    db.session.commit()
    page.goto(page.base + "/uploads/")
    with page.expect_download() as download:
        page.click("a:text('导出 Excel')")
    path = tmp_path / "uploads.xlsx"
    download.value.save_as(path)
    sheet = openpyxl.load_workbook(path).active
    header = [c.value for c in sheet[1]]
    assert "新增" in {row[header.index("操作")].value for row in sheet.iter_rows(min_row=2)}

    page.goto(page.base + "/users/audit")
    page.select_option("select[name=action]", label="登录")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state("networkidle")
    text = page.locator("main").inner_text()
    assert "登录" in text and "auth.login" not in text

    answer = page.goto(page.base + "/no-such-page")
    assert answer.status == 404 and "页面不存在" in page.locator("body").inner_text()
    assert "Not Found" not in page.content()

    page.goto(page.base + "/")  # an old failure says since when, as a date
    since = clock.from_db(old).astimezone(clock.default_timezone()).strftime("%Y-%m-%d")
    page.wait_for_function(f"document.body.innerText.includes('最早自 {since}')", timeout=15_000)
