# ruff: noqa: F811  (fixtures imported from test_config_support are used as parameters)
"""配置管理 in headless Chromium against a real HTTP server: accept a department suggestion with one click,
import a bad Excel file (nothing applied, every bad row listed), and restore a field-mapping version after
which the next planned upload records it."""

from __future__ import annotations

import io
import os
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from test_config_support import departments, his, his_url, maptest  # noqa: F401  (fixtures)
from test_web_support import make_user

from core.db import db

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"chromium not installed ({CHROMIUM})"),
]


@pytest.fixture
def page(app, serve):
    from playwright.sync_api import sync_playwright

    base = serve(app)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # bypass_csp: wait_for_function strings need eval; tests/test_browser_csp.py checks the CSP itself.
        context = browser.new_context(viewport={"width": 1500, "height": 900}, locale="zh-CN", bypass_csp=True)
        tab = context.new_page()
        tab.base = base
        yield tab
        browser.close()


def log_in(page, username: str, role: str) -> None:
    make_user(username, role)
    page.goto(page.base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "Passw0rd-123")
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "/login" not in page.url


def _mapping(code: str):
    from plugins.keydata import models

    db.session.expire_all()
    return models.mappings().get(code)


def test_accept_a_suggestion_with_one_click(app, departments, page):
    log_in(page, "olga", "operator")
    page.goto(page.base + "/config/departments/?show=unmapped")
    row = page.locator("#dept-0105")
    assert "未对照" in row.inner_text()
    unmapped_before = int(page.locator("#count-unmapped").inner_text())
    first = row.locator("button.accept").first
    assert first.get_attribute("data-code") == "A03.07"
    first.click()
    page.wait_for_selector("#dept-0105 .pill-mapped")
    assert "已对照：0105 内分泌代谢科 → A03.07" in page.locator("#dept-0105").inner_text()
    page.wait_for_function(f"document.querySelector('#count-unmapped').innerText == '{unmapped_before - 1}'")
    assert _mapping("0105").national_code == "A03.07"


def test_bad_excel_import_applies_nothing_and_lists_errors(app, departments, page, tmp_path):
    from openpyxl import Workbook

    from plugins.keydata import models
    from web.config_departments import EXPORT_HEADER

    before = {code: m.national_code for code, m in models.mappings().items()}
    book = Workbook()
    book.active.append(list(EXPORT_HEADER))
    book.active.append(["0105", "内分泌代谢科", "A03.07", ""])
    book.active.append(["0901", "心理科", "NOPE", ""])
    book.active.append(["0105", "内分泌代谢科", "A03.07", ""])
    path = tmp_path / "对照.xlsx"
    buffer = io.BytesIO()
    book.save(buffer)
    path.write_bytes(buffer.getvalue())

    log_in(page, "olga", "operator")
    page.goto(page.base + "/config/departments/")
    page.set_input_files("#import-form input[type=file]", str(path))
    page.click("#import-form button[value=apply]")
    page.wait_for_selector("#import-errors-title")
    assert "未导入任何内容" in page.locator("#import-errors-title").inner_text()
    errors = page.locator("ul.import-errors li").all_inner_texts()
    assert len(errors) == 2
    assert "第 3 行" in errors[0] and "NOPE 不在 CT08.00.002 中" in errors[0]
    assert "第 4 行" in errors[1] and "与第 2 行重复" in errors[1]
    db.session.expire_all()
    assert {code: m.national_code for code, m in models.mappings().items()} == before


def test_restore_a_field_mapping_version_and_the_next_upload_uses_it(app, maptest, page):
    from core import clock
    from core.mapping import save_version
    from core.models import Upload
    from core.scheduler import run_slot

    save_version("maptest.visits", [{"target": "deptCode", "source": "dept_code"},
                                    {"target": "visits", "source": "cnt", "convert": "integer"}], "alice", "初版")
    save_version("maptest.visits", [{"target": "deptCode", "source": "dept_code"},
                                    {"target": "visits", "kind": "expression", "source": "cnt * 100"}], "bob", "错版")
    db.session.commit()
    log_in(page, "ada", "admin")
    page.goto(page.base + "/config/fields/maptest.visits")
    assert page.locator("#current-version").inner_text() == "v2"
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr[data-version='1'] button.restore").click()
    page.wait_for_selector("text=已恢复 v1")
    assert page.locator("#current-version").inner_text() == "v3"

    slot = clock.now().astimezone(ZoneInfo("Asia/Shanghai")).replace(minute=0, second=0, microsecond=0)
    [upload_id] = run_slot("maptest.visits", slot - timedelta(hours=1), "manual", enqueue=False)
    upload = db.session.get(Upload, upload_id)
    assert upload.mapping_version == 3
    assert all(r["visits"] == r["cnt"] for r in upload.rows)
