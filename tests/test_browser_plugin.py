"""The example plugin package's admin page walked in headless Chromium: its menu entry, its page (its own
table), an upload's detail with the plugin's action, and the action's effect back on the page."""

from __future__ import annotations

import os

import pytest
from test_browser import ARGS, CHROMIUM, VIEWPORT, browser, log_in  # noqa: F401  (fixtures)
from test_plugin_boundary import MONDAY, WEEK, weekly  # noqa: F401  (fixtures)
from test_web_support import make_user

from core.scheduler import run_slot

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"chromium not installed ({CHROMIUM})"),
]


def test_operator_walks_the_installed_plugins_page_and_runs_its_action(app, weekly, serve, work, browser):  # noqa: F811
    run_slot("weekly.outpatient_visits", MONDAY)
    work()
    make_user("olga", "operator")
    base = serve(app)
    page = browser.new_context(viewport=VIEWPORT, locale="zh-CN").new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the action's confirmation
    log_in(page, base, "olga")

    page.click("nav.mainnav >> text=门诊周报")
    page.wait_for_selector("h1:has-text('门诊周报')")
    row = page.locator("table.weekly-receipts tr", has_text=WEEK)
    assert row.get_by_text("未核对").is_visible()

    row.locator("a").first.click()
    page.wait_for_selector("h1:has-text('上报 #')")
    assert page.get_by_role("button", name="冲销并重传").is_visible()
    page.get_by_role("button", name="标记已核对").click()
    page.wait_for_selector("text=已标记为已核对")
    assert page.get_by_role("button", name="标记已核对").is_disabled()  # shown with its reason now

    page.goto(base + "/weekly/")
    assert page.locator("table.weekly-receipts tr", has_text=WEEK).get_by_text("olga").is_visible()
