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
