"""The admin driven as a person does, in headless Chromium against a real HTTP server: log in, see the
dashboard, filter the log, open a failure, bulk-retry the filtered failures and watch them succeed against
the test regulator (a real RQ worker drains the queue), pause and resume a task, export Excel, and be
refused: a viewer's retry, a form without its CSRF token."""

from __future__ import annotations

import os
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from test_web_support import install_webtest, make_user, plan_and_send

from core import settings
from core.db import db
from core.models import Upload, UploadStatus


@pytest.fixture
def webtest(app, registry_with, serve):
    return install_webtest(registry_with, serve)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1366, "height": 768}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"chromium not installed ({CHROMIUM})"),
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    """Screenshots of key pages (BAOSONG_SCREENSHOTS=dir keeps them for a look)."""
    folder = Path(os.environ.get("BAOSONG_SCREENSHOTS") or tmp_path / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(page, base: str, username: str) -> None:
    page.goto(base + "/")
    assert "/login" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "Passw0rd-123")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('数据看板')")


def test_operator_works_through_the_admin(app, webtest, serve, work, browser, shots, tmp_path):
    settings.set_flag("retry_max", "0")
    db.session.commit()
    plan_and_send(3)  # succeed
    webtest.failing = True
    failed_ids = _fail(4)
    make_user("olga", "operator")
    make_user("victor", "viewer")
    base = serve(app)

    # bypass_csp: the test's own wait_for_function strings need eval; tests/test_browser_csp.py checks the CSP.
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True, locale="zh-CN", bypass_csp=True)
    page = context.new_page()
    log_in(page, base, "olga")
    assert page.locator(".alerts").get_by_text("4 条上报失败").is_visible()
    assert page.get_by_text("服务繁忙").first.is_visible()
    page.screenshot(path=str(shots / "dashboard.png"))

    # The log: filter to the failures (HTMX swaps the results and the URL keeps the filter).
    page.click("nav.mainnav >> text=数据查询")
    page.select_option("select[name=report_type]", "webtest.daily")
    page.select_option("select[name=status]", "failures")
    page.click("form.filters button[type=submit]")
    page.wait_for_function("document.querySelector('#upload-results').innerText.includes('共 4 条')")
    assert "status=failures" in page.url and "report_type=webtest.daily" in page.url
    page.screenshot(path=str(shots / "uploads.png"))

    # Open a failure: every attempt with its HTTP status and the regulator's answer.
    page.locator("#upload-results tbody tr td a").first.click()
    page.wait_for_selector("h2:has-text('发送记录')")
    assert page.get_by_text("HTTP 503").first.is_visible()
    page.screenshot(path=str(shots / "detail.png"), full_page=True)
    page.go_back()

    # Bulk retry of the filtered failures: count first, confirm, progress, success.
    page.wait_for_selector("#upload-results")
    page.click("text=批量重试其中的失败记录")
    assert page.locator("#failure-count").inner_text() == "4"
    page.click("#bulk-retry-start")
    page.wait_for_selector("#bulk-confirm")
    assert page.locator("#confirm-count").inner_text() == "4"
    page.screenshot(path=str(shots / "retry-confirm.png"))
    webtest.failing = False
    page.click("#bulk-retry-confirm")
    page.wait_for_selector("#bulk-progress")
    # A real RQ worker (it must run on the main thread) drains the queue: the bulk job, then the four
    # attempts it enqueued; meanwhile the page keeps polling the progress from the server thread.
    work()
    page.wait_for_selector("#bulk-settled", timeout=30_000)  # the page polls until every retry answered
    assert page.locator("#bulk-breakdown [data-status=succeeded]").inner_text() == "4"
    page.screenshot(path=str(shots / "retry-progress.png"))
    db.session.expire_all()
    assert {db.session.get(Upload, i).status for i in failed_ids} == {UploadStatus.SUCCEEDED}

    # Pause and resume the task.
    page.click("nav.mainnav >> text=定时任务")
    row = page.locator("tr[data-report-type='webtest.daily']")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    row.locator("button.task-toggle").click()
    page.wait_for_load_state()
    row = page.locator("tr[data-report-type='webtest.daily']")
    assert row.locator(".task-state").inner_text().strip() == "已暂停"
    assert asked and "暂停" in asked[0]  # pausing a schedule is confirmed first
    page.screenshot(path=str(shots / "tasks.png"))
    row.locator("button.task-toggle").click()
    page.wait_for_load_state()
    assert page.locator("tr[data-report-type='webtest.daily'] .task-state").inner_text().strip() == "运行中"

    # Edit the cron: the next five runs are previewed as one types.
    page.click("tr[data-report-type='webtest.daily'] >> text=修改/补传")
    page.fill("#cron-input", "30 8 * * 1-5")
    page.wait_for_function("document.querySelectorAll('#cron-runs li').length === 5 "
                           "&& document.querySelector('#cron-runs').innerText.includes('08:30')")
    page.fill("#cron-input", "99 * * * *")
    page.wait_for_selector("#cron-error")
    page.screenshot(path=str(shots / "task-detail.png"))

    # Export exactly the filtered set and read it back.
    page.goto(base + "/uploads/?report_type=webtest.daily")
    with page.expect_download() as download_info:
        page.click("text=导出 Excel")
    target = tmp_path / "export.xlsx"
    download_info.value.save_as(target)
    rows = list(openpyxl.load_workbook(target, read_only=True).active.iter_rows(values_only=True))
    assert rows[0][0] == "ID" and len(rows) == 1 + 7
    assert {r[8] for r in rows[1:]} == {"成功"}

    # Statistics: charts drawn from the locally served library, each with its table.
    page.goto(base + "/stats/?report_type=webtest.daily&days=7")
    page.wait_for_function("window.Chart && document.querySelector('canvas[data-drawn]')")
    assert page.locator("#indicator-table").count() == 1
    page.screenshot(path=str(shots / "stats.png"), full_page=True)

    # A form posted without its CSRF token is refused.
    status = page.evaluate("""async () => (await fetch('/retries/auto', {method: 'POST',
        body: new URLSearchParams({stopped: '1'})})).status""")
    assert status == 400
    db.session.expire_all()
    assert settings.flag("auto_retry_stopped") == "0"
    context.close()

    # A viewer sees a failure but is refused a retry, even posting with a valid token.
    webtest.failing = True
    (failure,) = _fail(1)
    viewer_context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", bypass_csp=True)
    viewer = viewer_context.new_page()
    log_in(viewer, base, "victor")
    viewer.goto(f"{base}/uploads/{failure}")
    assert viewer.locator("button:has-text('重试')").count() == 0
    status = viewer.evaluate(f"""async () => (await fetch('/uploads/{failure}/retry', {{method: 'POST',
        headers: {{'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content}}}})).status""")
    assert status == 403
    db.session.expire_all()
    assert db.session.get(Upload, failure).status == UploadStatus.FAILED
    viewer_context.close()


def _fail(count: int) -> list[int]:
    """Uploads for the hours before those already planned, sent once (fails while the regulator fails)."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from core import clock

    start = clock.now().astimezone(ZoneInfo("Asia/Shanghai")).replace(minute=0, second=0, microsecond=0)
    taken = db.session.execute(sa.select(sa.func.count(Upload.id))).scalar()
    return plan_and_send(count, start=start - timedelta(hours=taken))
